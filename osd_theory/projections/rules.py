"""The built-in projection rules (THEORY.md §1.2, §2, §4, §5).

| name            | kind   | Γ                                                              |
|-----------------|--------|----------------------------------------------------------------|
| ``constant``    | —      | Ṗ = 0 (P₀ from ``init``)                                       |
| ``identity``    | —      | P = I, full rank (rank = projected dimension)                 |
| ``random_jump`` | jump   | resample P every τ (Haar or Gaussian)                          |
| ``periodic_svd``| jump   | P ← top-r singular basis of G every τ (GaLore)                 |
| ``online_pca``  | smooth | Ṗ = −α ∇_P 𝓛_G(P), the OSD flow (closed form, §4.1)            |
| ``online_pca_refresh`` | smooth + jump | ``online_pca``'s flow between jumps, ``periodic_svd``'s jump every τ |
| ``oja``         | smooth | Ṗ = α (I − PPᵀ) G̃G̃ᵀ P (Oja's subspace rule)                    |
| ``adversarial`` | smooth | Ṗ = −α G̃G̃ᵀP − μ P(PᵀP − I): drives PᵀG → 0 (starts ⟂ G₀)        |
| ``random_smooth``| smooth| Ṗ = tanh(A P + P B) + c G̃G̃ᵀ P with seeded random A, B, c      |

G̃G̃ᵀ is never formed: products are taken right to left.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from osd_theory.errors import UserError
from osd_theory.kernels import (online_pca_parts, online_pca_grad_from_parts, oriented, random_basis,
                                svd_refresh)
from osd_theory.projections.base import ProjectionRule, SmoothRule, periodic_times


def _positive(name: str, value: float, rule: str) -> None:
    if not value > 0:
        raise UserError(f"{rule} needs {name} > 0, got {value!r}")


@dataclass
class Constant(ProjectionRule):
    name = "constant"


@dataclass
class Identity(ProjectionRule):
    """P = I: the full-rank system, a reference point for every subspace run."""

    init: str = "identity"
    name = "identity"

    def bind(self, shape):
        # full rank on the chosen side: rank = that dimension (may exceed min(m, n))
        from osd_theory.kernels import basis_dim, parse_side
        self.side_ = parse_side(self.side, *shape)
        self.shape_ = tuple(shape)
        self.rank = basis_dim(shape, self.side_)
        return self


@dataclass
class RandomJump(ProjectionRule):
    tau: float = 1.0                 # time between resamplings
    distribution: str = "haar"       # "haar" (orthonormal) or "gaussian" (N(0, 1/r))
    init: str = "random"

    name = "random_jump"
    jumps = True

    def __post_init__(self):
        super().__post_init__()
        _positive("tau", self.tau, self.name)
        if self.distribution not in ("haar", "gaussian"):
            raise UserError(f"unknown distribution {self.distribution!r}; expected one of ['gaussian', 'haar']")

    def initial_basis(self, G, gen):
        if self.init != "random":
            return super().initial_basis(G, gen)
        return self._draw(G, gen)

    def _draw(self, like: Tensor, gen: torch.Generator) -> Tensor:
        dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
        P = random_basis(self.dim, self.rank, generator=gen, distribution=self.distribution, dtype=torch.float64,
                         device=like.device)
        return P.to(dtype)

    def jump_times(self, t0, t1):
        return periodic_times(t0, t1, self.tau)

    def jump_basis(self, P, G, gen):
        return self._draw(P, gen)


@dataclass
class PeriodicSVD(ProjectionRule):
    tau: float = 1.0                 # refresh period (GaLore's update_proj_gap × lr)

    name = "periodic_svd"
    jumps = True

    def __post_init__(self):
        super().__post_init__()
        _positive("tau", self.tau, self.name)

    def jump_times(self, t0, t1):
        return periodic_times(t0, t1, self.tau)

    def jump_basis(self, P, G, gen):
        P_new = svd_refresh(G, self.rank, self.side_)   # None (keep P) for a zero or non-finite G
        return None if P_new is None else P_new.to(P.dtype)


@dataclass
class OnlinePCA(SmoothRule):
    """OSD's flow Ṗ = −α ∇_P 𝓛_G(P) (arXiv:2408.12857 Eq. (6); closed form, THEORY.md §4.1)."""

    alpha: float = 5.0        # rate of the P flow relative to W's (ε^P/ε^W); 5 as the paper (§4.3) and discrete OSD
    pca_lambda: float = 0.1   # λ of the orthogonality term λ‖PᵀP − I‖²

    name = "online_pca"
    p_optimizer = "adam"      # the paper's P update: one Adam step on 𝓛_G per iteration

    def __post_init__(self):
        super().__post_init__()
        if not self.pca_lambda >= 0:
            raise UserError(f"{self.name} needs pca_lambda >= 0, got {self.pca_lambda!r}")

    def field_parts(self, t, P, G, G_hat=None, inv=None):
        return online_pca_parts(P, G, self.side_, G_hat=G_hat, inv=inv)      # A = PᵀG̃, B = G̃Aᵀ

    def field_from_parts(self, t, P, parts):
        A, B = parts
        return online_pca_grad_from_parts(P, A, B, self.pca_lambda).neg_()


