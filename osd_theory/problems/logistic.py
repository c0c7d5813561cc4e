"""Logistic regression on linearly separable data (THEORY.md §8): **no** stationary point.

w = vec(W) ∈ R^{mn}; samples x_i ~ N(0, I), labels y_i = sign(⟨w_teacher, x_i⟩), so the
data are separable and L(w) = (1/N) Σ log(1 + exp(−y_i ⟨x_i, w⟩)) → 0 only as ‖w‖ → ∞.
The stationarity checker must never report "stationary" here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from osd_theory.problems.base import Problem


@dataclass
class Logistic(Problem):
    samples: int = 128

    name = "logistic"
    has_stationary_points = False
    description = "logistic regression on separable data; no stationary point (||W|| -> inf)"

    def __post_init__(self):
        super().__post_init__()
        d = self.m * self.n
        self.X = self.randn(self.samples, d)
        teacher = self.randn(d)
        self.y = torch.sign(self.X @ teacher)
        self.y[self.y == 0] = 1.0

    def _margins(self, W):
        return self.y * (self.X @ W.reshape(-1))

    def loss(self, W):
        # log(1 + e^{−z}) = logaddexp(0, −z), exact in float64; F.softplus switches to the
        # linear branch above 20 and is then off by up to e^{−20} ≈ 2e-9 (its gradient 1
        # instead of σ(20)), which is visible in float64 energy checks.
        return torch.logaddexp(torch.zeros((), dtype=W.dtype), -self._margins(W)).mean()

    def grad(self, W):
        coef = -self.y * torch.sigmoid(-self._margins(W)) / self.samples
        return (self.X.mT @ coef).reshape(W.shape)

    def initial_point(self):
        return torch.zeros(self.m, self.n, dtype=self.dtype)
