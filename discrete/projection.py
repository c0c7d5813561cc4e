"""The optimizers' side of the projection rules: which rule a param group trains with, and what a jump
does to the subspace state.

* :func:`group_rule` — the bound :class:`~osd_theory.projections.ProjectionRule` of a group for one
  matrix shape. The rule is the simulator's own object (``osd_theory.projections``: a registered
  name or ``path/to/file.py:function``); the group only supplies its options. Group keys that name
  rule fields (:data:`RULE_FIELDS`) are passed when the rule has that field and the key is set;
  ``proj_options`` may set any field of the rule.
* ``SWITCH`` — what a jump does to the subspace moments: ``keep``
  (galore-torch), ``reset`` (zero them), ``rotate`` (m ← R m with R = (P_newᵀP_new)⁻¹P_newᵀP_old,
  which is P_newᵀP_old for orthonormal bases; v ← (R∘R) v keeps v ≥ 0, a heuristic: Adam's v has no
  exact rotation), ``rotate_m`` (m ← R m only, v kept: the moment-misalignment ablation), ``restart``
  (RSO: a fresh subproblem: moments and the accumulated coordinate B zeroed, bias correction restarted).
* :func:`basis_generator` — every random draw of P depends only on (seed, parameter index, step),
  so a resumed run draws the same P.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import Tensor

from osd_theory.errors import UserError
from osd_theory.kernels import LEFT, gram_float32, mtm_float32
from osd_theory.projections import PROJECTIONS, CallableRule, ProjectionRule, make_rule
from osd_theory.projections.user import load_user_object, rule_from_object
from osd_theory.registry import Registry

# group key -> rule field it sets (when the rule has that field and the key is not None)
RULE_FIELDS = {"alpha": "alpha", "pca_lambda": "pca_lambda", "proj_init": "init", "proj_dist": "distribution",
               "seed": "seed", "proj_retract": "retract"}


def rule_kwargs(group: dict, cls: type | None) -> dict:
    """The rule options a group gives: its aliased keys (:data:`RULE_FIELDS`), then ``proj_options``."""
    fields = {f.name for f in dataclasses.fields(cls) if f.init} if cls is not None else set(RULE_FIELDS.values())
    out = {field: group[key] for key, field in RULE_FIELDS.items()
           if group.get(key) is not None and field in fields}
    out.update(group.get("proj_options") or {})
    return out


def _user_class(obj: Any) -> type:
    """The class a user object builds: its own ProjectionRule subclass, or CallableRule for a function."""
    return obj if isinstance(obj, type) and issubclass(obj, ProjectionRule) else CallableRule


def group_rule(group: dict, shape: tuple[int, int], rank: int) -> ProjectionRule:
    """The group's projection rule bound to an (m, n) matrix (side from ``proj_type``, rank ``rank``).

    Raises UserError for an unknown rule, a bad option or a bad rank.
    """
    spec = group["projection"]
    if spec == "identity":
        raise UserError("projection 'identity' is the full-rank system: train without 'rank' instead")
    registered = isinstance(spec, str) and spec in PROJECTIONS
    obj = None if registered else load_user_object(spec)        # a user file is imported (executed) once
    opts = rule_kwargs(group, PROJECTIONS.get(spec) if registered else _user_class(obj))
    opts.pop("rank", None)
    opts.pop("side", None)
    kw = dict(rank=rank, side=group["proj_type"], **opts)
    rule = make_rule(spec, **kw) if registered else rule_from_object(obj, spec, **kw)
    return rule.bind(tuple(shape))


def basis_generator(seed: int, index: int, step: int) -> torch.Generator:
    """A generator that depends only on (seed, parameter index, step): resumable draws."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + index) * 1_000_033 + step)


# -- what a jump does to the subspace state ---------------------------------------------------
def _keep(state: dict, P_old: Tensor, P_new: Tensor, moment_keys: tuple[str, ...]) -> None:
    pass


def _reset(state: dict, P_old: Tensor, P_new: Tensor, moment_keys: tuple[str, ...]) -> None:
    for k in moment_keys:
        state[k].zero_()


