"""Projection dynamics Ṗ = Γ(P, ∇L): the interface (THEORY.md §1.2).

A rule acts on one side of an (m, n) matrix W (see :mod:`osd_theory.kernels`): P is
(m, r) on the LEFT, (n, r) on the RIGHT. A rule may be

* **smooth** — it gives ``rate(t, P, G) = Ṗ`` (online-PCA flow, Oja, adversarial, any
  user callable); the ODE integrates P with W and S;
* **jump** — it gives event times and a new P at each (random resampling every τ,
  GaLore's periodic SVD); the ODE integrates piecewise and applies the jump between
  segments, logging H on both sides.

``dH/dt`` never depends on Γ (adjointness), so *any* rule is admissible for the
Lyapunov claim; Γ only matters for the rate and for Assumption 4.4(ii).

Lifecycle: ``rule.bind(shape)`` resolves the side and checks the rank, then
``rule.initial(G0)`` gives P₀ (and resets the rule's random stream from ``seed``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from osd_theory.errors import UserError
from osd_theory.kernels import LEFT, basis_dim, check_rank, parse_side, random_basis, svd_basis

INITS = ("svd", "random", "identity")


@dataclass
class ProjectionRule:
    rank: int = 2
    side: str | int = "auto"       # "auto" projects the smaller dimension (GaLore's std)
    init: str = "svd"              # P₀: "svd" (top-r of G₀, as the OSD reference code), "random" (Haar), "identity"
    seed: int = 0

    name: ClassVar[str] = "base"
    smooth: ClassVar[bool] = False  # has a non-zero rate Ṗ
    jumps: ClassVar[bool] = False   # changes P at event times

    side_: int = field(default=LEFT, init=False, repr=False)
    shape_: tuple[int, int] = field(default=(0, 0), init=False, repr=False)
    gen: torch.Generator = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.init not in INITS:
            raise UserError(f"unknown projection init {self.init!r}; expected one of {list(INITS)}")

    # -- lifecycle ------------------------------------------------------------------
    def bind(self, shape: tuple[int, int]) -> "ProjectionRule":
        """Resolve the side for an (m, n) matrix and validate the rank; returns self."""
        m, n = shape
        self.side_ = parse_side(self.side, m, n)
        self.shape_ = (m, n)
        check_rank(self.rank, shape)
        if self.init == "identity" and self.rank != basis_dim(shape, self.side_):
            raise UserError(f"init='identity' needs rank = {basis_dim(shape, self.side_)} (the projected dimension), got {self.rank}")
        return self

    @property
    def dim(self) -> int:
        return basis_dim(self.shape_, self.side_)

    def reset(self) -> None:
        self.gen = torch.Generator().manual_seed(int(self.seed))

    def initial(self, G0: Tensor) -> Tensor:
        """P₀ (dim, r) in G0's dtype. Resets the rule's random stream."""
        self.reset()
        if self.init == "identity":
            return torch.eye(self.dim, dtype=G0.dtype)
        if self.init == "svd" and bool(torch.linalg.matrix_norm(G0) > 0):
            return svd_basis(G0, self.rank, self.side_).to(G0.dtype)
        # a zero gradient has no singular basis: fall back to a random one
        return random_basis(self.dim, self.rank, generator=self.gen, dtype=G0.dtype)

    # -- dynamics -------------------------------------------------------------------
    def rate(self, t: float, P: Tensor, G: Tensor) -> Tensor:
        """Ṗ = Γ(P, G) (same shape as P). Zero for pure jump / constant rules."""
        return torch.zeros_like(P)

    def jump_times(self, t0: float, t1: float) -> list[float]:
        """Event times in (t0, t1) at which :meth:`jump` is applied."""
        return []

    def jump(self, t: float, P: Tensor, G: Tensor) -> Tensor:
        """The new P at an event time."""
        return P

    def describe(self) -> str:
        return f"{self.name}(rank={self.rank}, side={self.side}, init={self.init})"


def periodic_times(t0: float, t1: float, tau: float) -> list[float]:
    """Multiples of τ strictly inside (t0, t1)."""
    k0 = math.floor(t0 / tau) + 1
    out = []
    k = k0
    while k * tau < t1 - 1e-12 * max(1.0, abs(t1)):
        if k * tau > t0:
            out.append(k * tau)
        k += 1
    return out


def normalized(G: Tensor) -> tuple[Tensor, bool]:
    """G̃ = G/‖G‖ on the projected side's orientation is the caller's job; here (G/‖G‖, nonzero)."""
    norm = torch.linalg.matrix_norm(G)
    if bool(norm > 0):
        return G / norm, True
    return G, False
