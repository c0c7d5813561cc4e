"""Low-rank matrix regression ½‖AWB − C‖² (THEORY.md §8).

A (p×m) and B (n×q) have full column / row rank (p ≥ m, q ≥ n), C = A W_true B with
W_true of rank ``true_rank``. The unique stationary point is A⁺ C B⁺ = W_true.
The Assumption 4.4(ii) counterexample lives here: P with Pᵀ∇L = 0 while ∇L ≠ 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from osd_theory.problems.base import Problem


@dataclass
class LowRankRegression(Problem):
    true_rank: int = 2

    name = "lowrank_regression"
    description = "1/2 ||A W B - C||^2 with C = A W_true B, rank(W_true) = true_rank; stationary point A+ C B+"

    def __post_init__(self):
        super().__post_init__()
        p, q = self.m + 2, self.n + 2
        # well-conditioned A, B: columns near-orthonormal, scaled so that ||A|| ~ ||B|| ~ 1
        self.A = self.randn(p, self.m) / p ** 0.5 + torch.eye(p, self.m, dtype=self.dtype)
        self.B = self.randn(self.n, q) / q ** 0.5 + torch.eye(self.n, q, dtype=self.dtype)
        k = max(1, min(self.true_rank, self.m, self.n))
        self.W_true = self.randn(self.m, k) @ self.randn(k, self.n) / k ** 0.5
        self.C = self.A @ self.W_true @ self.B

    def loss(self, W):
        return 0.5 * (self.A @ W @ self.B - self.C).pow(2).sum()

    def grad(self, W):
        return self.A.mT @ (self.A @ W @ self.B - self.C) @ self.B.mT

    def stationary_point(self):
        return torch.linalg.pinv(self.A) @ self.C @ torch.linalg.pinv(self.B)
