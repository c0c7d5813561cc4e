"""Per-system symbolic definitions: the sympy twin of each :mod:`osd_theory.hd` system.

Each entry of :data:`SYMBOLIC` restates one HD system — state rate Ṡ, subspace direction
D (Ẇ = 𝒫(D) − λW), kinetic part K of H = c_L·L(W) + K, and the **closed-form** Δ that
the torch code returns — in sympy, with hyperparameters as positive symbols, the
projected gradient ĝ as an expression in generic P and G, and 𝒦 left abstract
(:mod:`osd_theory.symbolic.calculus`). :mod:`~osd_theory.symbolic.proof` differentiates H
along the field and checks ``dH/dt + Δ ≡ 0``; :mod:`~osd_theory.symbolic.link` checks
that these expressions are the torch code's, at random numeric points.

``finalize`` applies what a system's identity needs besides algebra (e.g. v = s² with
s > 0 for Adam; k'(0) = 0 for Lion-𝒦; x = k'(u)/λ, the conjugacy change of variables,
for Lion-𝒦 with weight decay); ``facts`` names them for the proof's report.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import sympy as sp

from osd_theory.registry import Registry
from osd_theory.symbolic.calculus import CONCRETE_K, concretize, inner, k, kp, kstar, kstar_p, sym_matrix

Mats = tuple[sp.Matrix, ...]


class SymbolicHD:
    """Base: subclasses set ``name``, ``hyper``, ``state_names`` and the five maps."""

    name: ClassVar[str] = "base"
    hyper: ClassVar[tuple[str, ...]] = ()          # dataclass fields of the torch system
    state_names: ClassVar[tuple[str, ...]] = ()
    positive_states: ClassVar[tuple[str, ...]] = ()  # states with v > 0 (Adam's second moment)
    uses_k: ClassVar[bool] = False                 # depends on the abstract 𝒦
    full_rank: ClassVar[bool] = False              # P ≡ I, state has W's shape (Lion-𝒦 with λ > 0)
    uses_t: ClassVar[bool] = False                 # non-autonomous
    facts: ClassVar[str] = "none (pure algebra)"
    kinetic_fns: ClassVar[tuple[str, ...]] = tuple(CONCRETE_K)   # concrete 𝒦 the link evaluates (uses_k)
    numeric_fn: ClassVar[str] = "tanh"                           # the 𝒦 of the numeric fallback

    def concrete(self, expr: sp.Expr, kinetic_fn: str, delta: float) -> sp.Expr:
        """``expr`` with the abstract 𝒦 replaced by a concrete one (elementwise: calculus.concretize)."""
        return concretize(expr, kinetic_fn, delta)

    def lambdify_modules(self, kinetic_fn: str, delta: float):
        """``modules`` for sympy.lambdify of a concretised expression."""
        return "numpy"

    def symbols(self) -> SimpleNamespace:
        return SimpleNamespace(**{h: sp.Symbol(h, positive=True) for h in self.hyper},
                               t=sp.Symbol("t", positive=True))

    def state(self, rows: int, cols: int) -> Mats:
        return tuple(sym_matrix(s, rows, cols, positive=True) if s in self.positive_states
                     else sym_matrix(s, rows, cols) for s in self.state_names)

    def loss_weight(self, h) -> sp.Expr:
        return sp.Integer(1)

    def weight_decay(self, h) -> sp.Expr:
        return sp.Integer(0)

    def rate(self, h, S: Mats, g: sp.Matrix) -> Mats:
        raise NotImplementedError

    def direction(self, h, S: Mats, g: sp.Matrix, W: sp.Matrix) -> sp.Matrix:
        raise NotImplementedError

    def kinetic(self, h, S: Mats, W: sp.Matrix) -> sp.Expr:
        raise NotImplementedError

    def dissipation(self, h, S: Mats, g: sp.Matrix, W: sp.Matrix) -> sp.Expr:
        raise NotImplementedError

    def finalize(self, expr: sp.Expr, h, S: Mats, W: sp.Matrix) -> sp.Expr:
        """Reduce ``dH/dt + Δ``; the default treats 𝒦-terms as opaque atoms (see :func:`reduce_rational`)."""
        return reduce_rational(expr)

    # -- numeric sampling within the system's condition (for the link and the fallback) ---
    def sample_hyper(self, rng: np.random.Generator) -> dict[str, float]:
        return {}

    def sample_state(self, rng: np.random.Generator, shape, hyper, W) -> list[np.ndarray]:
        return [rng.uniform(0.05, 3.0, shape) if s in self.positive_states else rng.normal(size=shape)
                for s in self.state_names]


def reduce_rational(expr: sp.Expr) -> sp.Expr:
    """Numerator of ``expr`` over a common denominator, expanded.

    Zero iff ``expr`` is identically zero as a rational function of the symbols and of
    the (opaque) atoms k(·), k'(·): hyperparameters enter through denominators such as
    1/(1 − b) and 1/(1 + ελ), which plain expansion does not clear.
    """
    num, _ = sp.fraction(sp.together(sp.expand(expr)))
    return sp.expand(num)


def reduce_by_groups(expr: sp.Expr, keys) -> sp.Expr:
    """:func:`reduce_rational` applied separately to the terms sharing the same subset of ``keys``.

    For separable systems (Adam: every denominator involves one s_i only) this turns one
    big common denominator into many small ones; a sum of zero groups is zero, and any
    group left non-zero leaves the residual non-zero (no false positives).
    """
    keys = set(keys)
    groups: dict[frozenset, list] = {}
    for term in sp.Add.make_args(sp.expand(expr)):
        groups.setdefault(frozenset(term.free_symbols & keys), []).append(term)
    return sp.Add(*(reduce_rational(sp.Add(*terms)) for terms in groups.values()))


SYMBOLIC: Registry[SymbolicHD] = Registry("symbolic system")


def _register(cls):
    SYMBOLIC.add(cls.name, cls())
    return cls


def _sq(A: sp.Matrix) -> sp.Matrix:
    return A.multiply_elementwise(A)


@_register
class GD(SymbolicHD):
    """Ẇ = −𝒫(ĝ), H = L, Δ = ‖ĝ‖²."""

    name = "gd"

    def rate(self, h, S, g):
        return ()

    def direction(self, h, S, g, W):
        return -g

    def kinetic(self, h, S, W):
        return sp.Integer(0)

    def dissipation(self, h, S, g, W):
        return inner(g, g)


@_register
class HeavyBall(SymbolicHD):
    """ṁ = a(ĝ − m), D = −m, K = ‖m‖²/2a, Δ = ‖m‖²."""

    name = "heavy_ball"
    hyper = ("a",)
    state_names = ("m",)

    def rate(self, h, S, g):
        (m,) = S
        return (h.a * (g - m),)

    def direction(self, h, S, g, W):
        return -S[0]

    def kinetic(self, h, S, W):
        return inner(S[0], S[0]) / (2 * h.a)

    def dissipation(self, h, S, g, W):
        return inner(S[0], S[0])

    def sample_hyper(self, rng):
        return {"a": rng.uniform(0.1, 3.0)}


@_register
class Adam(SymbolicHD):
    """ṁ = a(ĝ−m), v̇ = b(ĝ²−v), D = −m/(√v+e), K = ⟨m/(√v+e), m⟩/2a; Δ of THEORY.md §3.2."""

    name = "adam"
    hyper = ("a", "b", "e")
    state_names = ("m", "v")
    positive_states = ("v",)
    facts = "v = s^2 with s > 0 (so sqrt(v) = s), then rational cancellation"

    def rate(self, h, S, g):
        m, v = S
        return (h.a * (g - m), h.b * (_sq(g) - v))

    def _den(self, h, v):
        return v.applyfunc(lambda x: sp.sqrt(x) + h.e)

    def direction(self, h, S, g, W):
        m, v = S
        return -m.multiply_elementwise(self._den(h, v).applyfunc(lambda d: 1 / d))

    def kinetic(self, h, S, W):
        m, v = S
        return sum((mi**2 / d for mi, d in zip(m, self._den(h, v))), sp.Integer(0)) / (2 * h.a)

    def dissipation(self, h, S, g, W):
        # Δ = Σ m²/(s+e)·(1 − q s/(s+e)) + q Σ m²ĝ²/(s(s+e)²),  s = √v, q = b/4a
        m, v = S
        q = h.b / (4 * h.a)
        out = sp.Integer(0)
        for mi, vi, gi in zip(m, v, g):
            s = sp.sqrt(vi)
            d = s + h.e
            out += mi**2 / d * (1 - q * s / d) + q * mi**2 * gi**2 / (s * d**2)
        return out

    def finalize(self, expr, h, S, W):
        v = S[1]
        s = [sp.Symbol(f"s{vi.name[1:]}", positive=True) for vi in v]
        return reduce_by_groups(expr.subs({vi: si**2 for vi, si in zip(v, s)}), s)

    def sample_hyper(self, rng):
        a = rng.uniform(0.2, 3.0)
        return {"a": a, "b": rng.uniform(0.05, 4 * a), "e": rng.uniform(1e-3, 0.5)}


@_register
class AdamBC(Adam):
    """Barakat–Bianchi: D = −a m/U, U = a c₁(e + √(v/c₂)), K = ½Σ m²/U, c_i = 1 − e^{−ρ_i t}."""

    name = "adam_bc"
    uses_t = True
    facts = ("v = s^2 with s > 0; exp(-a t) = 1 - c1, exp(-b t) = 1 - c2 with c1, c2 > 0; "
             "rational cancellation")

    def _U(self, h, v):
        c1, c2 = 1 - sp.exp(-h.a * h.t), 1 - sp.exp(-h.b * h.t)
        return v.applyfunc(lambda x: h.a * c1 * (h.e + sp.sqrt(x / c2)))

    def direction(self, h, S, g, W):
        m, v = S
        return (-h.a * m).multiply_elementwise(self._U(h, v).applyfunc(lambda u: 1 / u))

    def kinetic(self, h, S, W):
        m, v = S
        return sum((mi**2 / u for mi, u in zip(m, self._U(h, v))), sp.Integer(0)) / 2

    def dissipation(self, h, S, g, W):
        # the closed form of hd/adam.py: Δ = aΣ m²/U + ½Σ m² U̇/U², U̇ = ∂_tU + ∂_vU·v̇
        m, v = S
        a, b, e, t = h.a, h.b, h.e, h.t
        c1, c2 = 1 - sp.exp(-a * t), 1 - sp.exp(-b * t)
        out = sp.Integer(0)
        for mi, vi, gi in zip(m, v, g):
            s = sp.sqrt(vi / c2)
            U = a * c1 * (e + s)
            dU_dt = a * a * sp.exp(-a * t) * (e + s) - a * c1 * s * b * sp.exp(-b * t) / (2 * c2)
            dU_dv_vdot = a * c1 * b * (gi**2 - vi) / (2 * sp.sqrt(vi * c2))
            out += a * mi**2 / U + mi**2 * (dU_dt + dU_dv_vdot) / (2 * U**2)
        return out

    def finalize(self, expr, h, S, W):
        c1, c2 = sp.Symbol("c1", positive=True), sp.Symbol("c2", positive=True)
        expr = expr.subs({sp.exp(-h.a * h.t): 1 - c1, sp.exp(-h.b * h.t): 1 - c2})
        return super().finalize(expr, h, S, W)

    def sample_hyper(self, rng):
        return {**super().sample_hyper(rng), "t": rng.uniform(0.05, 3.0)}


@_register
class LionK(SymbolicHD):
    """ṁ = −a(ĝ+m), D = k'((1−b)m − bĝ), H = aL + Σk((1−b)m)/(1−b); Δ of THEORY.md §3.3."""

    name = "lion_k"
    hyper = ("a", "b")
    state_names = ("m",)
    uses_k = True
    facts = "k'(0) = 0 (the condition grad K(0) = 0); k otherwise arbitrary"

    def loss_weight(self, h):
        return h.a

    def rate(self, h, S, g):
        return (-h.a * (g + S[0]),)

    def direction(self, h, S, g, W):
        return ((1 - h.b) * S[0] - h.b * g).applyfunc(kp)

    def kinetic(self, h, S, W):
        return sum((k((1 - h.b) * mi) for mi in S[0]), sp.Integer(0)) / (1 - h.b)

    @staticmethod
    def bracket(X, Y):
        """[X; Y]_{∇𝒦} = ⟨Y, k'(X + Y) − k'(X)⟩."""
        return inner(Y, (X + Y).applyfunc(kp) - X.applyfunc(kp))

    def dissipation(self, h, S, g, W):
        (m,) = S
        a, b = h.a, h.b
        return (a / b) * self.bracket((1 - b) * m, -b * g) + (a / (1 - b)) * self.bracket(0 * m, (1 - b) * m)

    def finalize(self, expr, h, S, W):
        return reduce_rational(expr.subs(kp(0), 0))

    def sample_hyper(self, rng):
        return {"a": rng.uniform(0.1, 3.0), "b": rng.uniform(0.05, 0.95)}


