"""The resolved configuration of one validation run (saved as ``config.json`` in the run dir).

Every setting is declared once, here, with its rule (what values it accepts, :mod:`rules`), its
help text and its *role*; ``osd-theory validate`` and ``osd-theory sweep`` generate their flags
from these declarations (:mod:`flags`), the resume rules (:mod:`resume`) and the report's seed
grouping read the roles.

Defaults follow the GaLore pretraining protocol (arXiv:2403.03507 §5) where it has one: Adam
(0.9, 0.999), eps 1e-8, 10% linear warm-up then cosine to 10% of the peak lr, gradient clip 1.0,
no weight decay, sequence length 256, GaLore scale 0.25 and refresh gap T = 200.
``SMALL_DATA`` and ``MODEL_SHAPE`` hold the honest CPU shortcuts for the tiny model (stated in the
run's config).
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from discrete.keys import EPS_PLACEMENTS
from discrete.validation import rules as R
from discrete.validation.tensorboard import TensorBoardDir
from osd_theory.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "corpus"  # ../shared/data/corpus of the checkout
# shipped with the package (public domain, tiny_corpus/MANIFEST.md): --model tiny without --data runs anywhere
TINY_DATA = Path(__file__).resolve().parent / "tiny_corpus"


def user_cache_dir(app: str = "osd-theory") -> Path:
    """The user's cache directory (as platformdirs: XDG_CACHE_HOME or ~/.cache; ~/Library/Caches; %LOCALAPPDATA%)."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / app


DEFAULT_CACHE = user_cache_dir() / "validation"  # never inside the checkout

# Roles: how a setting relates to "the same run".
DEFINES = "defines"  # changes what is trained: a resume must keep it; runs that differ in it are not grouped
SEED = "seed"        # the seed: defines the run, but runs differing only in it form one group in `report`
LENGTH = "length"    # steps: a resume may raise it (the lr schedule keeps its length, see resume.py)
DATA = "data"        # where the corpus is: a resume may point elsewhere if the content is the same
SAFE = "safe"        # bookkeeping, speed or a safety policy: a resume may change it (the change is recorded)
LOCAL = "local"      # about this invocation only (run dir, --resume itself): never compared


def _registry(module: str, name: str):
    return lambda: getattr(importlib.import_module(module), name)


def setting(default: Any = None, rule: R.Rule = R.Rule(), help: str = "", *, role: str = DEFINES,
            flag: str | None = None, cli: bool = True, required: bool = False, factory=None):
    """A RunConfig field with its rule, help and role (read by flags.py, resume.py and report.py)."""
    meta = {"rule": rule, "help": help, "role": role, "flag": flag, "cli": cli, "required": required}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


NONNEG = R.Real(0.0)
POSITIVE = R.Real(0.0, lo_open=True)
FRACTION = R.Real(0.0, 1.0)
COUNT = R.Int(1)


