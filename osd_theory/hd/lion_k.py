"""Lion-𝒦 as an HD system (THEORY.md §3.3; Lion-𝒦 arXiv:2310.05898; OSD Ex. 2.4/4.3).

Here m tracks **−∇L** (Lion's sign convention). Two forms:

:class:`LionK` — the OSD subspace form without weight decay [P Ex. 4.3, N]:

.. math::
    \\dot W = P\\,\\nabla\\mathcal K((1-b)\\hat M - b\\hat G),\\qquad \\dot{\\hat M} = -a(\\hat G + \\hat M),\\qquad
    H = aL + \\tfrac1{1-b}\\mathcal K((1-b)\\hat M),

.. math::
    \\dot H = -\\tfrac ab[(1-b)\\hat M; -b\\hat G]_{\\nabla\\mathcal K}
              - \\tfrac a{1-b}[0; (1-b)\\hat M]_{\\nabla\\mathcal K},\\qquad
    [X;Y]_{\\nabla\\mathcal K} := \\langle Y, \\nabla\\mathcal K(X+Y) - \\nabla\\mathcal K(X)\\rangle .

Conditions: a ≥ 0, 0 < b < 1, 𝒦 convex with ∇𝒦(0) = 0. Discrete map (even 𝒦):
b = 1 − β₁, a = (1 − β₂)/lr; the direction uses the *old* momentum (M_{t−1}), as
standard Lion does (the paper's M_t is a typo [P*]).

:class:`LionKWeightDecay` — the general form with weight decay λ > 0 [N only; full
rank: the state has W's shape, P must be the identity]:

.. math::
    \\dot m = -α\\nabla f - γ m,\\quad \\dot x = \\nabla\\mathcal K(\\tilde m) - λx,\\quad \\tilde m = m + ε\\dot m,

.. math::
    H = αf + \\tfrac γλ\\mathcal K^*(λx) + c\\big(\\mathcal K^*(λx) + \\mathcal K(m) - λ\\langle m, x\\rangle\\big),
    \\quad c = \\tfrac{1-εγ}{1+ελ},

.. math::
    Δ = \\tfrac{λ+γ}{1+ελ}\\langle\\tilde m - u, \\nabla\\mathcal K(\\tilde m) - λx\\rangle
      + \\tfrac{1-εγ}{ε(1+ελ)}\\langle\\tilde m - m, \\nabla\\mathcal K(\\tilde m) - \\nabla\\mathcal K(m)\\rangle,
    \\quad u = \\nabla\\mathcal K^*(λx).

Conditions: 𝒦 convex, α, γ, λ, ε ≥ 0, εγ ≤ 1; needs ‖λx‖_∞ < 1 where 𝒦* is a
smoothed box (tanh, pseudo-Huber). Limit points are stationary for
f + (γ/αλ)𝒦*(λx), which for 𝒦 → ℓ1 is the box problem ‖x‖_∞ ≤ 1/λ.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from osd_theory.convex import make_convex
from osd_theory.errors import UserError
from osd_theory.hd.base import Condition, HDSystem, _require


def bracket(K, X, Y):
    """[X; Y]_{∇𝒦} = ⟨Y, ∇𝒦(X + Y) − ∇𝒦(X)⟩ ≥ 0 for convex 𝒦."""
    return (Y * (K.grad(X + Y) - K.grad(X))).sum()


@dataclass(frozen=True)
class LionK(HDSystem):
    a: float = 1.0         # momentum rate (1/time); (1−β₂)/lr
    b: float = 0.1         # look-ahead weight in (0, 1); 1 − β₁
    kinetic_fn: str = "tanh"  # name of 𝒦 in osd_theory.convex.CONVEX
    delta: float = 1e-1    # smoothing width of 𝒦 (gradient units)

    name = "lion_k"
    state_names = ("exp_avg",)
    direction_uses_new_state = False

    def __post_init__(self):
        super().__post_init__()
        _require(self.a >= 0, f"lion_k needs a >= 0, got a={self.a}")
        # b outside (0, 1) is allowed (and reported by condition()), but at b = 0 or 1 the
        # Hamiltonian and Δ divide by zero: there is nothing to report on.
        _require(self.b not in (0.0, 1.0), f"lion_k needs b != 0 and b != 1 (H and Delta divide by b and 1-b), got b={self.b}")
        make_convex(self.kinetic_fn, self.delta)  # validates the name and δ

    @property
    def K(self):
        return make_convex(self.kinetic_fn, self.delta)

    @classmethod
    def from_discrete(cls, lr, beta1, beta2, kinetic_fn="tanh", delta=1e-1):
        return cls(a=(1 - beta2) / lr, b=1 - beta1, kinetic_fn=kinetic_fn, delta=delta)

    @property
    def loss_weight(self):
        return self.a

    def relaxation(self, t, S, g_hat):
        return ((-g_hat, self.a),)                               # Ṁ = −a(Ĝ + M)

    def direction(self, t, S, g_hat, W=None):
        (m,) = S
        return self.K.grad((1 - self.b) * m - self.b * g_hat)   # ∇𝒦((1−b)M − bĜ)

    def kinetic(self, t, S, W=None):
        (m,) = S
        return self.K.value((1 - self.b) * m) / (1 - self.b)

    def dissipation(self, t, S, g_hat, W=None):
        (m,) = S
        a, b, K = self.a, self.b, self.K
        return (a / b) * bracket(K, (1 - b) * m, -b * g_hat) + (a / (1 - b)) * bracket(K, torch.zeros_like(m), (1 - b) * m)

    def condition(self):
        ok = self.a >= 0 and 0 < self.b < 1
        return Condition(ok, f"a >= 0: {self.a:g}; 0 < b < 1: b = {self.b:g}; K = {self.kinetic_fn} (convex)")


@dataclass(frozen=True)
class LionKWeightDecay(HDSystem):
    alpha: float = 1.0      # gradient gain α (1/time)
    gamma: float = 1.0      # momentum decay rate γ (1/time)
    eps: float = 0.1        # look-ahead time ε (time); εγ = 1 − β₁ for Lion
    wd: float = 0.1         # weight decay λ (1/time); the box is ‖x‖_∞ ≤ 1/λ
    kinetic_fn: str = "tanh"
    delta: float = 1e-1

    name = "lion_k_wd"
    state_names = ("exp_avg",)
    direction_uses_new_state = False

    def __post_init__(self):
        super().__post_init__()
        _require(min(self.alpha, self.gamma, self.eps) >= 0 and self.wd > 0,
                 f"lion_k_wd needs alpha, gamma, eps >= 0 and wd > 0, got {self.describe()}")
        make_convex(self.kinetic_fn, self.delta)

    @property
    def K(self):
        return make_convex(self.kinetic_fn, self.delta)

    @classmethod
    def from_discrete(cls, lr, beta1, beta2, weight_decay, kinetic_fn="tanh", delta=1e-1):
        rate = (1 - beta2) / lr
        return cls(alpha=rate, gamma=rate, eps=lr * (1 - beta1) / (1 - beta2), wd=weight_decay,
                   kinetic_fn=kinetic_fn, delta=delta)

    @property
    def loss_weight(self):
        return self.alpha

    def _full(self, S, W):
        (m,) = S
        if W is None or m.shape != W.shape:
            raise UserError("lion_k_wd is a full-rank system: its state must have W's shape "
                            "(use the 'identity' projection with rank = min(m, n) on the matching side)")
        return m

    def _m_tilde(self, m, g):
        return m + self.eps * (-self.alpha * g - self.gamma * m)   # m̃ = m + ε ṁ

    def relaxation(self, t, S, g_hat):
        return ((-(self.alpha / self.gamma) * g_hat if self.gamma > 0 else -g_hat, self.gamma),)

    def state_rate(self, t, S, g_hat):
        (m,) = S
        return (-self.alpha * g_hat - self.gamma * m,)   # also valid for γ = 0

    def euler_state_(self, S, g_hat, h, t=0.0):
        # The relaxation form ρ(τ − m) cannot express γ = 0 (ṁ = −αĝ at rate 0, where
        # lerp would be a no-op): step ṁ directly, m ← m + h(−αĝ − γm).
        for s, rate in zip(S, self.state_rate(t, tuple(S), g_hat)):
            s.add_(rate.to(s.dtype), alpha=h)

    def direction(self, t, S, g_hat, W=None):
        (m,) = S
        return self.K.grad(self._m_tilde(m, g_hat))      # Ẇ = ∇𝒦(m̃) − λW (λW added by the caller)

    def kinetic(self, t, S, W=None):
        m = self._full(S, W)
        lam, K = self.wd, self.K
        c = (1 - self.eps * self.gamma) / (1 + self.eps * lam)
        Kc = K.conj(lam * W)
        return (self.gamma / lam) * Kc + c * (Kc + K.value(m) - lam * (m * W).sum())

    def dissipation(self, t, S, g_hat, W=None):
        m = self._full(S, W)
        lam, K, eps, gamma = self.wd, self.K, self.eps, self.gamma
        mt = self._m_tilde(m, g_hat)
        u = K.conj_grad(lam * W)
        gK = K.grad(mt)
        d1 = (lam + gamma) / (1 + eps * lam) * ((mt - u) * (gK - lam * W)).sum()
        d2 = (1 - eps * gamma) / (eps * (1 + eps * lam)) * ((mt - m) * (gK - K.grad(m))).sum() if eps > 0 else 0.0 * d1
        return d1 + d2

    def condition(self):
        ok = self.eps * self.gamma <= 1
        return Condition(ok, f"eps*gamma <= 1: {self.eps * self.gamma:g}; K = {self.kinetic_fn} (convex); full rank only")

    def stationarity(self, W, G):
        """‖∇(f + (γ/αλ)𝒦*(λx))‖ = ‖G + (γ/α)∇𝒦*(λW)‖ (→ box-KKT as δ → 0)."""
        return torch.linalg.vector_norm(G + (self.gamma / self.alpha) * self.K.conj_grad(self.wd * W))

    @property
    def stationarity_name(self):
        return "||grad (f + (gamma/alpha lambda) K*(lambda W))||"
