"""The batched executor: the functions of :mod:`discrete.subspace` on stacked (L, ·, ·) buckets.

Items are grouped into buckets of same-shape matrices that share a param group (so a rule and a plan), a
dtype, a device, a step count and RSO's subproblem start. Per bucket:

* ``prepare``: step 1 per matrix (only on refresh steps: a new basis is per-matrix work, an SVD or a draw);
  the products that touch an (m, n) matrix on chunks of the bucket — each chunk of gradients stacked once
  (cast to bf16 with ``matmul_precision="bf16"``), Ĝ and the rule's ``field_parts`` as batched products —
  and the rule's r-sized ``field_from_parts`` once on the stacked parts. Nothing in the optimizer changes
  (the stacked state buffers replace the state entries by views with the same values).
* ``commit``: the bases, one ``_foreach_add_`` of the step counters, and steps 3–5
  (:func:`discrete.subspace.projected_step_`) once on the stacked state, the W update chunk by chunk.

Full-rank items are bucketed by shape too (norm weights of one width are one bucket): one inner step on the
stacked state, one ``_foreach_add_`` for W (per tensor, a full-rank step is ~10 elementwise launches: stacking
costs one copy of G and saves ten launches per tensor, which on LLaMA-1B is the better side of the trade), except
that a large bucket with low-precision states steps tensor by tensor (:func:`_one_by_one`: memory first).
No equation lives here: layout and launches only (tests/discrete/test_batched.py checks every rule × inner
optimizer against the single executor).
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field

import torch
from torch import Tensor

from discrete import inner
from discrete.step import layout
from discrete.step.checks import check_output, guarded, own
from discrete.step.items import Context, Item, inverse, note_event
from discrete.step.layout import SHARED_SCALARS, chunks, stack_cast, stacked_state, tensor_keys
from discrete.rounding import generators_for
from discrete.step.single import add_update_
from discrete.subspace import (basis_generators, new_basis, projected_step_, refresh_event, switch_basis_,
                               working_basis)
from osd_theory.kernels import LEFT, project


@dataclass(eq=False)
class Bucket:
    items: list[Item]
    state: dict                            # the stacked state (views installed in every item's state)
    G_hat: Tensor | None = None            # (L, r, n) | (L, m, r); full-rank: the stacked G
    field: Tensor | None = None            # (L, d, r), smooth rules
    fresh_basis: list[int] = dc_field(default_factory=list)   # positions whose item commits a new basis


def bucket_key(it: Item) -> tuple:
    return (it.projected, it.group, tuple(it.param.shape), it.param.dtype, it.param.device, it.k,
            it.state.get("subproblem_start", 0))


def buckets_of(items: list[Item], cache: dict) -> list[Bucket]:
    groups: dict[tuple, list[Item]] = {}
    for it in items:
        groups.setdefault(bucket_key(it), []).append(it)
    out = []
    for members in groups.values():
        states = [it.state for it in members]
        out.append(Bucket(members, stacked_state(states, tensor_keys(states[0]), cache)))
    return out


def _refresh(b: Bucket) -> Tensor:
    """Step 1 per matrix (events only); the bucket's P for this step: the stacked P, or a copy with new bases."""
    P = b.state["proj"]
    for i, it in enumerate(b.items):
        it.event = refresh_event(it.state, it.rule, it.plan, it.k)
        if it.event is None:
            continue
        P_in, G_in = own(it, it.state["proj"], it.grad)
        P_new = guarded(it, "new basis", lambda: new_basis({**it.state, "proj": P_in}, G_in, it.rule, it.plan, it.index,
                                                           it.event, it.k))
        if P_new is None:
            it.event = "skipped"
            continue
        it.P_new = check_output(it, "new basis", P_new, P[i])
        b.fresh_basis.append(i)
    if not b.fresh_basis:
        return working_basis(P)
    P_step = working_basis(P).clone()
    for i in b.fresh_basis:
        P_step[i].copy_(b.items[i].P_new)
    return P_step


