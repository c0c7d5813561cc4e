"""The batched ("foreach") path: the functions of :mod:`discrete.subspace` on stacked views.

For a bucket of L same-shape matrices that share a rule, a step count and a side, the subspace
state of the bucket lives in one stacked (L, ·, ·) buffer per key; each parameter's state entry
is a view of its slice, so the state contract is unchanged (a loaded or replaced entry is
detected and the bucket re-stacked). Then:

* the products that touch an (m, n) matrix run on chunks of the bucket: each chunk of gradients is
  stacked once (one copy; cast to bf16 with ``matmul_precision="bf16"``), and ``project`` and the
  rule's ``field_parts`` (online PCA's second pass G̃Aᵀ) run on it as batched products;
  ``update_weights_`` takes the list of W and back-projects chunk by chunk;
* everything else — Opt_W on Ĝ, the rule's r-sized ``field_from_parts``, Opt_P — is called once
  on the stacked buffers, since those functions are elementwise or batched over leading dims.

Why chunks and not one launch per matrix: on LLaMA-1B the ~2000 per-matrix launches of a step cost
more host time than the GPU needs for the products (docs/results/benchmarks/README.md).

No equation lives here: this module decides layout and launches only (tests/discrete/test_batched.py
checks it against :func:`discrete.subspace.subspace_step_` for every rule × inner optimizer).
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from discrete.rounding import generators_for
from discrete.subspace import Plan, bias_step, inner_step, p_step_, subspace_grad, track_coordinate_, update_weights_
from osd_theory.kernels import LEFT, project
from osd_theory.projections import ProjectionRule


def stacked(states: list[dict], key: str, cache: dict) -> Tensor:
    """The (L, ·, ·) buffer whose slices are ``states[i][key]``; (re)built when an entry was replaced."""
    tag = (key, tuple(id(s) for s in states))
    hit = cache.get(tag)
    if hit is not None and all(s[key] is view for s, view in zip(states, hit[1])):
        return hit[0]
    buf = torch.stack([s[key] for s in states])
    views = list(buf.unbind(0))
    for s, view in zip(states, views):
        s[key] = view
    cache[tag] = (buf, views)
    return buf


def stacked_state(states: list[dict], keys: list[str], cache: dict) -> dict:
    """A state dict of the bucket: each key maps to its stacked buffer (plus the shared scalars)."""
    out = {k: stacked(states, k, cache) for k in keys}
    for k in ("step", "subproblem_start", "proj_side"):
        if k in states[0]:
            out[k] = states[0][k]
    return out


# A chunk of a bucket stacks its gradients into one (c, m, n) buffer so that each big product is one
# batched launch (the per-matrix launches cost more host time than the GPU work on LLaMA-1B); the
# buffer holds at most this many elements (512 MiB in float32).
CHUNK_ELEMS = 1 << 27


def chunks(L: int, numel: int) -> Iterator[slice]:
    """Slices of a bucket of L matrices of ``numel`` elements each, ≤ CHUNK_ELEMS elements per slice."""
    c = max(1, CHUNK_ELEMS // max(1, numel))
    for i in range(0, L, c):
        yield slice(i, min(L, i + c))


def stack_cast(tensors: list[Tensor], dtype: torch.dtype) -> Tensor:
    """One (c, m, n) copy of same-shape tensors in ``dtype`` (a view for a single tensor of that dtype)."""
    if len(tensors) == 1 and tensors[0].dtype == dtype:
        return tensors[0][None]
    out = torch.empty((len(tensors), *tensors[0].shape), dtype=dtype, device=tensors[0].device)
    torch._foreach_copy_(list(out.unbind(0)), tensors)                    # one pass, one launch: copy (and cast)
    return out


def bucket_step_(params: list[Tensor], grads: list[Tensor], states: list[dict], rule: ProjectionRule, plan: Plan,
                 cache: dict, inv: Tensor | None = None, indices: list[int] | None = None) -> None:
    """Steps 2–5 of :mod:`discrete.subspace` for a bucket (step 1, the refresh, is per matrix before).

    ``grads`` are float32 (m, n); ``inv`` (L, 1, 1) = 1/‖Gᵢ‖ when known (for the rule's field).
    """
    for s in states:
        s["step"] += 1
    step, t_bias = int(states[0]["step"]), bias_step(states[0])
    side = states[0]["proj_side"]
    keys = [k for k in states[0] if torch.is_tensor(states[0][k]) and k != "step"]
    S = stacked_state(states, keys, cache)
    P = S["proj"]                                                               # (L, d, r)
    mode = plan.mode
    dtype = mode.dtype or torch.float32
    with mode.context():
        m, n = grads[0].shape
        r = P.shape[-1]
        t = float(step - 1)
        G_hat = P.new_empty((len(grads), r, n) if side == LEFT else (len(grads), m, r))
        parts = []
        for sl in chunks(len(grads), m * n):   # both passes over a chunk of G while it is stacked
            Gs, Pc = stack_cast(grads[sl], dtype), mode.cast(P[sl])            # (c, m, n), (c, d, r)
            if Gs.dtype == torch.float32:
                project(Pc, Gs, side, out=G_hat[sl])                            # 2: (c, r, n) | (c, m, r)
            else:
                G_hat[sl] = project(Pc, Gs, side)
            if rule.smooth:
                inv_c = None if inv is None else mode.cast(inv[sl])
                parts.append(tuple(x.float() for x in rule.field_parts(t, Pc, Gs, mode.cast(G_hat[sl]), inv_c)))
            del Gs
        U = inner_step(S, subspace_grad(S, G_hat, plan.prox), plan, t_bias)        # 3
        update_weights_(params, mode.cast(P), mode.cast(U), side, plan,            # 4 (a list of W: chunked)
                        generators_for(plan.stochastic_rounding, plan.seed, params, indices, step))
        track_coordinate_(S, U, plan)
        if rule.smooth:                                                             # 5
            joined = parts[0] if len(parts) == 1 else tuple(torch.cat(x) for x in zip(*parts))
            field = rule.field_from_parts(t, P, joined)
            p_step_(P, field, S, plan, step, rule.retract)   # smooth rules only: they have retract
