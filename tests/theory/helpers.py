"""Shared numerics for the theory tests: dH/dt by autodiff along the coupled field."""
from __future__ import annotations

import torch

from osd_theory.kernels import back_project, project


def field(case, t=None):
    """(g_hat, Ẇ, Ṡ) of the case's system at its state: Ẇ = 𝒫(D) − λW, Ṡ = state_rate."""
    sys_, W, P, S = case.system, case.W, case.P, case.S
    t = case.t if t is None else t
    g_hat = project(P, case.G, case.side)
    D = sys_.direction(t, S, g_hat, W)
    Wdot = back_project(P, D, case.side) - sys_.weight_decay * W
    return g_hat, Wdot, sys_.state_rate(t, S, g_hat)


def _H(case, t):
    sys_, prob = case.system, case.problem

    def H(W, P, *S):          # P is an argument on purpose: H must not depend on it
        return sys_.hamiltonian(t, prob.loss(W), tuple(S), W)
    return H


def grad_H(case, t=None):
    """∇H over (W, P, S) by reverse-mode autograd; ``None`` for an input H does not use (P)."""
    t = case.t if t is None else t
    inputs = [x.detach().clone().requires_grad_(True) for x in (case.W, case.P, *case.S)]
    H = _H(case, t)(*inputs)
    return torch.autograd.grad(H, inputs, allow_unused=True)


def autodiff_dHdt(case, Pdot: torch.Tensor) -> torch.Tensor:
    """⟨∇H, F⟩ with ∇H by autograd over (W, P, S) and F = (Ẇ, Ṗ, Ṡ), plus ∂H/∂t.

    Reverse mode rather than ``torch.func.jvp``: the same number, without forward mode's
    one-off multi-second loading of jit decompositions, and it exposes ∂H/∂P (None).
    For non-autonomous systems ∂H/∂t is a 5-point central difference with h = 10⁻³ t
    (the torch code takes t as a Python float): truncation O((h/t)⁴) ≈ 10⁻¹², rounding
    ≈ ε/(h/t) ≈ 2·10⁻¹³ relative.
    """
    _, Wdot, Sdot = field(case)
    grads = grad_H(case)
    dH = torch.zeros((), dtype=case.W.dtype)
    for g, v in zip(grads, (Wdot, Pdot, *Sdot)):
        if g is not None:
            dH = dH + (g * v).sum()
    if not case.system.autonomous:
        h = 1e-3 * case.t
        f = [float(_H(case, case.t + k * h)(case.W, case.P, *case.S)) for k in (-2, -1, 1, 2)]
        dH = dH + (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    return dH
