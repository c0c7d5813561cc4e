"""A two-layer deep linear network ½‖W₂W₁X − Y‖²/N packed into one matrix (THEORY.md §8).

W (m×n, m even) holds W₁ = W[:h] (h×n: R^n → R^h) and W₂ᵀ = W[h:] (h×n), h = m/2, so
W₂ (n×h) maps back to R^n. Targets Y = T X with T of rank ``true_rank`` ≤ h.
All local minima are global (Kawaguchi 2016); W = 0 is a saddle, so the stationary
point reached is not unique and ``stationary_point()`` is None: verdicts check ‖∇L‖ → 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from osd_theory.errors import UserError
from osd_theory.problems.base import Problem


@dataclass
class DeepLinear(Problem):
    samples: int = 64
    true_rank: int = 2

    name = "deep_linear"
    description = "two-layer linear net 1/2N ||W2 W1 X - Y||^2, W = [W1; W2^T]"

    def __post_init__(self):
        super().__post_init__()
        if self.m % 2:
            raise UserError(f"deep_linear packs [W1; W2^T] and needs an even m, got m={self.m}")
        self.h = self.m // 2
        k = max(1, min(self.true_rank, self.h, self.n))
        self.X = self.randn(self.n, self.samples)
        self.T = self.randn(self.n, k) @ self.randn(k, self.n) / self.n ** 0.5
        self.Y = self.T @ self.X

    def _split(self, W):
        return W[: self.h], W[self.h:].mT          # W1 (h, n), W2 (n, h)

    def loss(self, W):
        W1, W2 = self._split(W)
        return 0.5 * (W2 @ W1 @ self.X - self.Y).pow(2).sum() / self.samples

    def grad(self, W):
        W1, W2 = self._split(W)
        R = (W2 @ W1 @ self.X - self.Y) / self.samples   # (n, N)
        g1 = W2.mT @ R @ self.X.mT                          # (h, n)
        g2 = R @ (W1 @ self.X).mT                           # (n, h)
        return torch.cat([g1, g2.mT], dim=0)

    def initial_point(self):
        g = torch.Generator().manual_seed(int(self.seed) + 1)
        return 0.5 * torch.randn(self.m, self.n, generator=g, dtype=self.dtype) / self.n ** 0.5
