"""From the settings a user gave to the complete, checked configuration a run depends on.

Per-field rules live with the fields (:mod:`config`); the checks here involve several fields or
the model (``CROSS_CHECKS``, data: one function per check, each returning the one-line message of
what is wrong and what is allowed, or None). Everything here is pure: nothing is written.
"""
from __future__ import annotations

from typing import Callable

from discrete.validation import precedence
from discrete.validation.config import OSD_DEFAULTS, RunConfig, check_fields, flag_of, resolve_data_defaults
from discrete.validation.model import FLAVOURS
from discrete.validation.optim import DEFAULT_LR, DEFAULT_RANK, projects
from osd_theory.errors import UserError


def _divisible_batch(cfg: RunConfig, world: int) -> str | None:
    if cfg.batch_size % world:
        return f"--batch-size {cfg.batch_size}: must be divisible by the {world} processes"
    per_rank = cfg.batch_size // world
    if per_rank % cfg.micro_batch_size:
        return (f"--micro-batch-size {cfg.micro_batch_size}: must divide the per-process batch {per_rank} "
                f"(--batch-size {cfg.batch_size} / {world} processes)")
    return None


def _context(cfg: RunConfig, world: int) -> str | None:
    context = FLAVOURS.get(cfg.model).context
    if cfg.seq_len > context:
        return f"--seq-len {cfg.seq_len}: must be at most the {cfg.model} model's context of {context} tokens"
    return None


def _rank(cfg: RunConfig, world: int) -> str | None:
    flavour = FLAVOURS.get(cfg.model)
    smallest = min(flavour.dim, flavour.mlp_dim)  # the projected linears are C x C, C x mlp and mlp x C
    if projects(cfg.optimizer) and cfg.rank > smallest:
        return f"rank {cfg.rank} is out of range for this model: projected matrices need 1 <= rank <= {smallest}"
    return None


def _subspace_only(cfg: RunConfig, world: int) -> str | None:
    if projects(cfg.optimizer):
        return None
    if cfg.projection:
        return (f"--projection needs a subspace optimizer (galore, osd, rso); --optimizer {cfg.optimizer} "
                "has no projection")
    if cfg.nonfinite != "ignore":
        return (f"--nonfinite {cfg.nonfinite} applies to the subspace optimizers (galore, osd, rso); "
                f"--optimizer {cfg.optimizer} has no such check (use the default, ignore)")
    return None


def _options_need_rule(cfg: RunConfig, world: int) -> str | None:
    if cfg.proj_options and not cfg.projection:
        return "--proj-option needs --projection (the options belong to a projection rule)"
    return None


def _osd_only(cfg: RunConfig, world: int) -> str | None:
    if cfg.optimizer == "osd":
        return None
    given = [f"{flag_of(k)} {getattr(cfg, k):g}" for k in OSD_DEFAULTS if getattr(cfg, k) is not None]
    if given:
        return (f"{' and '.join(given)}: OSD's knob{'s' * (len(given) > 1)}; --optimizer {cfg.optimizer} does not "
                "read it (drop it, or use --optimizer osd)")
    return None


def resume_or_overwrite(cfg: RunConfig, world: int) -> str | None:
    if cfg.resume and cfg.overwrite:
        return "--resume and --overwrite exclude each other: continue the run, or replace it"
    return None


def _fsdp(cfg: RunConfig, world: int) -> str | None:
    if cfg.fsdp and (world < 2 or cfg.per_layer):
        return ("--fsdp needs torchrun with 2 or more processes, and not --per-layer (per-layer mode steps whole "
                "matrices in backward; FSDP2 holds shards)")
    return None


def _coverage(cfg: RunConfig, world: int) -> str | None:
    if cfg.coverage and cfg.fsdp:
        return "--coverage reads whole matrices; under --fsdp they are shards (run it under DDP or one process)"
    return None


def _eps_placement(cfg: RunConfig, world: int) -> str | None:
    if cfg.optimizer == "adamw" and cfg.eps_placement not in (None, "torch"):
        return (f"--eps-placement {cfg.eps_placement}: adamw (torch.optim.AdamW) adds eps to sqrt(v_hat) only; "
                "allowed: torch")
    return None


CROSS_CHECKS: tuple[Callable[[RunConfig, int], str | None], ...] = (
    resume_or_overwrite, _divisible_batch, _context, _rank, _subspace_only, _options_need_rule, _fsdp, _coverage,
    _eps_placement, _osd_only, *precedence.CHECKS,
)


def resolve(cfg: RunConfig, world: int = 1) -> RunConfig:
    """Check every setting (UserError) and fill every default the run depends on, in place."""
    check_fields(cfg)
    resolve_data_defaults(cfg)
    cfg.lr = DEFAULT_LR[cfg.optimizer] if cfg.lr is None else cfg.lr
    cfg.rank = DEFAULT_RANK.get(cfg.model, 128) if cfg.rank is None else cfg.rank
    if cfg.schedule_steps is None and not cfg.resume:  # a resume takes the run's own schedule (resume.py)
        cfg.schedule_steps = cfg.steps
    if cfg.micro_batch_size is None and cfg.batch_size % world == 0:
        cfg.micro_batch_size = cfg.batch_size // world
    cfg.micro_batch_size = cfg.micro_batch_size or cfg.batch_size
    if cfg.optimizer == "osd":  # off OSD they stay None: _osd_only refuses them there
        for key, value in OSD_DEFAULTS.items():
            setattr(cfg, key, value if getattr(cfg, key) is None else getattr(cfg, key))
    for check in CROSS_CHECKS:
        message = check(cfg, world)
        if message:
            raise UserError(message)
    return cfg