@dataclass
class RunConfig:
    # what to train
    model: str = setting("60m", R.Name(_registry("discrete.validation.model", "FLAVOURS")), "model size")
    optimizer: str = setting("adamw", R.Name(_registry("discrete.validation.optim", "OPTIMIZER_BUILDERS")),
                             "optimizer")
    rank: int | None = setting(None, COUNT, "subspace rank (default: the paper's, 128 at 60M; 8 for tiny)")
    projection: str | None = setting(
        None, R.Projection(),
        "projection rule of a subspace optimizer, replacing its preset's: a registered name (oja, online_pca, "
        "periodic_svd, random_jump, ...) or path/to/file.py:function (default: the preset's rule)")
    proj_options: dict = setting(None, R.Options(), "an option of --projection's rule, key=value; repeatable",
                                 flag="proj-option", factory=dict)
    group_options: dict = setting(None, R.Options(), "any other key of the projected param group (discrete.keys."
                                  "PROJ_KEYS: switch, proj_optimizer, proj_retract, proj_lr, matmul_precision, ...), "
                                  "key=value; repeatable", flag="group-option", factory=dict)
    # optimisation
    steps: int = setting(1000, COUNT, "optimizer steps", role=LENGTH)
    schedule_steps: int | None = setting(
        None, COUNT, "length of the warm-up + cosine lr schedule; steps beyond it run at the final lr "
        "(default: --steps; a resume with more --steps keeps the run's schedule)")
    batch_size: int | None = setting(None, COUNT, "global sequences per optimizer step, all processes and "
                                     "micro-batches (default 512; 8 for tiny)")
    micro_batch_size: int | None = setting(None, COUNT, "sequences per forward/backward per process "
                                           "(default: batch / processes)", role=SAFE)
    loss_chunk: int = setting(0, R.Int(0), "tokens per piece of the output head + cross-entropy, each piece "
                              "recomputed in backward: caps the float32-logits transient (0: one piece)", role=SAFE)
    seq_len: int | None = setting(None, R.Int(2), "tokens per sequence, at most the model's context "
                                  "(default 256; 64 for tiny)")
    lr: float | None = setting(None, POSITIVE, "peak lr (default: 1e-3 AdamW and Muon, 1e-2 GaLore/OSD/RSO)")
    warmup_frac: float = setting(0.1, FRACTION, "linear warm-up over this fraction of the schedule")
    min_lr_frac: float = setting(0.1, FRACTION, "cosine decays to this fraction of the peak lr")
    grad_clip: float = setting(1.0, NONNEG, "max global gradient norm; 0 disables clipping")
    weight_decay: float = setting(0.0, NONNEG, "decoupled weight decay")
    betas: tuple[float, float] = setting((0.9, 0.999), R.Pair(), "Adam's beta1 beta2")
    eps: float = setting(1e-8, NONNEG, "Adam's epsilon")
    eps_placement: str | None = setting(None, R.Choice(EPS_PLACEMENTS), "where bias-corrected Adam adds eps: "
                                        "torch (to sqrt(v_hat)) or hf (to sqrt(v), galore-torch's); default: the "
                                        "optimizer's (hf for galore, torch otherwise; adamw takes torch only)")
    # subspace-optimizer knobs (param groups with a rank)
    update_proj_gap: int = setting(200, COUNT, "GaLore T (SVD refresh period; also online_pca_refresh's); "
                                  "RSO resample period")
    scale: float = setting(0.25, POSITIVE, "GaLore/OSD update scale")
    # OSD alpha: 0.5 at lr 0.01 is the paper's P lr 0.005 (alpha 5 at lr 1e-3, THEORY.md 4.3) and the
    # reference code's 1/(gap*lr); alpha 5 at lr 0.01 blew P up (results README)
    # None off OSD (nothing reads them there: giving one is an error, precedence.py); OSD_DEFAULTS on OSD
    alpha: float | None = setting(None, NONNEG, "OSD only: P lr = alpha * weight lr (default 0.5)")
    pca_lambda: float | None = setting(None, NONNEG, "OSD only: orthogonality weight lambda (default 0.1: the "
                                       "paper's; reference code 0)")
    # "ignore" has no per-step host sync; the trainer then stops at the first log step whose loss is
    # not finite. "skip" syncs every step; the trainer logs the skip counts and fails the run when
    # steps stop updating anything (max_skipped_steps).
    nonfinite: str = setting("ignore", R.Choice(("ignore", "raise", "skip")),
                             "NaN/Inf-gradient policy of the subspace optimizers; raise/skip cost a host sync "
                             "per step (ignore: no check, the run stops at a non-finite logged loss)", role=SAFE)
    max_skipped_steps: int = setting(10, COUNT, "with --nonfinite skip: fail after this many consecutive steps "
                                     "in which every update was skipped", role=SAFE)
    per_layer: bool = setting(False, R.Switch(), "per-layer mode (discrete.PerLayer): each projected gradient is "
                              "consumed and freed in backward; one process (docs/scaling.md)")
    fsdp: bool = setting(False, R.Switch(), "shard the model with FSDP2 (fully_shard per block) instead of DDP, under "
                         "torchrun; no checkpoints (docs/scaling.md)")
    # data
    data: str | None = setting(None, R.Text(), "corpus dir with train.* and valid.* (default: for --model tiny the "
                               "small public-domain corpus shipped with the package, otherwise ../shared/data/corpus "
                               "beside the checkout)", role=DATA)
    train_files: list[str] = setting(None, R.Paths(), "explicit train files (.txt/.jsonl[.xz/.gz/.bz2])",
                                     role=DATA, factory=list)
    valid_files: list[str] = setting(None, R.Paths(), "explicit valid files", role=DATA, factory=list)
    vocab_size: int | None = setting(None, R.Int(257, 1 << 32), "BPE vocab (default 32000; 4096 for tiny)")
    max_train_chars: int | None = setting(None, R.Int(0), "use only this prefix of the train text, for tokenizer "
                                          "and train tokens; 0 = all (default all; 4M for tiny)")
    val_tokens: int | None = setting(None, R.Int(0), "evaluate the first N valid tokens; 0 = all "
                                     "(default the whole valid split; 65536 for tiny)")
    cache_dir: str = setting(str(DEFAULT_CACHE), R.Text(), "tokenizer / token-array cache (default: the user's cache "
                             "directory, $XDG_CACHE_HOME/osd-theory/validation)", role=SAFE)
    # torch's own default on a small shared machine oversubscribes the cores (other processes run there too)
    threads: int = setting(0, R.Int(0), "CPU threads for torch's intra-op work (0: auto, see threads.py; the "
                           "number used is recorded in meta.json)", role=SAFE)
    seed: int = setting(0, R.Int(0, 2**63 - 1), "model init and data order", role=SEED)
    # bookkeeping
    out: str = setting("runs/validate", R.Text(), "run directory", role=LOCAL, required=True)
    log_every: int = setting(10, COUNT, "steps between JSONL records (theory metrics are computed only then)",
                             role=SAFE)
    eval_every: int = setting(0, R.Int(0), "steps between validation passes; 0: at the end only", role=SAFE)
    tensorboard: str | None = setting(None, TensorBoardDir(), "also write log.jsonl's scalars as TensorBoard events to "
                                      "DIR/<run name> (the tensorboard extra; discrete/validation/tensorboard.py)",
                                      role=SAFE)
    ckpt_every: int = setting(0, R.Int(-1), "steps between checkpoints; 0: at the end (and on SIGTERM/SIGINT) "
                              "only; -1: never", role=SAFE)
    resume: bool = setting(False, R.Switch(), "continue the run in --out from its checkpoint", role=LOCAL)
    overwrite: bool = setting(False, R.Switch(), "replace the run in --out (its files are deleted)", role=LOCAL)
    stop_after: int | None = setting(None, COUNT, "stop (with a checkpoint) after this step, as if interrupted",
                                     role=LOCAL, cli=False)
    device: str = setting("auto", R.Device(), "auto (cuda if available), cpu, cuda, cuda:N or mps", role=SAFE)
    # metric-only, but run-defining: a resume could not switch it on (W_0 of the run's step 0 is gone)
    coverage: bool = setting(False, R.Switch(), "log the coverage metrics: visited dimension of the "
                             "projectors (train records) and the shape of W_t - W_0 (eval records); keeps a copy "
                             "of the projected weights and a d x d matrix per projector (discrete/validation/"
                             "coverage.py)")
    # validation probes (docs/training-claims.md): metric-only, so a resume may switch them
    sharpness: int = setting(0, R.Int(0), "measure the preconditioned sharpness lambda_max(D^-1 H) this many times "
                             "per decade of steps (log-spaced, and at the last step) by power iteration with Hessian-"
                             "vector products; 0: off. Costs up to 40 double backwards on one micro-batch per "
                             "measurement (discrete/validation/sharpness.py)", role=SAFE)
    log_refresh: bool = setting(False, R.Switch(), "also write a train record at every step where a projector was "
                                "refreshed or resampled, with the count as 'refreshed' (discrete/validation/"
                                "refreshes.py)", role=SAFE)
    compile: bool = setting(False, R.Switch(), "torch.compile the model", role=SAFE)
    progress: bool = setting(True, R.Switch(), "no tqdm bar", role=SAFE, flag="no-progress")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}