@_register
class LionKWeightDecay(SymbolicHD):
    """Full-rank Lion-𝒦 with weight decay λ (THEORY.md §3.3); m̃ = m + εṁ, u = (k*)'(λx)."""

    name = "lion_k_wd"
    hyper = ("alpha", "gamma", "eps", "wd")
    state_names = ("m",)
    uses_k = True
    full_rank = True
    facts = ("conjugacy (k*)'(k'(u)) = u via the change of variables x = k'(u)/lambda "
             "(u = (k*)'(lambda x), fresh symbols); k otherwise arbitrary")

    def loss_weight(self, h):
        return h.alpha

    def weight_decay(self, h):
        return h.wd

    def rate(self, h, S, g):
        return (-h.alpha * g - h.gamma * S[0],)

    def _m_tilde(self, h, m, g):
        return m + h.eps * (-h.alpha * g - h.gamma * m)

    def direction(self, h, S, g, W):
        return self._m_tilde(h, S[0], g).applyfunc(kp)

    def _c(self, h):
        return (1 - h.eps * h.gamma) / (1 + h.eps * h.wd)

    def kinetic(self, h, S, W):
        (m,) = S
        lam = h.wd
        Kc = sum((kstar(lam * x) for x in W), sp.Integer(0))
        Km = sum((k(mi) for mi in m), sp.Integer(0))
        return (h.gamma / lam) * Kc + self._c(h) * (Kc + Km - lam * inner(m, W))

    def dissipation(self, h, S, g, W):
        (m,) = S
        lam, eps, gamma = h.wd, h.eps, h.gamma
        mt = self._m_tilde(h, m, g)
        u = (lam * W).applyfunc(kstar_p)
        gK = mt.applyfunc(kp)
        d1 = (lam + gamma) / (1 + eps * lam) * inner(mt - u, gK - lam * W)
        d2 = (1 - eps * gamma) / (eps * (1 + eps * lam)) * inner(mt - m, gK - m.applyfunc(kp))
        return d1 + d2

    def finalize(self, expr, h, S, W):
        # x = k'(u)/λ  ⇔  u = (k*)'(λx): kstar_p(kp(u)) then evaluates to u
        to_u = {x: kp(sp.Symbol(f"u{x.name[1:]}", real=True)) / h.wd for x in W}
        return reduce_rational(expr.subs(to_u))

    def sample_hyper(self, rng):
        gamma = rng.uniform(0.1, 3.0)
        return {"alpha": rng.uniform(0.1, 3.0), "gamma": gamma, "eps": rng.uniform(0.01, 1.0) / gamma,
                "wd": rng.uniform(0.1, 2.0)}


@_register
class Signum(SymbolicHD):
    """ṁ = a(ĝ − m), D = −k'(m), K = Σk(m)/a, Δ = ⟨m, k'(m)⟩."""

    name = "signum"
    hyper = ("a",)
    state_names = ("m",)
    uses_k = True

    def rate(self, h, S, g):
        return (h.a * (g - S[0]),)

    def direction(self, h, S, g, W):
        return -S[0].applyfunc(kp)

    def kinetic(self, h, S, W):
        return sum((k(mi) for mi in S[0]), sp.Integer(0)) / h.a

    def dissipation(self, h, S, g, W):
        return inner(S[0], S[0].applyfunc(kp))

    def sample_hyper(self, rng):
        return {"a": rng.uniform(0.1, 3.0)}
