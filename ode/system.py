"""The coupled right-hand side F(t, y) of the subspace HD system (THEORY.md §1.2).

State (a tuple, as torchdiffeq accepts; float64):

    y = (W, S_1, …, S_k, P, E)
        W   (m, n)      parameters
        S_i (r, n)|(m, r)  the optimizer state in the subspace (LEFT | RIGHT side)
        P   (m, r)|(n, r)  the projection basis (integrated only if the rule is smooth)
        E   ()          dissipated energy, Ė = Δ(S, ĝ)

.. math::
    ĝ = \\mathcal P^*(∇L(W)),\\quad \\dot W = \\mathcal P(D(t, S, ĝ, W)) - λW,\\quad
    \\dot S = ρ(τ(ĝ) - S),\\quad \\dot P = Γ(t, P, ∇L(W)),\\quad \\dot E = Δ .

E is bookkeeping, not dynamics: the exact flow conserves H + E (because Ḣ = −Δ), so the
drift of H + E between two accepted steps is the energy defect δ_n of THEORY.md §7.3 —
pure discretisation error, measured at the solver's own order.

Everything here is built from :mod:`osd_theory` (the system's ``state_rate``,
``direction``, ``dissipation``; the rule's ``rate``; the kernels); nothing is re-derived.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from osd_theory.hd.base import HDSystem
from osd_theory.kernels import back_project, project
from osd_theory.problems.base import Problem
from osd_theory.projections.base import ProjectionRule


@dataclass(frozen=True)
class Layout:
    """Where each block sits in the tuple state: W first, then k state tensors, P, E."""

    n_state: int

    def pack(self, W: Tensor, S: tuple[Tensor, ...], P: Tensor, E: Tensor) -> tuple[Tensor, ...]:
        return (W, *S, P, E)

    def unpack(self, y: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...], Tensor, Tensor]:
        k = self.n_state
        return y[0], tuple(y[1:1 + k]), y[1 + k], y[2 + k]


# State components that the exact flow keeps positive (Adam's v relaxes towards ĝ² ≥ 0 from v₀ > 0)
# and that decay towards 0 near a stationary point. An absolute tolerance lets RK stages
# overshoot them below 0, where √v is NaN: the steps are rejected until dt underflows.
# They get a purely relative tolerance instead (the solution stays > 0, so it is well defined).
POSITIVE_STATES = frozenset({"exp_avg_sq"})


class CoupledField(torch.nn.Module):
    """F(t, y) for torchdiffeq (an ``nn.Module`` so it can carry the accept-step callback).

    ``recorder`` (optional) receives ``(t0, y0, dt)`` of every *accepted* step: torchdiffeq
    0.2.5 calls ``func.callback_accept_step(t0, y0, dt)`` with the step's **start** point
    (rk_common.py, ``_adaptive_step``), only for its adaptive RK solvers.
    """

    def __init__(self, system: HDSystem, rule: ProjectionRule, problem: Problem):
        super().__init__()
        self.system, self.rule, self.problem = system, rule, problem
        self.layout = Layout(len(system.state_names))
        self.side = rule.side_
        self.recorder = None
        self.nfev = 0

    # -- the pieces, also used by the diagnostics -------------------------------------
    def parts(self, t: float, y: tuple[Tensor, ...]):
        """(W, S, P, G, ĝ) at state y."""
        W, S, P, _ = self.layout.unpack(y)
        G = self.problem.grad(W)
        return W, S, P, G, project(P, G, self.side)

    def velocity(self, t: float, W: Tensor, S: tuple[Tensor, ...], P: Tensor, g_hat: Tensor) -> Tensor:
        """Ẇ = 𝒫(D(t, S, ĝ, W)) − λW."""
        D = self.system.direction(t, S, g_hat, W)
        Wdot = back_project(P, D, self.side)
        lam = self.system.weight_decay
        return Wdot - lam * W if lam > 0 else Wdot

    def forward(self, t, y):
        t = float(t)
        self.nfev += 1
        W, S, P, G, g_hat = self.parts(t, y)
        Wdot = self.velocity(t, W, S, P, g_hat)
        Sdot = self.system.state_rate(t, S, g_hat)
        Pdot = self.rule.rate(t, P, G) if self.rule.smooth else torch.zeros_like(P)
        Edot = self.system.dissipation(t, S, g_hat, W).reshape(())   # Ė = Δ
        return self.layout.pack(Wdot, Sdot, Pdot, Edot)

    def atol_blocks(self, atol: float) -> tuple[float, ...]:
        """Per-block absolute tolerance (W, S…, P, E): ``atol``, or 0 for POSITIVE_STATES."""
        S = tuple(0.0 if name in POSITIVE_STATES else atol for name in self.system.state_names)
        return (atol, *S, atol, atol)

    def callback_accept_step(self, t0, y0, dt):
        if self.recorder is not None:
            self.recorder(float(t0), y0, float(dt))