def flag_of(name: str) -> str:
    """The command-line flag of a field (``batch_size`` -> ``--batch-size``)."""
    return "--" + (FIELDS[name].metadata["flag"] or name.replace("_", "-"))


def fields_with_role(*roles: str) -> list[str]:
    return [n for n, f in FIELDS.items() if f.metadata["role"] in roles]


def check_fields(cfg: RunConfig) -> RunConfig:
    """Each field against its rule (UserError naming the flag and what it allows)."""
    for name, f in FIELDS.items():
        f.metadata["rule"].check(flag_of(name), getattr(cfg, name))
    return cfg


def from_json(saved: dict) -> RunConfig:
    """A RunConfig from a saved ``config.json`` (older files lack newer fields: they get defaults)."""
    known = {k: v for k, v in saved.items() if k in FIELDS}
    if isinstance(known.get("betas"), list):
        known["betas"] = tuple(known["betas"])
    for key in ("max_train_chars", "val_tokens"):  # resolved files before 0 meant "all" stored None
        if key in saved and saved[key] is None:
            known[key] = 0
    if known.get("optimizer", "adamw") != "osd":  # older files stored OSD's knobs for every optimizer
        for key in OSD_DEFAULTS:
            known[key] = None
    return RunConfig(**known)


# OSD's knobs (alpha, pca_lambda): filled for --optimizer osd, None (unread) for every other optimizer
OSD_DEFAULTS = {"alpha": 0.5, "pca_lambda": 0.1}


# CPU shortcuts for the tiny flavour: a 4096-entry BPE trained on the first 4 M characters of
# the train split (which are also the only train tokens), and 64 Ki valid tokens. Everything else
# uses vocab 32000, the whole train split and the whole valid split unless flags say otherwise.
# 0 means "all" once resolved, so resolving a saved config again changes nothing.
SMALL_DATA = {"tiny": {"vocab_size": 4096, "max_train_chars": 4_000_000, "val_tokens": 65536}}
FULL_DATA = {"vocab_size": 32000, "max_train_chars": 0, "val_tokens": 0}
# batch and sequence length when the user gives none
MODEL_SHAPE = {"tiny": {"batch_size": 8, "seq_len": 64}}
FULL_SHAPE = {"batch_size": 512, "seq_len": 256}


def default_data(model: str) -> str:
    """The corpus a run reads without --data: the shipped tiny corpus for ``tiny``, the shared one otherwise."""
    return str(TINY_DATA if model == "tiny" else DEFAULT_DATA)


def resolve_data_defaults(cfg: RunConfig) -> RunConfig:
    """Fill ``None`` data and shape fields from the model's defaults (the saved config shows the result)."""
    if cfg.data is None:
        cfg.data = default_data(cfg.model)
    for table, fallback in ((SMALL_DATA, FULL_DATA), (MODEL_SHAPE, FULL_SHAPE)):
        for key, value in table.get(cfg.model, fallback).items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
    return cfg


def all_or_none(n: int | None) -> int | None:
    """The data code's convention: None is "all" (0 in the config)."""
    return n or None


def require(cond: bool, message: str) -> None:
    if not cond:
        raise UserError(message)
