"""The param-group keys of the optimizers, as data: name -> (default, validator).

Validators raise ValueError in torch's wording (a :class:`~osd_theory.errors.UserError` is one).
``COMMON_KEYS`` apply to every group; ``PROJ_KEYS`` to groups with a ``rank``. Presets
(GaLore, OSD, RSO) override defaults, never the validators.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable

from discrete import state as S
from discrete.inner import INNER, PROJ_OPTIMIZERS
from discrete.lowbit import STATE_DTYPES
from discrete.precision import MATMUL_PRECISION
from discrete.projection import SWITCH, TRANSPORTS
from discrete.step.checks import NONFINITE
from discrete.subspace import PROJ_DTYPES
from osd_theory.errors import UserError


def _nonneg(name: str) -> Callable[[Any], None]:
    return lambda v: S.check_nonneg(name, v)


def _choice(registry, optional: bool = False) -> Callable[[Any], None]:
    def check(v):
        if not (optional and v is None):
            S.check_choice(registry, v)
    return check


def _projection(v: Any) -> None:
    if not (isinstance(v, str) and v):
        raise UserError(f"Invalid projection {v!r}: expected a rule name of osd_theory.projections.PROJECTIONS "
                        "or 'path/to/file.py:function'")
    if ":" not in v:  # a name, not a user file: it must be registered (the message lists the valid names)
        from osd_theory.projections import PROJECTIONS
        PROJECTIONS.get(v)


def _proj_options(v: Any) -> None:
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise UserError(f"Invalid proj_options {v!r}: expected a dict of rule option names to values")


def _optional_nonneg(name: str) -> Callable[[Any], None]:
    def check(v):
        if v is not None:
            S.check_nonneg(name, v)
    return check


def _proj_init(v: Any) -> None:
    from osd_theory.projections.base import INITS
    if v is not None and v not in INITS:
        raise ValueError(f"Unknown proj_init {v!r}; expected one of {sorted(INITS)} or None (the rule's own)")


EPS_PLACEMENTS = ("torch", "hf")

COMMON_KEYS: dict[str, Callable[[Any], None]] = {
    "lr": S.check_lr,
    "betas": S.check_betas,
    "eps": _nonneg("epsilon"),
    "weight_decay": _nonneg("weight_decay"),
    "momentum": S.check_momentum,
    "inner": _choice(INNER),
    "foreach": lambda v: S.check_optional_bool("foreach", v),
    "nonfinite": lambda v: S.check_member("nonfinite policy", v, NONFINITE),
    "bias_correction": lambda v: S.check_bool("bias_correction", v),
    # where bias-corrected Adam adds eps: "torch" to sqrt(v_hat), "hf" to sqrt(v) (galore-torch / HF AdamW;
    # an effective eps larger by 1/sqrt(1 - beta2^t) early in training)
    "eps_placement": lambda v: S.check_member("eps_placement", v, EPS_PLACEMENTS),
    "maximize": lambda v: S.check_bool("maximize", v),
    # how the inner optimizer keeps its moments between steps (discrete.lowbit): the step is float32 always
    "state_dtype": _choice(STATE_DTYPES),
    # bf16 (or other low-precision) weights: add the float32 update with stochastic rounding (discrete.rounding)
    "stochastic_rounding": lambda v: S.check_bool("stochastic_rounding", v),
}

# Keys that torch, its LR schedulers and training frameworks write into groups after construction,
# and that a saved state dict therefore carries: accepted (and ignored) by every optimizer here.
# initial_lr (every LRScheduler), max_lr/min_lr/max_momentum/base_momentum (OneCycleLR, CyclicLR),
# start_lr/end_lr (LinearLR-like user code), swa_lr (SWALR), param_names (torch >= 2.5 with
# named_parameters), name/names (frameworks, the OSD reference code).
FRAMEWORK_KEYS = frozenset({"params", "initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum", "start_lr",
                            "end_lr", "swa_lr", "param_names", "name", "names"})

PROJ_KEYS: dict[str, tuple[Any, Callable[[Any], None] | None]] = {
    "update_proj_gap": (200, lambda v: S.check_int("update_proj_gap", v, 1)),
    "scale": (1.0, _nonneg("scale")),
    "proj_type": ("std", _choice(S.PROJ_TYPES)),
    "projection": ("online_pca", _projection),
    "proj_options": ({}, _proj_options),
    "alpha": (None, _optional_nonneg("alpha")),
    "pca_lambda": (0.1, _nonneg("pca_lambda")),
    "proj_init": (None, _proj_init),
    "proj_optimizer": (None, _choice(PROJ_OPTIMIZERS, optional=True)),
    "proj_betas": ((0.9, 0.999), lambda v: S.check_betas(v, "proj_betas")),
    "proj_eps": (1e-8, _nonneg("proj_eps")),
    "proj_momentum": (0.0, S.check_momentum),
    "proj_weight_decay": (0.0, _nonneg("proj_weight_decay")),
    "switch": ("keep", _choice(SWITCH)),
    "proj_dist": ("haar", lambda v: S.check_member("proj_dist", v, ("haar", "gaussian"))),
    "rso_prox": (0.0, _nonneg("rso_prox")),
    "seed": (0, lambda v: S.check_int("seed", v, 0)),
    "matmul_precision": ("auto", _choice(MATMUL_PRECISION)),
    "proj_retract": (None, lambda v: S.check_optional_bool("proj_retract", v)),
    # ε^P = α·ε_t ("follow": one scheduler drives W and P, OSD) or α·ε₀ with ε₀ the group's initial lr
    "proj_lr": ("follow", lambda v: S.check_member("proj_lr", v, ("follow", "constant"))),
    # A rank above min(m, n) is an error; clip_rank=True clips it per matrix to min(m, n) instead
    # (galore-torch's silent behaviour, e.g. GQA k/v projections), recorded in the state as ``rank``.
    "clip_rank": (False, lambda v: S.check_bool("clip_rank", v)),
    # storage of OSD's P-optimizer moments (proj_exp_avg, ...); float32 by default whatever state_dtype is
    "proj_state_dtype": ("float32", _choice(STATE_DTYPES)),
    # storage of P itself (discrete.subspace.PROJ_DTYPES): "bf16" halves it, the step works on a float32 copy
    "proj_dtype": ("float32", lambda v: S.check_member("proj_dtype", v, tuple(PROJ_DTYPES))),
}


def check_common(group: dict) -> None:
    """The common keys a group has (``betas`` is absent where the inner optimizer takes none: SGD)."""
    for key, check in COMMON_KEYS.items():
        if key in group:
            check(group[key])


# Keys of torch.optim.AdamW's groups (so a torch AdamW checkpoint loads): accepted where they hold the value that
# means what these optimizers do, and an error naming the key otherwise (never silently ignored)
TORCH_KEYS: dict[str, tuple] = {"amsgrad": (False,), "capturable": (False,), "differentiable": (False,),
                                "fused": (None, False), "decoupled_weight_decay": (True,)}


def check_known(owner: str, group: dict, known: Iterable[str]) -> None:
    """A misspelled key (``rnak``, ``sclae``) is an error naming the close match, never silently ignored."""
    allowed = set(known) | FRAMEWORK_KEYS
    for key, values in TORCH_KEYS.items():
        if key in group and key not in allowed:
            if group[key] not in values:
                raise ValueError(f"{owner}: torch's param-group key {key}={group[key]!r} is not supported (this optimizer "
                                 f"runs as {key}={values[0]!r}); load or build it without that option")
            allowed.add(key)
    unknown = sorted(k for k in group if k not in allowed)
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), sorted(allowed - FRAMEWORK_KEYS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{owner}: unknown param-group key {key!r}{hint}; the keys of its groups are "
                         f"{sorted(allowed - FRAMEWORK_KEYS)}")


def check_projected(group: dict) -> None:
    for key, (_, check) in PROJ_KEYS.items():
        if check is not None and key in group:
            check(group[key])
    if group.get("switch") in TRANSPORTS and group.get("state_dtype", "float32") != "float32":
        raise ValueError(f"switch={group['switch']!r} transports the moments by a matrix product, which needs "
                         f"state_dtype='float32' (got {group['state_dtype']!r}); use switch 'keep', 'reset' or "
                         "'restart' with low-precision states")
    if float(group.get("rso_prox", 0.0)) > 0 and group.get("switch") != "restart":
        raise ValueError("rso_prox (RSO's proximal term 1/eta) needs switch='restart' (a subproblem per subspace)")
