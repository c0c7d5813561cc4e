"""Smoothed Signum as an HD system (THEORY.md §3 Signum row, §3.4 smoothing).

.. math::
    \\dot W = -P\\nabla\\mathcal K_δ(\\hat M),\\qquad \\dot{\\hat M} = a(\\hat G - \\hat M),\\qquad
    H = L + \\mathcal K_δ(\\hat M)/a,\\qquad \\dot H = -\\langle \\hat M, \\nabla\\mathcal K_δ(\\hat M)\\rangle .

With 𝒦_δ = δ Σ log cosh(·/δ), ∇𝒦_δ = tanh(·/δ) → sign as δ → 0 (the raw sign is a
Filippov system, not C¹). The system is stiff, with Lipschitz constant ~1/δ: use a
stiff or structure-preserving integrator for small δ and report results along δ → 0.
"""
from __future__ import annotations

from dataclasses import dataclass

from osd_theory.convex import make_convex
from osd_theory.hd.base import Condition, HDSystem, _require


@dataclass(frozen=True)
class Signum(HDSystem):
    a: float = 1.0            # momentum relaxation rate (1/time); (1−β)/lr
    kinetic_fn: str = "tanh"  # 𝒦 (convex, even); tanh or pseudo_huber smooth the sign
    delta: float = 1e-1       # smoothing width (gradient units)

    name = "signum"
    state_names = ("exp_avg",)

    def __post_init__(self):
        super().__post_init__()
        _require(self.a > 0, f"signum needs a > 0, got a={self.a}")
        make_convex(self.kinetic_fn, self.delta)

    @property
    def K(self):
        return make_convex(self.kinetic_fn, self.delta)

    def relaxation(self, t, S, g_hat):
        return ((g_hat, self.a),)                        # Ṁ = a(Ĝ − M)

    def direction(self, t, S, g_hat, W=None):
        (m,) = S
        return -self.K.grad(m)                           # Ẇ = −P ∇𝒦(M)

    def kinetic(self, t, S, W=None):
        (m,) = S
        return self.K.value(m) / self.a

    def dissipation(self, t, S, g_hat, W=None):
        (m,) = S
        return (m * self.K.grad(m)).sum()

    def condition(self):
        return Condition(self.a > 0, f"a > 0: {self.a:g}; K = {self.kinetic_fn} (convex), delta = {self.delta:g}")