def transport(P_old: Tensor, P_new: Tensor, reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """R = (P_newᵀP_new)⁻¹P_newᵀP_old (…, r, r), the least-squares change of coordinates from basis P_old to
    P_new (…, d, r): P_new R m is the point of span(P_new) nearest to P_old m.

    For orthonormal bases (every jump) R = P_newᵀP_old. OSD's smooth P is not orthonormal (‖PᵀP − I‖ of
    1–2 % with λ = 0.1), and P_newᵀP_old then carries PᵀP: ‖P_newᵀP_old‖₂ ≈ 1.02 per step on the tiny model,
    so transporting with it amplifies m by about 2 % a step, compounding through β₁ (measured: m-only
    transport with that R trained 10.7 PPL worse at 60M; with this R, 0.7 PPL better,
    docs/results/validation/osd_vs_galore/). With P_new = P_old this R is I exactly, whatever PᵀP is.

    ``reduce``: for P row-sharded over processes (FSDP2, the left side), P_new and P_old are this process's
    rows and both r × r products only its part of the sums; ``reduce`` sums them (stacked: one all-reduce of
    2·r·r) over the processes. None: they are complete.
    """
    # contiguous: a jump's P may be a transposed view in one execution mode and not in another, and BLAS
    # rounds differently by layout (per-layer mode must equal the ordinary step bit for bit). Float32-accurate
    # products under TF32 (CUDA default): R − I is small, and TF32's 1e-3 relative error would swamp it.
    P_new, P_old = P_new.contiguous(), P_old.contiguous()
    both = torch.stack((gram_float32(P_new), mtm_float32(P_new, P_old)))   # (2, r, r): one collective for both
    gram, cross = (both if reduce is None else reduce(both)).unbind(0)
    return torch.linalg.solve(gram, cross)                # Ĝ_new ≈ R Ĝ_old (LEFT), Ĝ_old Rᵀ (RIGHT)


def _rotate(state: dict, P_old: Tensor, P_new: Tensor, moment_keys: tuple[str, ...],
            reduce: Callable[[Tensor], Tensor] | None = None) -> None:
    """m ← R m, v ← (R∘R) v with R = :func:`transport` (P_old, P_new); ``reduce`` is its."""
    R = transport(P_old, P_new, reduce)
    for k in moment_keys:
        M = R * R if k.endswith("_sq") else R             # second moments: (R∘R) v ≥ 0
        x = state[k]
        x.copy_(M @ x if state["proj_side"] == LEFT else x @ M.mT)


def _rotate_m(state: dict, P_old: Tensor, P_new: Tensor, moment_keys: tuple[str, ...],
              reduce: Callable[[Tensor], Tensor] | None = None) -> None:
    """m ← R m for the first moments only; the second moments (``*_sq``) are left as they are.

    v has no exact rotation (R v is not a second moment of the rotated gradients, and (R∘R) v is a
    heuristic); keeping v is the conservative choice: it changes nothing that cannot be transported
    exactly, so an ablation against ``rotate`` isolates what transporting m does.
    """
    _rotate(state, P_old, P_new, tuple(k for k in moment_keys if not k.endswith("_sq")), reduce)


def _restart(state: dict, P_old: Tensor, P_new: Tensor, moment_keys: tuple[str, ...]) -> None:
    _reset(state, P_old, P_new, moment_keys)
    state["rso_coord"].zero_()        # the new subproblem's start is set by discrete.subspace.switch_basis_


SWITCH: Registry[Callable[[dict, Tensor, Tensor, tuple[str, ...]], None]] = Registry("switch policy")
SWITCH.add("keep", _keep)
SWITCH.add("reset", _reset)
SWITCH.add("rotate", _rotate)
SWITCH.add("rotate_m", _rotate_m)
SWITCH.add("restart", _restart)

# the policies that transport the moments after every P step of a smooth rule too (discrete.subspace.p_step_);
# they take the keyword ``reduce`` (P row-sharded: Σ over the processes of R's partial sums, discrete.step.sharded)
TRANSPORTS = frozenset({"rotate", "rotate_m"})
