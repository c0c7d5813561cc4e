"""Convex kinetic functions 𝒦 for Lion-𝒦 and Signum (THEORY.md §3.3–3.4).

Each is convex, even, with 𝒦(0) = 0 and ∇𝒦(0) = 0, and carries its conjugate 𝒦*
(needed by the Lion-𝒦 Hamiltonian with weight decay). Smoothing the sign must use
the gradient of a *convex* function — never an arbitrary squashing map — or the
Lyapunov identities break (THEORY.md §3.4).

| name           | 𝒦(z)                        | ∇𝒦(z)              | 𝒦*(y)                                      |
|----------------|-----------------------------|--------------------|--------------------------------------------|
| ``l2``         | ½‖z‖²                       | z                  | ½‖y‖²                                       |
| ``tanh``       | δ Σ log cosh(z/δ)           | tanh(z/δ)          | δ Σ [(1+y)/2 log(1+y) + (1−y)/2 log(1−y)]  |
| ``pseudo_huber``| Σ (√(z²+δ²) − δ)           | z/√(z²+δ²)         | δ Σ (1 − √(1−y²))                          |

``tanh`` and ``pseudo_huber`` tend to ‖z‖₁ (sign) as δ → 0; their conjugates are
finite only on the box |y| < 1, which is where Lion's weight-decay constraint comes from.

**Spectral 𝒦** (``spectral_tanh``, ``spectral_pseudo_huber``, ``spectral_l2``): for a matrix Z
(…, m, n) with singular values σᵢ and thin SVD Z = U Σ Vᵀ, and an even convex φ from the table
above (𝒦 = Σ φ elementwise),

.. math::
    𝒦(Z) = Σ_i φ(σ_i(Z)),\\qquad ∇𝒦(Z) = U\\,φ'(Σ)\\,V^T,\\qquad 𝒦^*(Y) = Σ_i φ^*(σ_i(Y)),\\qquad
    ∇𝒦^*(Y) = U_Y\\,(φ^*)'(Σ_Y)\\,V_Y^T .

Convex and differentiable because φ is even, convex and differentiable (Lewis 1995: a unitarily
invariant function of σ is convex iff the absolutely symmetric function is; its conjugate is
Σ φ*(σ), von Neumann's trace inequality). ∇𝒦 is well defined at repeated singular values (φ'
takes one value on each repeated block) and at σ = 0 (φ'(0) = 0, odd). As δ → 0 the spectral
tanh / pseudo-Huber tend to the nuclear norm ‖Z‖_* and ∇𝒦 to the polar factor UVᵀ (Muon's
direction); 𝒦* is finite only on the spectral-norm ball ‖Y‖₂ < 1. ``spectral_l2`` is ½‖Z‖_F²
(= ``l2``), kept as the smooth reference.

:meth:`ConvexK.dual_norm` is the norm whose open unit ball is where 𝒦* is finite (∞-norm for the
elementwise smoothings, spectral norm for the spectral ones, none for ℓ2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from osd_theory.errors import UserError
from osd_theory.registry import Registry

CONVEX: Registry[type["ConvexK"]] = Registry("convex function K")


@dataclass(frozen=True)
class ConvexK:
    """A convex function 𝒦: value, gradient, conjugate and its gradient (elementwise sums)."""

    delta: float = 1e-2  # smoothing width (ignored by l2)

    def __post_init__(self):
        if not (self.delta > 0 and math.isfinite(self.delta)):
            raise UserError(f"smoothing width delta must be a finite number > 0, got {self.delta!r}")

    def value(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def grad(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def conj(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def conj_grad(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def dual_norm(self, y: Tensor) -> Tensor | None:
        """The norm whose open unit ball is dom 𝒦* (the weight-decay constraint ‖λW‖ < 1); None: all of space."""
        return y.abs().max()


@CONVEX.register("l2")
@dataclass(frozen=True)
class L2(ConvexK):
    def value(self, z):
        return 0.5 * z.pow(2).sum()

    def grad(self, z):
        return z

    def conj(self, y):
        return 0.5 * y.pow(2).sum()

    def conj_grad(self, y):
        return y

    def dual_norm(self, y):
        return None


def _log_cosh(x: Tensor) -> Tensor:
    # log cosh x = |x| + log1p(exp(-2|x|)) - log 2, stable for large |x|
    a = x.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


@CONVEX.register("tanh")
@dataclass(frozen=True)
class TanhK(ConvexK):
    def value(self, z):
        return self.delta * _log_cosh(z / self.delta).sum()

    def grad(self, z):
        return torch.tanh(z / self.delta)

    def conj(self, y):
        # x log x with the 0·log 0 = 0 convention via xlogy
        return self.delta * (0.5 * (torch.xlogy(1 + y, 1 + y) + torch.xlogy(1 - y, 1 - y))).sum()

    def conj_grad(self, y):
        return self.delta * torch.atanh(y)


@CONVEX.register("pseudo_huber")
@dataclass(frozen=True)
class PseudoHuber(ConvexK):
    def value(self, z):
        return (torch.sqrt(z.pow(2) + self.delta**2) - self.delta).sum()

    def grad(self, z):
        return z / torch.sqrt(z.pow(2) + self.delta**2)

    def conj(self, y):
        return (self.delta * (1 - torch.sqrt(1 - y.pow(2)))).sum()

    def conj_grad(self, y):
        return self.delta * y / torch.sqrt(1 - y.pow(2))


# -- spectral 𝒦: φ of the singular values ---------------------------------------------------
def _spectral_apply(f, z: Tensor) -> Tensor:
    """U f(Σ) Vᵀ for the thin SVD z = U Σ Vᵀ (batched over leading dims); f odd with f(0) = 0."""
    if z.ndim < 2:
        raise UserError(f"a spectral K takes a matrix (or a batch of matrices), got a tensor of shape {tuple(z.shape)}")
    U, S, Vh = torch.linalg.svd(z, full_matrices=False)
    return U @ (f(S).unsqueeze(-1) * Vh)


def _svdvals(z: Tensor) -> Tensor:
    if z.ndim < 2:
        raise UserError(f"a spectral K takes a matrix (or a batch of matrices), got a tensor of shape {tuple(z.shape)}")
    return torch.linalg.svdvals(z)


@dataclass(frozen=True)
class SpectralK(ConvexK):
    """𝒦(Z) = Σᵢ φ(σᵢ(Z)) for the elementwise 𝒦 ``scalar`` (φ = its one-entry value); see the module docstring."""

    scalar: ClassVar[type[ConvexK]] = L2

    @property
    def phi(self) -> ConvexK:
        return self.scalar(delta=self.delta)

    def value(self, z):
        return self.phi.value(_svdvals(z))

    def grad(self, z):
        return _spectral_apply(self.phi.grad, z)

    def conj(self, y):
        return self.phi.conj(_svdvals(y))

    def conj_grad(self, y):
        return _spectral_apply(self.phi.conj_grad, y)

    def dual_norm(self, y):
        # ℓ2's conjugate is finite everywhere, the smoothed absolute values' only on |y| < 1
        return None if issubclass(self.scalar, L2) else torch.linalg.matrix_norm(y, ord=2).max()


@CONVEX.register("spectral_l2")
@dataclass(frozen=True)
class SpectralL2(SpectralK):
    scalar = L2


@CONVEX.register("spectral_tanh")
@dataclass(frozen=True)
class SpectralTanh(SpectralK):
    scalar = TanhK


@CONVEX.register("spectral_pseudo_huber")
@dataclass(frozen=True)
class SpectralPseudoHuber(SpectralK):
    scalar = PseudoHuber


def make_convex(name: str, delta: float = 1e-2) -> ConvexK:
    """Build a registered 𝒦 by name (unknown names list the valid ones)."""
    return CONVEX.get(name)(delta=delta)
