"""Symbolic twins of ``muon`` and ``muon_wd``: Lion-𝒦 with a **non-separable** 𝒦 of the whole matrix.

The elementwise twins of :mod:`osd_theory.symbolic.systems` write 𝒦(Z) = Σ k(z_ij); a spectral 𝒦
(Σ φ(σᵢ(Z))) is not of that form. Here 𝒦 is an unspecified differentiable function of *all* the
entries of its (r, c) argument:

* ``Km(r, c, z_11, …, z_rc)`` = 𝒦(Z), whose partial derivative in z_ij is ``Kg(r, c, idx, z…)``
  = (∇𝒦(Z))_ij (idx = i·c + j, 0-based);
* ``Ks`` / ``Ksg`` the same for the conjugate 𝒦*, with the conjugacy ∇𝒦*(∇𝒦(U)) = U built in:
  ``Ksg(r, c, idx, Kg(r, c, 0, u…), …, Kg(r, c, rc−1, u…))`` evaluates to u_idx.

The proofs then use only what Lion-𝒦's identity needs of 𝒦: the chain rule (any differentiable 𝒦),
∇𝒦(0) = 0 and, with weight decay, the conjugacy — so they hold for every spectral 𝒦 (and every
other one). The link to the torch code replaces the abstract functions by a numpy SVD of the
sympy φ of :data:`osd_theory.symbolic.calculus.CONCRETE_K` (``spectral_tanh``, …): an
implementation independent of :mod:`osd_theory.convex`.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import sympy as sp

from osd_theory.symbolic.calculus import CONCRETE_K, inner, k, kp, kstar, kstar_p
from osd_theory.symbolic.systems import SYMBOLIC, LionK, LionKWeightDecay, reduce_rational


def _shape_args(args):
    r, c = int(args[0]), int(args[1])
    return r, c, args[2:]


class Kg(sp.Function):
    """(∇𝒦(Z))_idx for Z (r, c): ``Kg(r, c, idx, *entries)``, unspecified."""


class Km(sp.Function):
    """𝒦(Z): ``Km(r, c, *entries)``; ∂/∂z_idx is ``Kg(r, c, idx, *entries)``."""

    def fdiff(self, argindex=1):
        if argindex <= 2:
            raise sp.ArgumentIndexError(self, argindex)
        return Kg(self.args[0], self.args[1], sp.Integer(argindex - 3), *self.args[2:])


class Ksg(sp.Function):
    """(∇𝒦*(Y))_idx; at Y = ∇𝒦(U) it evaluates to u_idx (conjugacy)."""

    @classmethod
    def eval(cls, r, c, idx, *entries):
        if not entries or not all(isinstance(e, Kg) for e in entries):
            return None
        u = entries[0].args[3:]
        ok = all(e.args[:2] == (r, c) and e.args[2] == i and e.args[3:] == u for i, e in enumerate(entries))
        return u[int(idx)] if ok and len(u) == len(entries) else None


class Ks(sp.Function):
    """𝒦*(Y): ``Ks(r, c, *entries)``; ∂/∂y_idx is ``Ksg(r, c, idx, *entries)``."""

    def fdiff(self, argindex=1):
        if argindex <= 2:
            raise sp.ArgumentIndexError(self, argindex)
        return Ksg(self.args[0], self.args[1], sp.Integer(argindex - 3), *self.args[2:])


def _args(Z: sp.Matrix) -> tuple:
    return (sp.Integer(Z.rows), sp.Integer(Z.cols), *Z)


def K_value(Z):
    return Km(*_args(Z))


def K_grad(Z):
    return sp.Matrix(Z.rows, Z.cols, lambda i, j: Kg(sp.Integer(Z.rows), sp.Integer(Z.cols),
                                                       sp.Integer(i * Z.cols + j), *Z))


def Kstar_value(Y):
    return Ks(*_args(Y))


def Kstar_grad(Y):
    return sp.Matrix(Y.rows, Y.cols, lambda i, j: Ksg(sp.Integer(Y.rows), sp.Integer(Y.cols),
                                                        sp.Integer(i * Y.cols + j), *Y))


def _grad_at_zero_is_zero(expr):
    """The fact ∇𝒦(0) = 0."""
    return expr.replace(lambda e: isinstance(e, Kg) and all(a == 0 for a in e.args[3:]), lambda e: sp.Integer(0))


# -- numeric spectral 𝒦 (numpy SVD of the sympy φ), for the link and the numeric fallback ---
SPECTRAL_FNS = ("spectral_tanh", "spectral_pseudo_huber", "spectral_l2")


def numeric_modules(kinetic_fn: str, delta: float) -> list:
    """lambdify modules implementing Km, Kg, Ks, Ksg as Σφ(σ), Uφ'(Σ)Vᵀ, Σφ*(σ), U(φ*)'(Σ)Vᵀ in numpy."""
    z = sp.Symbol("z", real=True)
    table = CONCRETE_K[kinetic_fn[len("spectral_"):]](sp.Float(delta))
    phi = {f: np.vectorize(sp.lambdify(z, table[f](z), modules="numpy")) for f in (k, kp, kstar, kstar_p)}

    def mat(r, c, entries):
        return np.array([float(e) for e in entries], dtype=np.float64).reshape(int(r), int(c))

    def value(f):
        return lambda r, c, *e: float(np.sum(phi[f](np.linalg.svd(mat(r, c, e), compute_uv=False))))

    def grad(f):
        def g(r, c, idx, *e):
            U, s, Vh = np.linalg.svd(mat(r, c, e), full_matrices=False)
            return float((U @ (phi[f](s)[:, None] * Vh)).reshape(-1)[int(idx)])
        return g

    return [{"Km": value(k), "Kg": grad(kp), "Ks": value(kstar), "Ksg": grad(kstar_p)}, "numpy"]


class _MatrixK:
    """Mixin: an abstract matrix 𝒦, concretised by a numpy spectral 𝒦 (see the module docstring)."""

    kinetic_fns: ClassVar[tuple[str, ...]] = SPECTRAL_FNS
    numeric_fn: ClassVar[str] = "spectral_tanh"

    def concrete(self, expr, kinetic_fn, delta):
        return expr                                      # the abstract functions stay; numeric_modules evaluates them

    def lambdify_modules(self, kinetic_fn, delta):
        return numeric_modules(kinetic_fn, delta)


class Muon(_MatrixK, LionK):
    """Lion-𝒦 with 𝒦 a differentiable function of the whole matrix: D = ∇𝒦((1−b)m − bĝ), H = aL + 𝒦((1−b)m)/(1−b)."""

    name = "muon"
    facts = "grad K(0) = 0; K an unspecified differentiable function of the whole matrix (not separable)"

    def direction(self, h, S, g, W):
        return K_grad((1 - h.b) * S[0] - h.b * g)

    def kinetic(self, h, S, W):
        return K_value((1 - h.b) * S[0]) / (1 - h.b)

    @staticmethod
    def bracket(X, Y):
        """[X; Y]_{∇𝒦} = ⟨Y, ∇𝒦(X + Y) − ∇𝒦(X)⟩ for a matrix 𝒦."""
        return inner(Y, K_grad(X + Y) - K_grad(X))

    def finalize(self, expr, h, S, W):
        return reduce_rational(_grad_at_zero_is_zero(expr))


class MuonWeightDecay(_MatrixK, LionKWeightDecay):
    """Full-rank Lion-𝒦 with weight decay, 𝒦 a differentiable function of the whole matrix (conjugacy built in)."""

    name = "muon_wd"
    facts = ("conjugacy grad K*(grad K(U)) = U via the change of variables W = grad K(U)/lambda (U fresh symbols); "
             "K an unspecified differentiable function of the whole matrix (not separable)")

    def direction(self, h, S, g, W):
        return K_grad(self._m_tilde(h, S[0], g))

    def kinetic(self, h, S, W):
        (m,) = S
        lam = h.wd
        Kc = Kstar_value(lam * W)
        return (h.gamma / lam) * Kc + self._c(h) * (Kc + K_value(m) - lam * inner(m, W))

    def dissipation(self, h, S, g, W):
        (m,) = S
        lam, eps, gamma = h.wd, h.eps, h.gamma
        mt = self._m_tilde(h, m, g)
        u = Kstar_grad(lam * W)
        gK = K_grad(mt)
        d1 = (lam + gamma) / (1 + eps * lam) * inner(mt - u, gK - lam * W)
        d2 = (1 - eps * gamma) / (eps * (1 + eps * lam)) * inner(mt - m, gK - K_grad(m))
        return d1 + d2

    def finalize(self, expr, h, S, W):
        U = sp.Matrix(W.rows, W.cols, lambda i, j: sp.Symbol(f"u_{i + 1}{j + 1}", real=True))
        G = K_grad(U)
        return reduce_rational(expr.subs({x: G[i] / h.wd for i, x in enumerate(W)}, simultaneous=True))


for _cls in (Muon, MuonWeightDecay):
    SYMBOLIC.add(_cls.name, _cls())
