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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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


def make_convex(name: str, delta: float = 1e-2) -> ConvexK:
    """Build a registered 𝒦 by name (unknown names list the valid ones)."""
    return CONVEX.get(name)(delta=delta)
