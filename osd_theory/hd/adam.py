"""Adam as an HD system (THEORY.md §3.2; OSD Ex. 2.3 / 4.2, minus sign restored).

.. math::
    \\dot W = -P\\frac{m}{\\sqrt v + e},\\quad \\dot m = a(ĝ - m),\\quad \\dot v = b(ĝ^2 - v),\\qquad
    H = L + \\frac1{2a}\\Big\\langle \\frac{m}{\\sqrt v + e}, m\\Big\\rangle

with, writing s = √v (exact, THEORY.md §3.2 [D, N]),

.. math::
    \\dot H = -\\sum_i \\frac{m_i^2}{s_i+e}\\Big(1 - \\frac{b}{4a}\\frac{s_i}{s_i+e}\\Big)
              - \\frac{b}{4a}\\sum_i \\frac{m_i^2 ĝ_i^2}{s_i (s_i+e)^2}.

``Ḣ ≤ 0`` at every state **iff b ≤ 4a** (with e > 0, v₀ > 0); in discrete terms
β₂ ≥ 4β₁ − 3. Discrete map: a = (1−β₁)/lr, b = (1−β₂)/lr, e = eps.

With decoupled weight decay (AdamW, ``wd`` > 0) no HD Lyapunov function is known
(THEORY.md §3.5): the condition is reported violated and stationarity is measured
by the box-KKT residual.

:class:`AdamBiasCorrected` is the non-autonomous bias-corrected ODE of
Barakat & Bianchi (arXiv:1810.02263) with their Lyapunov function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from osd_theory.hd.base import Condition, HDSystem, _require


@dataclass(frozen=True)
class Adam(HDSystem):
    a: float = 1.0    # momentum relaxation rate (1/time); (1−β₁)/lr
    b: float = 1.0    # second-moment relaxation rate (1/time); (1−β₂)/lr
    e: float = 1e-2   # ε in the denominator √v + e (gradient units)
    v0: float = 1e-2  # initial second moment (elementwise, > 0 for C¹ regularity)
    wd: float = 0.0   # decoupled weight decay λ (1/time): Ẇ = … − λW

    name = "adam"
    state_names = ("exp_avg", "exp_avg_sq")

    def __post_init__(self):
        super().__post_init__()
        _require(self.a > 0 and self.b > 0, f"adam needs a > 0 and b > 0, got a={self.a}, b={self.b}")
        _require(self.e >= 0 and self.v0 >= 0 and self.wd >= 0,
                 f"adam needs e >= 0, v0 >= 0, wd >= 0, got e={self.e}, v0={self.v0}, wd={self.wd}")

    @classmethod
    def from_discrete(cls, lr: float, beta1: float, beta2: float, eps: float,
                      weight_decay: float = 0.0, v0: float = 0.0) -> "Adam":
        """The ODE whose Euler step of size ``lr`` is (uncorrected) Adam(W)."""
        return cls(a=(1 - beta1) / lr, b=(1 - beta2) / lr, e=eps, v0=v0, wd=weight_decay)

    def init_state(self, g_hat):
        return (torch.zeros_like(g_hat), torch.full_like(g_hat, self.v0))

    def relaxation(self, t, S, g_hat):
        return ((g_hat, self.a), (g_hat * g_hat, self.b))   # ṁ = a(ĝ−m), v̇ = b(ĝ²−v)

    def euler_state_(self, S, g_hat, h, t=0.0):
        """The Euler step of :meth:`relaxation` in torch.optim.Adam's arithmetic order.

        m ← lerp(m, ĝ, ha) as the base class; v ← (1 − hb)v + (hb·ĝ)·ĝ with ``addcmul_``, which
        scales ĝ before multiplying by ĝ: the base class's lerp towards τ = ĝ² overflows float32 for
        |ĝ| > 1.8e19 (NaN weights where torch stays finite up to |ĝ| ≈ 5.8e20 at β₂ = 0.999).
        """
        m, v = S
        g = g_hat.to(v.dtype)
        m.lerp_(g, h * self.a)
        hb = h * self.b
        v.mul_(1.0 - hb).addcmul_(g, g, value=hb)

    def direction(self, t, S, g_hat, W=None):
        m, v = S
        return -m / (v.sqrt() + self.e)                      # Ẇ = −P m/(√v+e)

    def kinetic(self, t, S, W=None):
        m, v = S
        return (m * m / (v.sqrt() + self.e)).sum() / (2 * self.a)

    def dissipation(self, t, S, g_hat, W=None):
        m, v = S
        s = v.sqrt()
        q = self.b / (4 * self.a)
        d = s + self.e
        first = (m * m / d * (1 - q * s / d)).sum()
        # m²ĝ²/(s d²): where m ĝ = 0 the term is 0 (also at s = 0); where s = 0 and m ĝ ≠ 0
        # it is +inf — that is the loss of C¹ regularity the condition v0 > 0 excludes.
        num = m * m * g_hat * g_hat
        second = torch.where(num == 0, torch.zeros_like(s), num / (s * d * d)).sum()
        return first + q * second

    def condition(self):
        parts = [f"b <= 4a: {self.b:g} <= {4 * self.a:g}", f"e > 0: {self.e:g}", f"v0 > 0: {self.v0:g}"]
        holds = self.b <= 4 * self.a and self.e > 0 and self.v0 > 0
        if self.wd > 0:
            parts.append(f"weight decay {self.wd:g} > 0: no HD Lyapunov function known (AdamW, THEORY §3.5)")
            holds = False
        return Condition(holds, "; ".join(parts))


@dataclass(frozen=True)
class AdamBiasCorrected(Adam):
    """Bias-corrected Adam ODE (Barakat & Bianchi 2018), **non-autonomous**.

    .. math::
        \\dot x = -\\frac{a\\,m}{U},\\quad U_i = a(1-e^{-at})\\big(e + \\sqrt{v_i/(1-e^{-bt})}\\big),\\qquad
        V = L + \\tfrac12\\sum_i m_i^2/U_i,\\quad \\dot V = -a\\sum\\frac{m_i^2}{U_i} - \\tfrac12\\sum m_i^2\\frac{\\dot U_i}{U_i^2}

    (our derivation of the closed form; BB prove V decreases for 0 < b ≤ 4a). Singular
    at t = 0: integrate from t > 0. Theorem 4.5 (LaSalle) is not claimed for it.
    """

    v0: float = 1e-8

    name = "adam_bc"
    autonomous = False

    def _c(self, t):
        if not t > 0:
            raise ValueError(f"adam_bc is singular at t = 0; start the integration at t > 0 (got t={t})")
        return -math.expm1(-self.a * t), -math.expm1(-self.b * t)

    def _U(self, t, v):
        c1, c2 = self._c(t)
        return self.a * c1 * (self.e + (v / c2).sqrt())

    def direction(self, t, S, g_hat, W=None):
        m, v = S
        return -self.a * m / self._U(t, v)

    def kinetic(self, t, S, W=None):
        m, v = S
        return 0.5 * (m * m / self._U(t, v)).sum()

    def dissipation(self, t, S, g_hat, W=None):
        m, v = S
        a, b = self.a, self.b
        c1, c2 = self._c(t)
        s = (v / c2).sqrt()
        U = a * c1 * (self.e + s)
        # ∂_t U = a·a e^{−at}(e + √(v/c2)) + a c1 · ∂_t √(v/c2),  ∂_t √(v/c2) = −½ s · b e^{−bt}/c2
        dU_dt = a * a * math.exp(-a * t) * (self.e + s) - a * c1 * 0.5 * s * b * math.exp(-b * t) / c2
        # ∂_v U · v̇ = a c1 /(2 √(v c2)) · b(ĝ² − v)
        dU_dv_vdot = torch.where(v > 0, a * c1 * b * (g_hat * g_hat - v) / (2 * (v * c2).clamp_min(1e-300).sqrt()),
                                 torch.zeros_like(v))
        Udot = dU_dt + dU_dv_vdot
        return a * (m * m / U).sum() + 0.5 * (m * m * Udot / (U * U)).sum()

    def condition(self):
        base = super().condition()
        return Condition(base.holds, base.statement + "; non-autonomous (bias correction): Theorem 4.5 not claimed")
