"""Optimizer factory: param groups (which matrices are projected) and the optimizer registry.

GaLore protocol (arXiv:2403.03507 §5.1): only the attention and MLP linears are projected; the
embedding, the norms and the output head take the full-rank Adam path. A projected group carries
GaLore's keys (``rank``, ``update_proj_gap``, ``scale``, ``proj_type``) and OSD's (``alpha``,
``pca_lambda``); with ``--projection`` it also carries ``projection`` (and ``proj_options``), which
replace the preset's projection rule. The optimizer classes come from ``discrete.OPTIMIZERS``
(imported lazily, so this file loads before that package exists).

``adamw`` is ``torch.optim.AdamW`` (foreach), the baseline users compare against. ``muon`` is
``discrete.Muon`` on the projected matrices with an auxiliary AdamW group (:func:`build_muon`); Muon
*in* a subspace is a subspace optimizer with ``--group-option inner=muon --group-option momentum=0.95``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from discrete.validation.config import OSD_DEFAULTS, RunConfig
from osd_theory.errors import UserError
from osd_theory.registry import Registry

# the paper's rank per model size (GaLore Table 2; 7B from Table 3); "tiny" for tests
DEFAULT_RANK = {"tiny": 8, "60m": 128, "130m": 256, "350m": 256, "1b": 512, "7b": 1024}
# peak lr: GaLore used 0.01 for its low-rank runs and 1e-3 for full-rank AdamW (arXiv:2403.03507 §5)
DEFAULT_LR = {"adamw": 1e-3, "galore": 1e-2, "osd": 1e-2, "rso": 1e-2, "muon": 1e-3}
PROJECTED_MODULES = ("self_attn", "mlp")  # module-name parts whose 2-D weights are projected


@dataclass
class OptimizerBundle:
    """The optimizer plus what the trainer must call around it (RSO merges/resamples)."""

    optimizer: torch.optim.Optimizer
    projected: list[nn.Parameter] = field(default_factory=list)  # params in groups with a rank
    after_step: Callable[[int], dict] | None = None  # called with the finished step; returns diagnostics
    kind: str = "optimizer_state"  # where projectors live: "optimizer_state" or "model" (RSO)
    per_layer: object | None = None  # discrete.PerLayer (cfg.per_layer): it knows the norms of the freed gradients

    def clip_grad_norm_(self, model: nn.Module, max_norm: float) -> torch.Tensor:
        """The global gradient norm before clipping to ``max_norm`` (inf: only the norm), as a plain tensor."""
        if self.per_layer is not None:  # torch's clip would not see the gradients freed in backward
            return self.per_layer.clip_grad_norm_(max_norm)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a DTensor


def is_projected(name: str, p: nn.Parameter) -> bool:
    return p.ndim == 2 and any(part in name.split(".") for part in PROJECTED_MODULES)


def split_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(projected, full-rank) trainable parameters, in module order."""
    proj, full = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (proj if is_projected(name, p) else full).append(p)
    return proj, full


def check_rank(model: nn.Module, rank: int) -> None:
    """A rank above the smaller side of a projected matrix is a user mistake, not a silent clip."""
    proj, _ = split_params(model)
    smallest = min((min(p.shape) for p in proj), default=0)
    if rank < 1 or rank > smallest:
        raise UserError(f"rank {rank} is out of range for this model: projected matrices need 1 <= rank <= {smallest}")


def projected_group_keys(cfg: RunConfig, rank: int) -> dict:
    keys = {
        "rank": rank,
        "update_proj_gap": cfg.update_proj_gap,
        "scale": cfg.scale,
        "proj_type": "std",  # project the smaller side
    }
    # unset: neither key, so the preset's own rule applies (and optimizers without the keys still load)
    if cfg.projection:
        keys["projection"] = cfg.projection
        if cfg.proj_options:
            keys["proj_options"] = dict(cfg.proj_options)
    keys.update(cfg.group_options or {})     # the optimizer validates them (unknown or bad: a one-line error)
    return keys


OPTIMIZER_BUILDERS: Registry[Callable[[nn.Module, RunConfig, float, int], OptimizerBundle]] = Registry("optimizer")


@OPTIMIZER_BUILDERS.register("adamw")
def build_adamw(model: nn.Module, cfg: RunConfig, lr: float, rank: int) -> OptimizerBundle:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return OptimizerBundle(opt)


def _discrete_class(name: str):
    try:
        import discrete
    except ImportError as exc:  # pragma: no cover - depends on the other package landing
        raise UserError(f"optimizer {name!r} needs the discrete optimizers package ({exc})") from None
    return discrete.OPTIMIZERS[name]


def effective_eps_placement(optimizer: str, eps_placement: str | None) -> str | None:
    """Where the run's Adam adds ε: the flag's value, or (None) the optimizer's default.

    ``adamw`` is torch.optim.AdamW ("torch"); the others take their class default
    (``discrete.GaLore``: "hf", as galore-torch). Runs from before the flag existed have None and
    used these defaults, so a report groups them with runs that name the same placement. An optimizer
    this version does not know (a run dir from elsewhere) keeps None.
    """
    if eps_placement is not None:
        return eps_placement
    if optimizer == "adamw":
        return "torch"
    try:
        return getattr(_discrete_class(optimizer), "eps_placement", None)
    except UserError:
        return None


