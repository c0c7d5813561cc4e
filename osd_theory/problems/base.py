"""The objective interface: L(W) over a matrix W (m×n), with gradient and known stationary points.

Every problem is built from a size and a seed (a ``torch.Generator``), in float64 by
default, and gives:

* ``loss(W)`` (0-d) and ``grad(W)`` (m, n), in closed form (checked against autograd in tests);
* ``initial_point()`` — a seeded W₀;
* ``stationary_point()`` — the known unique stationary point, or ``None``;
  ``has_stationary_points`` is False when there are none (logistic regression on separable
  data: ‖w‖ → ∞), and the stationarity verdict must then never say "stationary".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from osd_theory.errors import UserError


def check_dims(m: int, n: int, *, min_m: int = 1, min_n: int = 1) -> tuple[int, int]:
    for name, v, lo in (("m", m, min_m), ("n", n, min_n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise UserError(f"problem size {name} must be an integer >= {lo}, got {v!r}")
    return m, n


@dataclass
class Problem:
    """Base class. Subclasses set ``name`` and fill their data in ``__post_init__``."""

    m: int = 8
    n: int = 8
    seed: int = 0
    dtype: torch.dtype = torch.float64
    gen: torch.Generator = field(init=False, repr=False)

    name = "base"
    has_stationary_points = True
    description = ""

    def __post_init__(self):
        check_dims(self.m, self.n)
        self.gen = torch.Generator().manual_seed(int(self.seed))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.m, self.n)

    def randn(self, *shape: int) -> Tensor:
        return torch.randn(*shape, generator=self.gen, dtype=self.dtype)

    def loss(self, W: Tensor) -> Tensor:
        raise NotImplementedError

    def grad(self, W: Tensor) -> Tensor:
        raise NotImplementedError

    def initial_point(self) -> Tensor:
        """W₀: a seeded Gaussian (m, n), unless the problem says otherwise."""
        g = torch.Generator().manual_seed(int(self.seed) + 1)
        return torch.randn(self.m, self.n, generator=g, dtype=self.dtype)

    def stationary_point(self) -> Tensor | None:
        """The known stationary point (unique), or None when unknown / not unique / absent."""
        return None

    def grad_norm(self, W: Tensor) -> Tensor:
        return torch.linalg.vector_norm(self.grad(W))
