"""The batched ("foreach") path: the functions of :mod:`discrete.subspace` on stacked views.

For a bucket of L same-shape matrices that share a rule, a step count and a side, the subspace
state of the bucket lives in one stacked (L, ·, ·) buffer per key; each parameter's state entry
is a view of its slice, so the state contract is unchanged (a loaded or replaced entry is
detected and the bucket re-stacked). Then:

* the products that touch an (m, n) matrix run per matrix — ``project`` and the rule's
  ``field_parts`` (online PCA's second pass G̃Aᵀ) back to back while Gᵢ is hot, ``update_weights_``
  (one ``addmm_`` that reads and writes W once) — so no (L, m, n) copy of the gradients or of the
  update is ever made; with ``matmul_precision="bf16"`` their operands are cast per matrix;
* everything else — Opt_W on Ĝ, the rule's r-sized ``field_from_parts``, Opt_P — is called once
  on the stacked buffers, since those functions are elementwise or batched over leading dims.

No equation lives here: this module decides layout and launches only (tests/discrete/test_batched.py
checks it against :func:`discrete.subspace.subspace_step_` for every rule × inner optimizer).
"""
from __future__ import annotations

import torch
from torch import Tensor

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


def bucket_step_(params: list[Tensor], grads: list[Tensor], states: list[dict], rule: ProjectionRule, plan: Plan,
                 cache: dict, inv: Tensor | None = None) -> None:
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
    with mode.context():
        m, n = grads[0].shape
        r = P.shape[-1]
        t = float(step - 1)
        G_hat = P.new_empty((len(grads), r, n) if side == LEFT else (len(grads), m, r))
        parts = []
        for i, G in enumerate(grads):        # both passes over Gᵢ while it is hot (the rule's parts use P_t, G, Ĝ)
            Gc, Pc = mode.cast(G), mode.cast(P[i])
            if Gc is G:
                project(Pc, Gc, side, out=G_hat[i])                                 # 2: (L, r, n) | (L, m, r)
            else:
                G_hat[i].copy_(project(Pc, Gc, side))
            if rule.smooth:
                inv_i = None if inv is None else mode.cast(inv[i])
                parts.append(tuple(x.float() for x in rule.field_parts(t, Pc, Gc, mode.cast(G_hat[i]), inv_i)))
        U = inner_step(S, subspace_grad(S, G_hat, plan.prox), plan, t_bias)        # 3
        for i, W in enumerate(params):
            update_weights_(W, mode.cast(P[i]), mode.cast(U[i]), side, plan)       # 4
        track_coordinate_(S, U, plan)
        if rule.smooth:                                                             # 5
            field = rule.field_from_parts(t, P, tuple(torch.stack(x) for x in zip(*parts)))
            p_step_(P, field, S, plan, step, rule)
