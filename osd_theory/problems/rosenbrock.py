"""Rosenbrock, the vector case embedded as a matrix (THEORY.md §8).

W (m×n, mn even) is read as mn/2 independent pairs (x, y) = (w_{2i}, w_{2i+1}):

.. math::  L(W) = \\sum_i (1 - x_i)^2 + 100 (y_i - x_i^2)^2 .

Each pair has the single stationary point (1, 1) (Hessian eigenvalues 0.399 and 1001.6,
κ ≈ 2508), so the unique stationary point is W = 1. Stiff: a test of integrators.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from osd_theory.errors import UserError
from osd_theory.problems.base import Problem


@dataclass
class Rosenbrock(Problem):
    name = "rosenbrock"
    description = "sum of (1-x)^2 + 100 (y-x^2)^2 over pairs of entries; stationary point W = 1"

    def __post_init__(self):
        super().__post_init__()
        if (self.m * self.n) % 2:
            raise UserError(f"rosenbrock needs an even number of entries m*n, got {self.m}x{self.n}")

    def _xy(self, W):
        flat = W.reshape(-1, 2)
        return flat[:, 0], flat[:, 1]

    def loss(self, W):
        x, y = self._xy(W)
        return ((1 - x) ** 2 + 100 * (y - x * x) ** 2).sum()

    def grad(self, W):
        x, y = self._xy(W)
        gx = -2 * (1 - x) - 400 * x * (y - x * x)
        gy = 200 * (y - x * x)
        return torch.stack([gx, gy], dim=1).reshape(W.shape)

    def initial_point(self):
        # the classic start (−1.2, 1) per pair, jittered by the seed
        g = torch.Generator().manual_seed(int(self.seed) + 1)
        base = torch.tensor([-1.2, 1.0], dtype=self.dtype).repeat(self.m * self.n // 2)
        return (base + 0.1 * torch.randn(base.shape, generator=g, dtype=self.dtype)).reshape(self.m, self.n)

    def stationary_point(self):
        return torch.ones(self.m, self.n, dtype=self.dtype)
