"""Group-key validation, the projection side, and state dtype/device handling.

State contract (per projected parameter; ``discrete.validation`` relies on it):

| key | what | dtype |
|---|---|---|
| ``proj`` | P: (m, r) when ``proj_side`` = 0 (LEFT, Ĝ = PᵀG), (n, r) when 1 (RIGHT, Ĝ = GP) | float32 (bf16: ``proj_dtype``) |
| ``proj_side`` | 0 or 1, as :data:`osd_theory.kernels.LEFT` / ``RIGHT`` (a plain int) | int |
| ``exp_avg``, ``exp_avg_sq`` | the inner optimizer's moments, of Ĝ's shape | float32 (``state_dtype``) |
| ``exp_avg_absmax``, ``exp_avg_sq_absmax`` | ``state_dtype="int8"`` only: block scales, (*Ĝ[:-1], ⌈n/256⌉) | float32 |
| ``step`` | 0-d tensor, steps taken | float32 (CPU) |
| ``last_refresh_step`` | step at which P was last (re)built; −1 while no basis from a gradient exists | int |
| ``proj_exp_avg``, ``proj_exp_avg_sq`` | OSD: the P-optimizer's moments, of P's shape | float32 (``proj_state_dtype``) |
| ``rank`` | r of this matrix (``clip_rank`` may make it less than the group's; absent in older states) | int |

Only tensors and plain scalars. Every state tensor has the dtype its inner rule's layout gives
(:meth:`discrete.inner.InnerRule.layout`: float32 by default; bf16, or int8/uint8 codes with float32
block scales, under ``state_dtype``), whatever the parameter dtype; ``Optimizer.load_state_dict``
casts state to the parameter's dtype (a lossy bf16 round trip, pytorch/pytorch#43706), so a
pre-hook keeps the loaded tensors and a post-hook puts them back on the parameter's device at their
own dtype (:func:`keep_dtype_load_hooks`).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from osd_theory.kernels import LEFT, SIDE_RULES, parse_side
from osd_theory.kernels import check_rank as kernels_check_rank
from osd_theory.registry import Registry


class OptimizerInputError(ValueError, RuntimeError):
    """Bad input seen at step time (sparse or non-finite gradient).

    A ValueError as asked of every bad input here, and a RuntimeError as torch raises for
    sparse gradients, so callers catching either keep working.
    """


# -- the projection side: galore-torch's proj_type names, one vocabulary with the simulator ----
PROJ_TYPES: Registry[Callable[[int, int], int]] = Registry("proj_type")
for _name in ("std", "reverse_std", "left", "right"):
    PROJ_TYPES.add(_name, SIDE_RULES[_name])


def side_of(proj_type: str, shape: torch.Size) -> int:
    return parse_side(PROJ_TYPES.get(proj_type) and proj_type, *shape)


def basis_rows(shape: torch.Size, side: int) -> int:
    return shape[0] if side == LEFT else shape[1]


# -- validation (torch wording) -----------------------------------------------------------
def _real(x: Any) -> float:
    if torch.is_tensor(x):
        if x.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        return float(x)
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a number, got {x!r}")
    return float(x)


def check_lr(lr: Any) -> None:
    v = _real(lr)
    if not 0.0 <= v or not math.isfinite(v):
        raise ValueError(f"Invalid learning rate: {lr}")


def check_betas(betas: Any, key: str = "betas") -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid {key}: {betas!r}; expected a pair (beta1, beta2)")
    for i, b in enumerate(betas):
        if not 0.0 <= _real(b) < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {b}")


def check_nonneg(name: str, value: Any) -> None:
    v = _real(value)
    if not (0.0 <= v and math.isfinite(v)):
        raise ValueError(f"Invalid {name} value: {value}")


def check_momentum(momentum: Any) -> None:
    if not 0.0 <= _real(momentum) < 1.0:
        raise ValueError(f"Invalid momentum value: {momentum}")


def check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"Invalid {name}: {value!r}; expected an integer >= {low}")


def check_optional_bool(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"Invalid {name} value: {value!r}; expected None, True or False")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"Invalid {name} value: {value!r}; expected True or False")


def check_member(name: str, value: Any, allowed: tuple) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {sorted(allowed)}")


def check_choice(registry: Registry, value: Any) -> None:
    if not isinstance(value, str) or value not in registry:
        raise ValueError(f"Unknown {registry.kind} {value!r}; expected one of {registry.names()}")


def check_rank(rank: Any, p: torch.Tensor, clip: bool = False) -> None:
    """1 <= rank <= min(m, n) for every 2-D parameter of a projected group (the kernels' one rank check);
    with ``clip`` only rank >= 1 (the rank is clipped per matrix, :func:`matrix_rank`)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"Invalid rank: {rank!r}; expected an integer >= 1")
    if p.ndim == 2 and not clip:
        try:
            kernels_check_rank(rank, tuple(p.shape))
        except ValueError as e:
            raise type(e)(f"{e} (set clip_rank=True in the group to clip the rank to min(m, n) per matrix)") from None


