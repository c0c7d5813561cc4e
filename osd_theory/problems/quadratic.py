"""Quadratic with a chosen spectrum (THEORY.md §8, first row).

.. math::
    L(W) = \\tfrac12\\big\\|A^{1/2}(W - W^*)B^{1/2}\\big\\|_F^2,\\qquad ∇L = A(W - W^*)B,

with A = U diag(α) Uᵀ (m×m) and B = V diag(β) Vᵀ (n×n), U, V Haar-random. The Hessian
B ⊗ A has eigenvalues α_i β_j: by default α log-spaced in [1/√κ, 1] and β in [1/√κ, 1],
so the spectrum spans [1/κ, 1] (κ = ``condition``). Unique stationary point W*.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from osd_theory.errors import UserError
from osd_theory.kernels import random_basis
from osd_theory.problems.base import Problem


@dataclass
class Quadratic(Problem):
    condition: float = 100.0   # κ = λ_max/λ_min of the Hessian

    name = "quadratic"
    description = "1/2 ||A^1/2 (W - W*) B^1/2||^2, Hessian spectrum in [1/kappa, 1]"

    def __post_init__(self):
        super().__post_init__()
        if not self.condition >= 1:
            raise UserError(f"quadratic condition number must be >= 1, got {self.condition!r}")
        root = self.condition ** 0.5
        U = random_basis(self.m, self.m, generator=self.gen, dtype=self.dtype)
        V = random_basis(self.n, self.n, generator=self.gen, dtype=self.dtype)
        alpha = torch.logspace(0, -1, self.m, base=root, dtype=self.dtype) if self.m > 1 else torch.ones(1, dtype=self.dtype)
        beta = torch.logspace(0, -1, self.n, base=root, dtype=self.dtype) if self.n > 1 else torch.ones(1, dtype=self.dtype)
        self.A = (U * alpha) @ U.mT
        self.B = (V * beta) @ V.mT
        self.W_star = self.randn(self.m, self.n)

    def loss(self, W):
        D = W - self.W_star
        return 0.5 * (D * (self.A @ D @ self.B)).sum()

    def grad(self, W):
        return self.A @ (W - self.W_star) @ self.B

    def stationary_point(self):
        return self.W_star