@dataclass
class OnlinePCARefresh(PeriodicSVD, OnlinePCA):
    """OSD's flow between jumps, GaLore's jump every τ (does GaLore's coverage of new directions help OSD?).

    Composed, not copied: the flow (``alpha``, ``pca_lambda``, ``field_parts``/``field_from_parts``, Adam on P)
    is :class:`OnlinePCA`'s, the jump (``tau``, ``jump_times``, ``jump_basis``: the top-r singular basis of
    the current G) is :class:`PeriodicSVD`'s. Discrete face: a P step every step, a jump every
    ``update_proj_gap`` steps (the group's ``switch`` acts on the moments there, as for GaLore); the
    P-optimizer's own state is kept across a jump.
    """

    name = "online_pca_refresh"


@dataclass
class Oja(SmoothRule):
    """Oja's subspace rule Ṗ = α (I − PPᵀ) G̃G̃ᵀ P."""

    name = "oja"

    def field_from_parts(self, t, P, parts):
        (CP,) = parts
        return CP - P @ (P.mT @ CP)


@dataclass
class Adversarial(SmoothRule):
    """Drives PᵀG → 0 while keeping P near-orthonormal: the worst case for the rate.

    Ṗ = −α G̃G̃ᵀP − μ P(PᵀP − I), i.e. field = −G̃G̃ᵀP − (μ/α) P(PᵀP − I).
    """

    alpha: float = 10.0   # strength of the push away from G
    mu: float = 1.0       # strength of the orthonormality term
    init: str = "random"

    name = "adversarial"

    def __post_init__(self):
        super().__post_init__()
        _positive("alpha", self.alpha, self.name)   # the field divides μ by α

    def initial_basis(self, G0, gen):
        # start blind to G₀: a random basis of the orthogonal complement of col(G₀) when it exists
        dtype = G0.dtype if G0.dtype in (torch.float32, torch.float64) else torch.float32
        P = random_basis(self.dim, self.rank, generator=gen, dtype=torch.float64, device=G0.device).to(dtype)
        Gs = oriented(G0, self.side_).to(dtype)
        k = int(torch.linalg.matrix_rank(Gs)) if bool(torch.linalg.matrix_norm(Gs) > 0) else 0
        if 0 < k and self.dim - k >= self.rank:
            Q = torch.linalg.qr(Gs)[0][:, :k]
            P = torch.linalg.qr(P - Q @ (Q.mT @ P))[0]
        # else col(G₀) leaves no r-dimensional complement: start random and let the flow push
        return P

    def field_from_parts(self, t, P, parts):
        (CP,) = parts
        eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
        return -CP - (self.mu / self.alpha) * (P @ (P.mT @ P - eye))


@dataclass
class RandomSmooth(SmoothRule):
    """An arbitrary smooth Γ from seeded random coefficients (for property tests and C1).

    Ṗ = α(scale · tanh(A P + P B) + c G̃G̃ᵀ P), with A (dim, dim), B (r, r) Gaussian and c ∈ [−1, 1].
    """

    scale: float = 1.0
    coef_seed: int = 0
    init: str = "random"
    A: Tensor = field(default=None, init=False, repr=False)
    B: Tensor = field(default=None, init=False, repr=False)
    c: float = field(default=0.0, init=False, repr=False)

    name = "random_smooth"

    def bind(self, shape):
        super().bind(shape)
        g = torch.Generator().manual_seed(int(self.coef_seed))
        self.A = torch.randn(self.dim, self.dim, generator=g, dtype=torch.float64) / self.dim ** 0.5
        self.B = torch.randn(self.rank, self.rank, generator=g, dtype=torch.float64) / self.rank ** 0.5
        self.c = float(2 * torch.rand((), generator=g, dtype=torch.float64) - 1)
        return self

    def field_from_parts(self, t, P, parts):
        (CP,) = parts
        A, B = self.A.to(P.device, P.dtype), self.B.to(P.device, P.dtype)
        return self.scale * torch.tanh(A @ P + P @ B) + self.c * CP


BUILTIN_RULES = (Constant, Identity, RandomJump, PeriodicSVD, OnlinePCA, OnlinePCARefresh, Oja, Adversarial, RandomSmooth)
