"""The reference executor: one matrix at a time, in the order of the equations.

``prepare`` computes, for each item, what the step needs of its gradient — the refresh event and new
basis (step 1), Ĝ (step 2) and the P field at t = k (step 5's, smooth rules) — and changes nothing;
``commit`` installs a first step's state, commits the basis and runs steps 3–5
(:func:`discrete.subspace.projected_step_`). The per-layer mode calls :func:`prepare_item` in the backward
hook and hands the prepared item to the optimizer's step. Full-rank items take
:func:`commit_full_rank`: U = Opt(G), W ← (1 − ελ)W + εU.
"""
from __future__ import annotations

import torch
from torch import Tensor

from discrete.step.checks import check_output, guarded, own
from discrete.step.items import Context, Item, note_event
from discrete.rounding import add_stochastic_, generators_for
from discrete.subspace import (basis_generators, new_basis, projected_step_, refresh_event, switch_basis_,
                               working_basis)
from osd_theory import discrete_steps as ds
from osd_theory.kernels import project


def prepare_item(it: Item) -> None:
    """Steps 1, 2 and 5's field for one projected item, from its gradient; pure (raises StepRejected)."""
    st, rule, plan = it.state, it.rule, it.plan
    P = st["proj"]
    it.event = refresh_event(st, rule, plan, it.k)
    it.P_new = None
    if it.event is not None:
        P_in, G_in = own(it, P, it.grad)
        P_new = guarded(it, "new basis", lambda: new_basis({**st, "proj": P_in}, G_in, rule, plan, it.index, it.event,
                                                           it.k))
        if P_new is None:
            it.event = "skipped"
        else:
            # in the memory layout of the state's P (often column-major, from QR), so that the products
            # round alike in every executor and mode
            it.P_new = P = torch.empty_like(P).copy_(check_output(it, "new basis", P_new, P))
    P = working_basis(P)                      # a float32 copy of a bf16 P (proj_dtype), else P itself
    with plan.mode.context():
        it.G_hat = project(P, it.grad, st["proj_side"])                                  # 2
        if rule.smooth:                                                                    # 5's field
            t = float(it.k)
            P_in, G_in, G_hat_in = own(it, P, it.grad, it.G_hat)
            field = guarded(it, "field", lambda: rule.field_from_parts(t, P_in, rule.field_parts(t, P_in, G_in, G_hat_in,
                                                                                                 it.inv)))
            it.field = check_output(it, "field", field, P)


def commit_item(it: Item, ctx: Context, reduce=None) -> None:
    """Install a fresh state, commit the basis, then steps 3–5 for one prepared projected item."""
    st, plan = it.state, it.plan
    st["step"] += 1
    if it.event in ("init", "jump"):
        note_event(ctx.notes, it.event, switch_basis_(st, it.P_new, plan, it.event, it.k), it.index)
    else:
        note_event(ctx.notes, it.event, None, it.index)
    with plan.mode.context():
        projected_step_(it.param, it.G_hat, st, plan, it.k + 1, it.field, retract=getattr(it.rule, "retract", False),
                        reduce=reduce, generators=generators_for(plan.stochastic_rounding, plan.seed, [it.param],
                                                                 [it.index], it.k + 1),
                        p_generators=basis_generators(plan, st["proj"], [it.index], it.k + 1))


def commit_full_rank(it: Item) -> None:
    """U = Opt(G), W ← (1 − ελ)W + εU for one full-rank item."""
    st, plan = it.state, it.plan
    st["step"] += 1
    U = plan.inner.step(st, it.grad, plan.hp, it.k + 1)
    add_update_(it.param, U, plan, [it.index], it.k + 1)


def add_update_(W: Tensor, U: Tensor, plan, indices: list[int], step: int) -> None:
    """W ← (1 − ελ)W + εU for a full-rank W (or a list and a stacked U); bf16 W with stochastic rounding when asked."""
    Ws, Us = ([W], [U]) if isinstance(W, Tensor) else (W, list(U.unbind(0)))
    gens = generators_for(plan.stochastic_rounding, plan.seed, Ws, indices, step)
    if gens is not None:
        for w, u, gen in zip(Ws, Us, gens):
            add_stochastic_(w, u, plan.hp.lr, gen, decay=1.0 - plan.hp.lr * plan.weight_decay)
        return
    ds.decoupled_weight_decay_(Ws if len(Ws) > 1 else Ws[0], plan.hp.lr, plan.weight_decay)
    if len(Ws) == 1:
        Ws[0].add_(Us[0] if Us[0].dtype == Ws[0].dtype else Us[0].to(Ws[0].dtype), alpha=plan.hp.lr)
    else:
        torch._foreach_add_(Ws, [u if u.dtype == w.dtype else u.to(w.dtype) for u, w in zip(Us, Ws)], alpha=plan.hp.lr)


def prepare(items: list[Item], ctx: Context, prepared: bool = False) -> list[Item]:
    """:func:`prepare_item` for every projected item (``prepared``: they already are, e.g. in the per-layer hook)."""
    if not prepared:
        for it in items:
            if it.projected:
                prepare_item(it)
    return items


def commit(items: list[Item], ctx: Context) -> None:
    for it in items:
        if it.projected:
            commit_item(it, ctx)
        else:
            commit_full_rank(it)
