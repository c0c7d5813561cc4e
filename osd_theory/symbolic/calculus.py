"""Symbolic building blocks: generic matrices, the two projection sides, and an abstract 𝒦.

Everything the proofs need beyond plain sympy lives here:

* :func:`sym_matrix` — a matrix of free real symbols (``g_11`` …), the generic G, P, Ṗ, states;
* :func:`project` / :func:`back_project` — the symbolic twins of :mod:`osd_theory.kernels`
  (LEFT: Ĝ = PᵀG, D ↦ PD; RIGHT: Ĝ = GP, D ↦ DPᵀ);
* an elementwise-separable convex 𝒦 left **unspecified**: ``k`` (value), ``kp`` = k',
  ``kstar`` = k* (conjugate) and ``kstar_p`` = (k*)'. Their ``fdiff`` encodes
  k ↦ k' and k* ↦ (k*)', and ``kstar_p(kp(u))`` evaluates to ``u``: the conjugacy
  relation (k*)' = (k')⁻¹, the only fact about 𝒦 the Lion-𝒦 identity needs besides
  k'(0) = 0 (applied explicitly where a proof needs it);
* :data:`CONCRETE_K` — concrete 𝒦 (tanh, pseudo-Huber, ℓ2) as sympy expressions, to
  lambdify against :mod:`osd_theory.convex` and for the numeric fallback.
"""
from __future__ import annotations

from typing import Callable

import sympy as sp


def sym_matrix(name: str, rows: int, cols: int, **assumptions) -> sp.Matrix:
    """A (rows, cols) matrix of free symbols ``name_ij`` (1-based), real unless told otherwise."""
    assumptions.setdefault("real", True)
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i + 1}{j + 1}", **assumptions))


def project(P: sp.Matrix, G: sp.Matrix, side: int) -> sp.Matrix:
    """Ĝ = PᵀG (LEFT = 0, (r, n)) or GP (RIGHT = 1, (m, r)) — as kernels.project."""
    return P.T * G if side == 0 else G * P


def back_project(P: sp.Matrix, D: sp.Matrix, side: int) -> sp.Matrix:
    """The adjoint of :func:`project`: PD (LEFT) or DPᵀ (RIGHT), shape (m, n)."""
    return P * D if side == 0 else D * P.T


def inner(A: sp.Matrix, B: sp.Matrix) -> sp.Expr:
    """⟨A, B⟩ = tr AᵀB = Σ_ij A_ij B_ij."""
    return sum((a * b for a, b in zip(A, B)), sp.Integer(0))


def elementwise(f: Callable[[sp.Expr], sp.Expr], A: sp.Matrix) -> sp.Matrix:
    return A.applyfunc(f)


# -- an abstract elementwise 𝒦 and its conjugate ------------------------------------------
class kp(sp.Function):
    """k' (the elementwise ∇𝒦), unspecified."""


class k(sp.Function):
    """k, with 𝒦(z) = Σ_i k(z_i); d k(z)/dz = k'(z)."""

    def fdiff(self, argindex=1):
        return kp(self.args[0])


class kstar_p(sp.Function):
    """(k*)', the gradient of the conjugate. Conjugacy: (k*)'(k'(u)) = u."""

    @classmethod
    def eval(cls, y):
        if isinstance(y, kp):
            return y.args[0]
        return None


class kstar(sp.Function):
    """k*, the convex conjugate of k; d k*(y)/dy = (k*)'(y)."""

    def fdiff(self, argindex=1):
        return kstar_p(self.args[0])


ABSTRACT_K = (k, kp, kstar, kstar_p)


def _tanh_k(d):
    # 𝒦_δ = δ log cosh(z/δ), conjugate δ[(1+y)/2 log(1+y) + (1−y)/2 log(1−y)]  (THEORY.md §3.4)
    return {k: lambda z: d * sp.log(sp.cosh(z / d)), kp: lambda z: sp.tanh(z / d),
            kstar: lambda y: d * ((1 + y) / 2 * sp.log(1 + y) + (1 - y) / 2 * sp.log(1 - y)),
            kstar_p: lambda y: d * sp.atanh(y)}


def _pseudo_huber_k(d):
    return {k: lambda z: sp.sqrt(z**2 + d**2) - d, kp: lambda z: z / sp.sqrt(z**2 + d**2),
            kstar: lambda y: d * (1 - sp.sqrt(1 - y**2)), kstar_p: lambda y: d * y / sp.sqrt(1 - y**2)}


def _l2_k(d):
    return {k: lambda z: z**2 / 2, kp: lambda z: z, kstar: lambda y: y**2 / 2, kstar_p: lambda y: y}


#: name (as in osd_theory.convex.CONVEX) -> δ -> {abstract function: concrete lambda}
CONCRETE_K: dict[str, Callable[[float], dict]] = {"tanh": _tanh_k, "pseudo_huber": _pseudo_huber_k, "l2": _l2_k}


def concretize(expr: sp.Expr, kinetic_fn: str, delta: float) -> sp.Expr:
    """Replace the abstract k, k', k*, (k*)' by a concrete convex 𝒦 (name from CONCRETE_K)."""
    table = CONCRETE_K[kinetic_fn](sp.Float(delta))
    for fn in (kstar_p, kstar, kp, k):     # (k*)' first: kstar's derivative creates it
        expr = expr.replace(fn, table[fn])
    return expr
