"""Box quadratic ½‖W − C‖² with ‖C‖_∞ > 1/λ (THEORY.md §8, last row).

Without weight decay the stationary point is C. With weight decay λ (Lion-ℓ₁, AdamW as
e → 0) the limit is the box-KKT point clip(C, ±1/λ); ``box_kkt_point(λ)`` returns it.
"""
from __future__ import annotations

from dataclasses import dataclass

from osd_theory.problems.base import Problem


@dataclass
class BoxQuadratic(Problem):
    scale: float = 3.0   # entries of C are N(0, scale²): many exceed 1/λ for λ ~ 1

    name = "box_quadratic"
    description = "1/2 ||W - C||^2; with weight decay lambda the KKT point is clip(C, +-1/lambda)"

    def __post_init__(self):
        super().__post_init__()
        self.C = self.scale * self.randn(self.m, self.n)

    def loss(self, W):
        return 0.5 * (W - self.C).pow(2).sum()

    def grad(self, W):
        return W - self.C

    def initial_point(self):
        return 0.0 * self.C

    def stationary_point(self):
        return self.C

    def box_kkt_point(self, wd: float):
        return self.C.clamp(-1.0 / wd, 1.0 / wd)