def _build_subspace(name: str, extra: Callable[[RunConfig], dict]):
    def build(model: nn.Module, cfg: RunConfig, lr: float, rank: int) -> OptimizerBundle:
        check_rank(model, rank)
        proj, full = split_params(model)
        groups = [{"params": full}, {"params": proj, **projected_group_keys(cfg, rank), **extra(cfg)}]
        cls = _discrete_class(name)
        if cfg.projection and "projection" not in getattr(cls, "proj_keys", {}):
            # torch keeps unknown group keys silently: the run would claim a rule it never used
            raise UserError(f"--projection: this version of discrete.{cls.__name__} takes no projection rule")
        try:
            opt = cls(groups, lr=lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                      nonfinite=cfg.nonfinite, eps_placement=cfg.eps_placement)
        except (ValueError, KeyError) as exc:  # the optimizer's own check of a group key (a bad rule name)
            if isinstance(exc, UserError):
                raise
            raise UserError(f"{name}: {exc}".replace("\n", " ")) from None
        return OptimizerBundle(opt, projected=proj)

    build.projects = True  # a subspace optimizer: --rank, --projection and --nonfinite apply
    build.extra = extra    # its own group keys (precedence.py compares them with --proj-option)
    return build


OPTIMIZER_BUILDERS.add("galore", _build_subspace("galore", lambda cfg: {}))
OPTIMIZER_BUILDERS.add("osd", _build_subspace("osd", lambda cfg: {
    k: default if getattr(cfg, k) is None else getattr(cfg, k) for k, default in OSD_DEFAULTS.items()}))
# RSO in optimizer form (discrete/rso.py): P resampled (Haar) every update_proj_gap steps, inner
# Adam state reset with it; its draws are seeded by (seed, parameter index, step), so resumable.
OPTIMIZER_BUILDERS.add("rso", _build_subspace("rso", lambda cfg: {"seed": cfg.seed}))


@OPTIMIZER_BUILDERS.register("muon")
def build_muon(model: nn.Module, cfg: RunConfig, lr: float, rank: int) -> OptimizerBundle:
    """discrete.Muon on the attention and MLP matrices (the ones the subspace optimizers project), and
    AdamW (torch's ε placement) in the same optimizer for the embedding, the norms and the head, at one lr
    and weight decay: Moonshot's shape factor 0.2·√max(A, B) ("match_rms_adamw", arXiv:2502.16982) makes
    Muon's update RMS AdamW's. Momentum 0.95 with Nesterov (torch's); ``--group-option`` keys (momentum,
    nesterov, ns_steps, adjust_lr_fn, orthogonalize) go to the Muon group."""
    proj, full = split_params(model)
    muon = {"adjust_lr_fn": "match_rms_adamw", "momentum": 0.95, **(cfg.group_options or {})}
    groups = [{"params": proj, **muon}, {"params": full, "inner": "adamw", "betas": cfg.betas, "eps": cfg.eps}]
    try:
        opt = _discrete_class("muon")(groups, lr=lr, weight_decay=cfg.weight_decay, nonfinite=cfg.nonfinite)
    except (ValueError, TypeError) as exc:     # a bad --group-option value or key
        if isinstance(exc, UserError):
            raise
        raise UserError(f"muon: {exc}".replace("\n", " ")) from None
    return OptimizerBundle(opt)


def projects(name: str) -> bool:
    """Whether optimizer ``name`` projects (takes --rank, --projection, --nonfinite)."""
    return getattr(OPTIMIZER_BUILDERS.get(name), "projects", False)


def group_keys_of(cfg: RunConfig) -> dict | None:
    """The projected group's keys the run would set (bar ``params``), or None for an optimizer without one."""
    builder = OPTIMIZER_BUILDERS.get(cfg.optimizer)
    if not getattr(builder, "projects", False):
        return None
    rank = cfg.rank if cfg.rank is not None else DEFAULT_RANK.get(cfg.model, 128)
    return {**projected_group_keys(cfg, rank), **builder.extra(cfg)}


def build_optimizer(model: nn.Module, cfg: RunConfig) -> OptimizerBundle:
    """The optimizer named by ``cfg.optimizer`` over ``model`` (which RSO may re-wire in place)."""
    builder = OPTIMIZER_BUILDERS.get(cfg.optimizer)
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
    rank = cfg.rank if cfg.rank is not None else DEFAULT_RANK.get(cfg.model, 128)
    bundle = builder(model, cfg, lr, rank)
    if cfg.per_layer:
        bundle.per_layer = per_layer(bundle, cfg)
    return bundle


def per_layer(bundle: OptimizerBundle, cfg: RunConfig):
    """discrete.PerLayer over the bundle's optimizer (docs/scaling.md), or a UserError where it cannot apply."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise UserError("--per-layer runs on one process: under DDP the per-layer hooks would see each process's "
                        "gradient before DDP's all-reduce (use --fsdp to train on several GPUs)")
    if not bundle.projected:
        raise UserError(f"--per-layer frees the gradients of projected matrices; optimizer {cfg.optimizer!r} has none "
                        "(use galore, osd or rso)")
    from discrete import PerLayer

    return PerLayer(bundle.optimizer, accumulation_steps=cfg.batch_size // cfg.micro_batch_size)