def _prepare_projected(b: Bucket) -> None:
    first = b.items[0]
    rule, plan = first.rule, first.plan
    P = _refresh(b)                                                         # (L, d, r)
    mode = plan.mode
    dtype = mode.dtype or P.dtype
    side = b.state["proj_side"]
    grads = [it.grad for it in b.items]
    m, n = grads[0].shape
    r = P.shape[-1]
    t = float(first.k)
    inv = inverse(torch.stack([it.norm for it in b.items]))[:, None, None] if rule.smooth else None
    b.G_hat = P.new_empty((len(grads), r, n) if side == LEFT else (len(grads), m, r))
    parts = []
    with mode.context():
        if not rule.smooth and m * n >= layout.PER_MATRIX_ELEMS and all(G.dtype == dtype == b.G_hat.dtype for G in grads):
            Pc = mode.cast(P)                                              # Pᵀ as one view of the stack
            for P_i, G, out, P_t in zip(Pc.unbind(0), grads, b.G_hat.unbind(0), Pc.mT.unbind(0)):   # no copy of G
                project(P_i, G, side, out=out, P_t=P_t)
            return
        for sl in chunks(len(grads), m * n):        # both passes over a chunk of G while it is stacked
            Gs, Pc = stack_cast(grads[sl], dtype), mode.cast(P[sl])           # (c, m, n), (c, d, r)
            if Gs.dtype == b.G_hat.dtype:
                project(Pc, Gs, side, out=b.G_hat[sl])                           # 2: (c, r, n) | (c, m, r)
            else:
                b.G_hat[sl] = project(Pc, Gs, side)
            if rule.smooth:
                inv_c = None if inv is None else mode.cast(inv[sl])
                P_in, G_in, G_hat_in = own(first, Pc, Gs, mode.cast(b.G_hat[sl]))
                parts.append(tuple(x if x.dtype == P.dtype else x.to(P.dtype) for x in guarded(
                    first, "field", lambda: rule.field_parts(t, P_in, G_in, G_hat_in, inv_c))))
            Gs = None                          # the chunk's stacked copy goes before the next is made
        if rule.smooth:                                                       # 5's field, r-sized algebra
            joined = parts[0] if len(parts) == 1 else tuple(torch.cat(x) for x in zip(*parts))
            P_in, = own(first, P)
            b.field = check_output(first, "field", guarded(first, "field", lambda: rule.field_from_parts(t, P_in, joined)), P)


def prepare_item(it: Item) -> None:
    """One projected item prepared as a bucket of one (the per-layer hook): the same batched products as
    the ordinary step, so that committing the prepared items later is bit-equal to it. Pure."""
    b = Bucket([it], {"proj": it.state["proj"][None], "proj_side": it.state["proj_side"]})
    _prepare_projected(b)
    it.G_hat = b.G_hat[0]
    it.field = None if b.field is None else b.field[0]
    it.P_new = it.P_new if b.fresh_basis else None


def _stack_prepared(b: Bucket) -> None:
    """A bucket of items prepared one by one (the per-layer hook): Ĝ and the fields stacked, bases noted."""
    b.G_hat = torch.stack([it.G_hat for it in b.items])
    if b.items[0].field is not None:
        b.field = torch.stack([it.field for it in b.items])
    b.fresh_basis = [i for i, it in enumerate(b.items) if it.event in ("init", "jump")]


def _one_by_one(b: Bucket) -> bool:
    """A full-rank bucket whose state is not float32 (8-bit, bf16) and is larger than an inner row block steps
    tensor by tensor: no stacked copy of G and no bucket-sized float32 U (1B AdamW with 8-bit states peaked 1.9 GB
    above float32 AdamW with them), at ~10 launches per tensor. Low-precision states are chosen for memory;
    float32 states keep the stacked step (fewer launches)."""
    first = b.items[0]
    return (not first.projected and len(b.items) > 1 and first.plan.inner.state_dtype != "float32"
            and len(b.items) * first.param.numel() > inner.CHUNK_ENTRIES)


def prepare(items: list[Item], ctx: Context, prepared: bool = False) -> list[Bucket]:
    """Buckets with Ĝ and the P field computed (projected) or G stacked (full rank); pure.

    ``prepared``: the items carry Ĝ, the field and the basis already (the per-layer hook); they are stacked.
    """
    buckets = buckets_of(items, ctx.cache)
    for b in buckets:
        if b.items[0].projected and prepared:
            _stack_prepared(b)
        elif b.items[0].projected:
            _prepare_projected(b)
        elif not _one_by_one(b):
            grads = [it.grad for it in b.items]
            b.G_hat = stack_cast(grads, grads[0].dtype)
    return buckets


def commit(buckets: list[Bucket], ctx: Context) -> None:
    for b in buckets:
        torch._foreach_add_([it.state["step"] for it in b.items], 1.0)
        first = b.items[0]
        params = [it.param for it in b.items]
        plan = first.plan
        if not first.projected and b.G_hat is None:          # _one_by_one: each on its own gradient
            for it in b.items:
                add_update_(it.param, plan.inner.step(it.state, it.grad, plan.hp, first.k + 1), plan, [it.index],
                            first.k + 1)
            continue
        if not first.projected:
            U = plan.inner.step(b.state, b.G_hat, plan.hp, first.k + 1)
            add_update_(params if len(params) > 1 else params[0], U if len(params) > 1 else U[0], plan,
                        [it.index for it in b.items], first.k + 1)
            continue
        for i, it in enumerate(b.items):
            overlap = switch_basis_(it.state, it.P_new, plan, it.event, it.k) if i in b.fresh_basis else None
            note_event(ctx.notes, it.event, overlap, it.index)
        for key in SHARED_SCALARS:           # a jump may start a subproblem (RSO): the bucket steps with the new start
            if key in first.state:
                b.state[key] = first.state[key]
        with plan.mode.context():
            projected_step_(params, b.G_hat, b.state, plan, first.k + 1, b.field,
                            retract=getattr(first.rule, "retract", False), cast=True,
                            generators=generators_for(plan.stochastic_rounding, plan.seed, params,
                                                      [it.index for it in b.items], first.k + 1),
                            p_generators=basis_generators(plan, b.state["proj"], [it.index for it in b.items],
                                                          first.k + 1))