def matrix_rank(group: dict, shape: tuple[int, int]) -> int:
    """The rank of one matrix of a projected group: the group's, or min(rank, m, n) with ``clip_rank``."""
    rank = group["rank"]
    return min(rank, *shape) if group.get("clip_rank", False) else rank


# -- gradients -----------------------------------------------------------------------------
def check_sparse(name: str, grad: torch.Tensor) -> None:
    if grad.is_sparse:
        raise OptimizerInputError(f"{name} does not support sparse gradients")


def check_materialised(name: str, index: int, p: torch.Tensor) -> None:
    """A parameter on the meta device has no values to step: a clear error, before any change.

    Checked for every parameter, with a gradient or not: ``module.to_empty`` makes new Parameter objects, so an
    optimizer built on a meta-device model would otherwise step nothing, silently, for the whole run.
    """
    if p.is_meta:
        raise OptimizerInputError(
            f"{name}: parameter {index} (shape {tuple(p.shape)}) is on the meta device (no data): materialise the "
            "model first (module.to_empty(device=...) and initialise it), then build the optimizer on "
            "model.parameters() (to_empty makes new Parameter objects, which an optimizer built before never sees)")


def grad_norms(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """‖G‖ per gradient (float32 for low-precision G), on the device: no host sync."""
    if not grads:
        return []
    return list(torch._foreach_norm([g.float() if g.dtype not in (torch.float32, torch.float64) else g for g in grads]))


# -- state dicts of older versions --------------------------------------------------------------
def upgrade_sgd_state(state_dict: dict) -> dict:
    """A state dict saved when SGD's state was the heavy-ball M = (1−μ)·buf under ``exp_avg``, with
    torch's buffer under ``momentum_buffer`` instead (exact; the dict passed in is not changed)."""
    renames = []
    for group in state_dict["param_groups"]:
        moved = []
        if group.get("inner", "adamw") == "sgd":
            moved.append(("", group.get("momentum", 0.0)))
        if group.get("proj_optimizer") == "sgd":
            moved.append(("proj_", group.get("proj_momentum", 0.0)))
        renames += [(pid, moved) for pid in group["params"]] if moved else []
    state, changed = dict(state_dict["state"]), False
    for pid, moved in renames:
        for prefix, momentum in moved:
            st = state.get(pid, {})
            if prefix + "exp_avg" in st and prefix + "momentum_buffer" not in st:
                st = dict(st)
                st[prefix + "momentum_buffer"] = st.pop(prefix + "exp_avg") / (1.0 - momentum)
                state[pid], changed = st, True
    return {**state_dict, "state": state} if changed else state_dict


# -- state dtypes across load_state_dict ---------------------------------------------------
def keep_dtype_load_hooks() -> tuple[Callable, Callable]:
    """(pre, post) ``load_state_dict`` hooks that keep every state tensor at the dtype it was saved with (bit-exact).

    torch casts every state tensor but ``step`` to a floating parameter's dtype (pytorch/pytorch#43706): a
    float32 moment of a bf16 parameter would round through bf16, and the int8/uint8 codes of an 8-bit state
    would become floats. The load check (:meth:`discrete.base.SubspaceOptimizer._check_state_dict`) has
    compared each tensor's dtype with the layout of the group's inner rules before this runs, so the saved
    dtype *is* the layout dtype. The optimizer registers the hooks for one load only, the pre-hook *last*
    and the post-hook *first* (:meth:`discrete.base.SubspaceOptimizer.load_state_dict`): the user's
    pre-hooks shape the dict that is kept, and the user's post-hooks see the kept tensors, as with torch.optim.
    """
    stash: dict[str, Any] = {}

    def pre(optimizer, state_dict):
        stash["state"] = {k: {kk: vv.detach().clone() if torch.is_tensor(vv) and kk != "step" else vv
                              for kk, vv in v.items()} for k, v in state_dict["state"].items()}
        stash["ids"] = [i for g in state_dict["param_groups"] for i in g["params"]]
        return None

    def post(optimizer):
        saved = stash.pop("state", {})
        ids = stash.pop("ids", [])
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for pid, p in zip(ids, params):
            for key, value in saved.get(pid, {}).items():
                if torch.is_tensor(value) and key != "step":
                    optimizer.state[p][key] = value.to(device=p.device)

    return pre, post


