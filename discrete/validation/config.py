"""The resolved configuration of one validation run (saved as ``config.json`` in the run dir).

Defaults follow the GaLore pretraining protocol (ANCHORS.md §1) where it has one: Adam
(0.9, 0.999), eps 1e-8, 10% linear warm-up then cosine to 10% of the peak lr, gradient clip 1.0,
no weight decay, sequence length 256, GaLore scale 0.25 and refresh gap T = 200.
``SMALL_DATA`` holds the honest CPU shortcuts for the tiny model (stated in the run's config).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "corpus"  # ../shared/data/corpus of the checkout
DEFAULT_CACHE = REPO_ROOT / ".cache" / "validation"  # git-ignored


@dataclass
class RunConfig:
    # what to train
    model: str = "60m"  # a name in model.FLAVOURS
    optimizer: str = "adamw"  # a name in optim.OPTIMIZER_BUILDERS
    rank: int | None = None  # subspace rank; None: the paper's rank for the model (optim.DEFAULT_RANK)
    # optimisation
    steps: int = 1000  # optimizer steps
    batch_size: int = 512  # global sequences per optimizer step (all ranks, all micro-batches)
    micro_batch_size: int | None = None  # sequences per forward/backward per rank; None: batch_size / world
    seq_len: int = 256
    lr: float | None = None  # peak lr; None: optim.DEFAULT_LR[optimizer] (GaLore/RSO/OSD 0.01, AdamW 1e-3)
    warmup_frac: float = 0.1  # linear warm-up over this fraction of the steps
    min_lr_frac: float = 0.1  # cosine decays to this fraction of the peak lr
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    # subspace-optimizer knobs (param groups with a rank)
    update_proj_gap: int = 200  # GaLore T (SVD refresh period); RSO resample period
    scale: float = 0.25  # GaLore alpha: the projected update is multiplied by it
    alpha: float = 0.5  # OSD: P lr = alpha * weight lr; 0.5 at lr 0.01 is the paper's P lr 0.005 (alpha 5 at
    # lr 1e-3, THEORY.md 4.3) and the reference code's 1/(gap*lr); alpha 5 at lr 0.01 blew P up (results README)
    pca_lambda: float = 0.1  # OSD orthogonality weight lambda (paper 0.1; reference code 0)
    nonfinite: str = "ignore"  # discrete optimizers' NaN/Inf-gradient policy: "ignore" has no per-step host
    # sync; the trainer then stops at the first log step whose loss is not finite
    # data
    data: str = str(DEFAULT_DATA)  # corpus dir with train.* and valid.* (corpus.py)
    train_files: list[str] = field(default_factory=list)  # explicit files instead of --data
    valid_files: list[str] = field(default_factory=list)
    vocab_size: int | None = None  # None: SMALL_DATA for tiny, else 32000
    max_train_chars: int | None = None  # train-text prefix for tokenizer and train tokens; None: SMALL_DATA / all
    val_tokens: int | None = None  # predicted valid tokens evaluated; None: SMALL_DATA / whole split
    cache_dir: str = str(DEFAULT_CACHE)
    seed: int = 0  # model init and data order
    # bookkeeping
    out: str = "runs/validate"
    log_every: int = 10  # steps between JSONL records (theory metrics are computed only then)
    eval_every: int = 0  # steps between validation passes; 0: only at the end
    ckpt_every: int = 0  # steps between checkpoints; 0: only at the end; negative: never
    resume: bool = False
    stop_after: int | None = None  # stop (with a checkpoint) after this step, as if interrupted; for tests
    device: str = "auto"  # auto: cuda if available, else cpu
    compile: bool = False  # torch.compile the model
    per_layer: bool = False  # per-layer mode (discrete.PerLayer): each projected gradient freed in backward; one process
    fsdp: bool = False  # shard the model with FSDP2 (fully_shard per block) instead of DDP; no checkpoints
    progress: bool = True  # tqdm bar on rank 0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# CPU shortcuts for the tiny flavour: a 4096-entry BPE trained on the first 4 M characters of
# the train split (which are also the only train tokens), and 64 Ki valid tokens. Everything else
# uses vocab 32000, the whole train split and the whole valid split unless flags say otherwise.
SMALL_DATA = {"tiny": {"vocab_size": 4096, "max_train_chars": 4_000_000, "val_tokens": 65536}}
FULL_DATA = {"vocab_size": 32000, "max_train_chars": None, "val_tokens": None}


def resolve_data_defaults(cfg: RunConfig) -> RunConfig:
    """Fill ``None`` data fields from SMALL_DATA / FULL_DATA (the saved config shows the result)."""
    base = SMALL_DATA.get(cfg.model, FULL_DATA)
    for key, value in base.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, value)
    return cfg
