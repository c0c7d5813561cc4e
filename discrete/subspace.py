"""The subspace step, written once (docs/THEORY.md §1.2, §4.2, §5, §6).

For one projected matrix W (m, n) with gradient G, projection rule Γ (bound to W's shape, side
and rank) and inner optimizer Opt_W, an optimizer step is, in the order of the equations:

    1. P, rule state ← refresh(step, P, G)            P₀ from the first usable G; a jump every T steps
    2. Ĝ = project(P, G, side)                        PᵀG (LEFT, (r, n)) or GP (RIGHT, (m, r))
    3. U, S ← Opt_W(Ĝ [+ B/η], S)                     the Euler step of the HD system (+ named departures)
    4. W ← (1 − ελ)W + ε·scale·back_project(P, U)      decoupled decay, GaLore's scale
    5. P ← (1 − αελ^P)P + αε·Opt_P(−field(t, P, G))    smooth rules only (Ṗ = α·field)

ε is the group's current lr (one scheduler drives W and P: ε^P = α·ε). The [+ B/η] term and the
bookkeeping of B = Σ ε·scale·U are RSO's proximal subproblem (arXiv:2502.07222); with
``switch="restart"`` a jump starts a fresh subproblem.

Each numbered line is one function below; :func:`projected_step_` is the only sequencer of 3–5. The
executors of :mod:`discrete.step` run them: per matrix (``single``, the reference), on stacked (L, ·, ·)
views of same-shape matrices (``batched``) and on FSDP2 shards (``sharded``); none restates the maths.
State tensors are float32 (float64 for float64 parameters) and mutated in place (they are the optimizer
state, :mod:`discrete.state`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from discrete.inner import Hyper, InnerRule
from discrete.precision import MatmulMode
from discrete.projection import SWITCH, TRANSPORTS, basis_generator
from discrete.rounding import add_stochastic_, rounding_generator, stochastic_round_bf16
from discrete.step import layout
from discrete.step.layout import chunks
from osd_theory import discrete_steps as ds
from osd_theory.kernels import (LEFT, back_project, back_project_add_, basis_dim, random_basis,
                                subspace_overlap)
from osd_theory.projections import ProjectionRule
from osd_theory.projections.base import retract_qr, tangent


@dataclass(frozen=True)
class Plan:
    """What a step needs from a param group, resolved once per group and step (plain numbers)."""

    hp: Hyper                   # Opt_W's hyperparameters (lr = ε)
    inner: InnerRule            # Opt_W
    weight_decay: float         # λ (decoupled)
    scale: float                # GaLore's α
    gap: int                    # T: steps between jumps
    switch: str                 # what a jump does to the subspace state (discrete.projection.SWITCH)
    prox: float                 # RSO's 1/η (0: none)
    seed: int
    p_opt: InnerRule | None     # Opt_P (smooth rules)
    hp_p: Hyper | None          # Opt_P's hyperparameters (lr = α·ε)
    proj_weight_decay: float    # λ^P
    mode: MatmulMode            # precision of the products that touch an (m, n) matrix
    stochastic_rounding: bool = False   # bf16 W (and bf16 P): add the update with stochastic rounding (discrete.rounding)
    proj_dtype: str = "float32"         # storage of P (PROJ_DTYPES); the step works on a float32 copy of a bf16 P


# -- state -----------------------------------------------------------------------------------
def state_dtype(p: Tensor) -> torch.dtype:
    """The dtype of a parameter's state and of the gradient the step works on: float64 for float64
    parameters (as torch's optimizers), float32 otherwise (bf16/fp16 weights keep float32 state)."""
    return torch.float64 if p.dtype == torch.float64 else torch.float32


# How P is kept between steps (group key ``proj_dtype``): "float32" is the parameter's state dtype (float64 for
# float64 parameters); "bf16" halves P's memory (7B at rank 1024: 1.9 of 3.8 GB). A bf16 P is loaded into a
# float32 working copy for the step (products, the P step, the switch policy) and stored back rounded: to nearest,
# or stochastically with ``stochastic_rounding`` (then small P steps, e.g. ``proj_optimizer="gd"``, are not lost).
PROJ_DTYPES = {"float32": None, "bf16": torch.bfloat16}


def basis_dtype(p: Tensor, proj_dtype: str = "float32") -> torch.dtype:
    """The dtype P is kept in for parameter ``p``: :func:`state_dtype`, or bf16 (``proj_dtype="bf16"``)."""
    return PROJ_DTYPES[proj_dtype] or state_dtype(p)


def basis_storage_problem(P: Tensor, proj_dtype: str) -> str | None:
    """Why a state's P does not fit the group's ``proj_dtype`` (None if it does): a P kept in bf16 where the group
    keeps float32, or the other way round (the key changed after the state was made, or a checkpoint of the other)."""
    low = PROJ_DTYPES[proj_dtype] is not None
    if (P.dtype == torch.bfloat16) == low:
        return None
    return (f"has 'proj' (P) kept in {P.dtype}, but this group has proj_dtype={proj_dtype!r}; keep the proj_dtype "
            "the state was made with (or convert it: state['proj'] = state['proj'].to(dtype))")


def working_basis(P: Tensor) -> Tensor:
    """P as the step computes with it: the state tensor itself (float32/float64, updated in place) or a float32
    copy of a bf16 P (stored back by :func:`store_basis_`)."""
    return P.float() if P.dtype == torch.bfloat16 else P


def store_basis_(P: Tensor, P_work: Tensor, generators: list[torch.Generator] | None = None) -> None:
    """P ← P_work in P's storage (nothing to do when P_work is P): round to nearest, or stochastically with one
    generator per matrix (P (d, r) or a stacked (L, d, r) bucket)."""
    if P_work is P:
        return
    if generators is None:
        P.copy_(P_work)
        return
    for dst, src, gen in zip(P.view(-1, *P.shape[-2:]).unbind(0), P_work.view(-1, *P.shape[-2:]).unbind(0), generators):
        dst.copy_(stochastic_round_bf16(src, gen))


def basis_generators(plan: Plan, P: Tensor, indices: list[int], step: int) -> list[torch.Generator] | None:
    """One generator per matrix for the stochastic rounding of a bf16 P (its own stream: index −1 − i), else None."""
    if not plan.stochastic_rounding or P.dtype != torch.bfloat16:
        return None
    return [rounding_generator(plan.seed, -1 - i, step, P.device) for i in indices]


def work_grad(grad: Tensor, maximize: bool) -> Tensor:
    """G as the step sees it: in :func:`state_dtype` (a view when it already is), negated for ``maximize``."""
    G = grad if grad.dtype in (torch.float32, torch.float64) else grad.float()
    return -G if maximize else G


def init_state(p: Tensor, rule: ProjectionRule, plan: Plan, index: int) -> dict[str, Any]:
    """The state of a projected matrix before its first step.

    P starts as a seeded Haar stand-in, replaced by the rule's P₀ on the first usable gradient
    (:func:`refresh_`), so that no basis is ever built from a zero gradient.
    """
    side, rank = rule.side_, rule.rank
    m, n = p.shape
    dev, dtype = p.device, state_dtype(p)
    stand_in = random_basis(basis_dim((m, n), side), rank, generator=basis_generator(plan.seed, index, -1),
                            dtype=torch.float64, device=dev)
    state: dict[str, Any] = {
        "step": torch.zeros((), dtype=torch.float32),
        "proj": stand_in.to(device=dev, dtype=basis_dtype(p, plan.proj_dtype)),
        "proj_side": side,
        "last_refresh_step": -1,
        "rank": rank,
    }
    g_hat = torch.empty((rank, n) if side == LEFT else (m, rank), device=dev, dtype=dtype)
    state.update(plan.inner.init_state(g_hat))
    if rule.smooth and plan.p_opt is not None:
        state.update(plan.p_opt.init_state(working_basis(state["proj"]), prefix="proj_"))
    if plan.switch == "restart":
        state["rso_coord"] = torch.zeros(g_hat.shape, dtype=dtype, device=dev)   # B
        state["subproblem_start"] = 0
    return state


def state_layout(shape: tuple[int, int], rule: ProjectionRule, plan: Plan) -> dict[str, Any]:
    """What :func:`init_state` creates: key -> tensor shape (a tuple), or the type of a plain scalar.

    ``load_state_dict`` checks a loaded state against it before anything changes, so that state of
    another rule, inner optimizer or rank (GaLore's state loaded into OSD) is an error at load, not
    a KeyError half-way through a step; tests/discrete/test_contract.py checks that every fresh
    state matches it. ``rank`` is left out: states saved before it existed load (it is informative).
    """
    m, n = shape
    P = (basis_dim((m, n), rule.side_), rule.rank)
    g_hat = (rule.rank, n) if rule.side_ == LEFT else (m, rule.rank)
    layout: dict[str, Any] = {"step": (), "proj": P, "proj_side": int, "last_refresh_step": int}
    for opt, like, prefix in inner_states(shape, rule, plan):      # the inner rules own their keys and shapes
        layout.update({k: s for k, (s, _) in opt.layout(like, prefix).items()})
    if plan.switch == "restart":
        layout.update(rso_coord=g_hat, subproblem_start=int)
    return layout


def inner_states(shape: tuple[int, int], rule: ProjectionRule, plan: Plan) -> list[tuple[InnerRule, tuple, str]]:
    """(rule, shape of what it steps, key prefix) of each inner optimizer that keeps state for an (m, n) matrix:
    Opt_W on Ĝ, and Opt_P on P (smooth rules); the load check asks each for its layout and dtypes."""
    m, n = shape
    g_hat = (rule.rank, n) if rule.side_ == LEFT else (m, rule.rank)
    out = [(plan.inner, g_hat, "")]
    if rule.smooth and plan.p_opt is not None:
        out.append((plan.p_opt, (basis_dim((m, n), rule.side_), rule.rank), "proj_"))
    return out


def bias_step(state: dict, step: int) -> int:
    """t of Opt_W's bias correction at ``step`` (1-based): steps since the subproblem began (RSO restarts it)."""
    return step - state.get("subproblem_start", 0)


# -- 1. refresh ---------------------------------------------------------------------------------
# In parts, so that an executor decides the basis (pure) before the step commits it, and the FSDP2 executor
# can compute it on the gathered gradient: refresh_event → new_basis → (checks) → switch_basis_.
# k is the number of steps taken before this one (the executors read the step counts once per step).
def refresh_event(state: dict, rule: ProjectionRule, plan: Plan, k: int) -> str | None:
    """"init" while no P₀ exists (``last_refresh_step`` = −1), "jump" every T steps (jump rules), else None."""
    if state["last_refresh_step"] < 0:
        return "init"
    return "jump" if rule.jumps and k % plan.gap == 0 else None


def new_basis(state: dict, G: Tensor, rule: ProjectionRule, plan: Plan, index: int, event: str, k: int) -> Tensor | None:
    """The rule's P₀ (event "init") or jump basis from G (m, n); None when G gives none (keep P). Pure.

    Every random draw depends only on (seed, parameter index, k), so a resumed run draws the same P.
    """
    gen = basis_generator(plan.seed, index, k)
    P_old = state["proj"]
    P_new = rule.initial_basis(G, gen) if event == "init" else rule.jump_basis(working_basis(P_old), G, gen)
    return None if P_new is None else P_new.to(device=P_old.device, dtype=P_old.dtype)     # in P's storage


def switch_basis_(state: dict, P_new: Tensor, plan: Plan, event: str, k: int) -> float | None:
    """Commit a new basis: the switch policy on the subspace state (jumps), then P ← P_new; returns the overlap."""
    P_old = state["proj"]
    overlap = None
    if event == "jump":
        old, new = working_basis(P_old), working_basis(P_new)
        overlap = float(subspace_overlap(new, old))
        SWITCH.get(plan.switch)(state, old, new, plan.inner.state_names)
        # Opt_P's moments (smooth + jump rules) are kept on purpose: at the jump basis, the top-r SVD of G,
        # the online-PCA field is zero up to round-off, and zeroed Adam moments would turn that round-off
        # into a full-size step (test_osd_adam_p_amplifies_roundoff_at_the_svd_basis)
    if plan.switch == "restart":
        state["subproblem_start"] = k                   # a fresh subproblem: bias correction restarts
    P_old.copy_(P_new)
    state["last_refresh_step"] = k
    return overlap


# -- 2. project, 3. inner step ------------------------------------------------------------------
def subspace_grad(state: dict, G_hat: Tensor, prox: float) -> Tensor:
    """∇_B of RSO's subproblem, Ĝ + B/η (arXiv:2502.07222 Eq. (4)); Ĝ itself when 1/η = 0."""
    return G_hat if prox == 0.0 else G_hat + prox * state["rso_coord"]


def inner_step(state: dict, g: Tensor, plan: Plan, step: int) -> Tensor:
    """U, S ← Opt_W(g, S): the Euler step of the inner HD system with its departures (in place)."""
    return plan.inner.step(state, g, plan.hp, step)


# -- 4. the weight update -------------------------------------------------------------------------
def update_weights_(W: Tensor | list[Tensor], P: Tensor, U: Tensor, side: int, plan: Plan,
                    generators: list[torch.Generator] | None = None) -> None:
    """W ← (1 − ελ)W + ε·scale·back_project(P, U)  (decay before the update, as torch's AdamW).

    W is one (m, n) matrix with P (d, r), U of Ĝ's shape; or a bucket: a list of L matrices with P
    and U stacked (L, ·, ·), back-projected in chunks (one batched product each, then one foreach add).
    ``generators`` (one per matrix, :func:`discrete.rounding.generators_for`): bf16 W with stochastic rounding.
    """
    lr = plan.hp.lr
    if generators is not None:
        Ws, Ps, Us = ([W], P[None], U[None]) if isinstance(W, Tensor) else (W, P, U)
        for w, p_, u, gen in zip(Ws, Ps, Us, generators):
            add_stochastic_(w, back_project(p_, u, side), lr * plan.scale, gen, decay=1.0 - lr * plan.weight_decay)
        return
    ds.decoupled_weight_decay_(W, lr, plan.weight_decay)
    if isinstance(W, Tensor):
        back_project_add_(W, P, U, side, lr * plan.scale)
        return
    if W[0].numel() >= layout.PER_MATRIX_ELEMS:     # large matrices: accumulate into each W, no (L, m, n) product buffer
        # Pᵀ of the whole stack as one view (a .mT per matrix would be one more host dispatch each)
        for w, p_, u, pt in zip(W, P.unbind(0), U.unbind(0), P.mT.unbind(0)):
            back_project_add_(w, p_, u, side, lr * plan.scale, P_t=pt)
        return
    for sl in chunks(len(W), W[0].numel()):
        torch._foreach_add_(W[sl], list(back_project(P[sl], U[sl], side).unbind(0)), alpha=lr * plan.scale)


def track_coordinate_(state: dict, U: Tensor, plan: Plan) -> None:
    """RSO: B ← B + ε·scale·U, so that W − W_k = P B at all times (the merge is implicit)."""
    if "rso_coord" in state:
        state["rso_coord"].add_(U, alpha=plan.hp.lr * plan.scale)


# -- 5. the P step of a smooth rule ---------------------------------------------------------------
def p_step_(P: Tensor, field: Tensor, state: dict, plan: Plan, step: int,
            retract: bool | Callable[[Tensor], Tensor] = False,
            reduce: Callable[[Tensor], Tensor] | None = None) -> None:
    """P ← (1 − αελ^P)P + αε·Opt_P(−field), in place (THEORY.md §4.2: OSD's P update when Opt_P is Adam
    on the online-PCA field; the Euler step P ← P + ε·Ṗ of the flow when Opt_P is ``gd``).

    With ``retract`` (the rule's) the step goes along the tangent part of its field and then retracts P onto
    orthonormal columns (QR; a callable is the retraction to use, e.g. the FSDP2 executor's QR of the
    gathered rows). With ``switch="rotate"`` or ``"rotate_m"`` the subspace moments are
    transported to the new basis after the step, as at a jump (m ← Rm, R = (P_newᵀP_new)⁻¹P_newᵀP_old, and v
    as the policy says; discrete.projection.SWITCH). ``state`` may be a bucket's stacked state (the batched path).
    ``reduce`` (FSDP2, P row-sharded: P is this process's rows) sums the r × r products over the processes.
    ``field`` is consumed (negated in place).
    """
    if retract:
        field = tangent(P, field, reduce)
    P_old = P.clone() if plan.switch in TRANSPORTS else None
    U_P = plan.p_opt.step(state, field.neg_(), plan.hp_p, step, prefix="proj_")
    ds.decoupled_weight_decay_(P, plan.hp_p.lr, plan.proj_weight_decay)
    P.add_(U_P, alpha=plan.hp_p.lr)
    if retract:
        P.copy_(retract(P) if callable(retract) else retract_qr(P))
    if P_old is not None:
        SWITCH.get(plan.switch)(state, P_old, P, plan.inner.state_names, reduce=reduce)


# -- one matrix, 3–5 in order ------------------------------------------------------------------------
def projected_step_(W: Tensor | list[Tensor], G_hat: Tensor, state: dict, plan: Plan, step: int,
                    field: Tensor | None = None, retract: bool = False,
                    reduce: Callable[[Tensor], Tensor] | None = None, cast: bool = False,
                    generators: list[torch.Generator] | None = None, P_whole: Tensor | None = None,
                    p_generators: list[torch.Generator] | None = None) -> None:
    """Steps 3–5 from the projected gradient Ĝ, for one matrix or a bucket (stacked state); ``step`` = k + 1.

    ``field`` (smooth rules) is the P field at t = k, computed before anything changed (an executor's
    prepare: it depends on P and G only, which the weight update leaves alone). The caller has advanced the
    step counters. ``reduce`` is :func:`p_step_`'s (the FSDP2 executor, P row-sharded). W is one (m, n)
    matrix or a list of L (a bucket: P, Ĝ, U stacked (L, ·, ·)). ``cast``: the W update's operands in the
    plan's matmul dtype (the batched executor's ``matmul_precision="bf16"``; the reference never casts).
    ``generators``: :func:`update_weights_`'s (bf16 W with stochastic rounding). ``P_whole``: the whole P for
    the weight update when ``state["proj"]`` holds this process's rows of it (FSDP2, right side).
    ``p_generators``: :func:`store_basis_`'s (a bf16 P with stochastic rounding, :func:`basis_generators`).
    """
    P_kept, side = state["proj"], state["proj_side"]
    P = working_basis(P_kept)
    Pw = P if P_whole is None else P_whole
    U = inner_step(state, subspace_grad(state, G_hat, plan.prox), plan, bias_step(state, step))   # 3
    update_weights_(W, plan.mode.cast(Pw) if cast else Pw, plan.mode.cast(U) if cast else U, side, plan,   # 4
                    generators)
    track_coordinate_(state, U, plan)
    if field is not None:
        p_step_(P, field, state, plan, step, retract, reduce)                                   # 5
        store_basis_(P_kept, P, p_generators)
