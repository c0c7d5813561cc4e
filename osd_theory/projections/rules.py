"""The built-in projection rules (THEORY.md §1.2, §2, §4, §5; ECOSYSTEM.md).

| name            | kind   | Γ                                                              |
|-----------------|--------|----------------------------------------------------------------|
| ``constant``    | —      | Ṗ = 0 (P₀ from ``init``)                                       |
| ``identity``    | —      | P = I, full rank (rank = projected dimension)                 |
| ``random_jump`` | jump   | resample P every τ (Haar or Gaussian)                          |
| ``periodic_svd``| jump   | P ← top-r singular basis of G every τ (GaLore)                 |
| ``online_pca``  | smooth | Ṗ = −α ∇_P 𝓛_G(P), the OSD flow (closed form, §4.1)            |
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
from osd_theory.kernels import LEFT, online_pca_grad, random_basis
from osd_theory.projections.base import ProjectionRule, normalized, periodic_times


def _oriented(G: Tensor, side: int) -> Tensor:
    """G as (dim, k), so that P (dim, r) spans its columns."""
    return G if side == LEFT else G.mT


def _gram_apply(G: Tensor, P: Tensor, side: int) -> Tensor:
    """G̃ G̃ᵀ P (dim, r) without forming G̃ G̃ᵀ; zero when G = 0."""
    Gt, _ = normalized(_oriented(G, side))
    return Gt @ (Gt.mT @ P)


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

    def initial(self, G0):
        P = super().initial(G0)
        return random_basis(self.dim, self.rank, generator=self.gen, distribution=self.distribution,
                            dtype=G0.dtype) if self.init == "random" else P

    def jump_times(self, t0, t1):
        return periodic_times(t0, t1, self.tau)

    def jump(self, t, P, G):
        return random_basis(self.dim, self.rank, generator=self.gen, distribution=self.distribution, dtype=P.dtype)


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

    def jump(self, t, P, G):
        if not bool(torch.linalg.matrix_norm(G) > 0):
            return P  # no direction to refresh from: keep the old basis
        from osd_theory.kernels import svd_basis
        return svd_basis(G, self.rank, self.side_).to(P.dtype)


@dataclass
class OnlinePCA(ProjectionRule):
    alpha: float = 5.0        # rate of the P flow relative to W's (ε^P/ε^W); 5 as the paper (§4.3) and discrete OSD
    pca_lambda: float = 0.1   # λ of the orthogonality term λ‖PᵀP − I‖²

    name = "online_pca"
    smooth = True

    def __post_init__(self):
        super().__post_init__()
        _positive("alpha", self.alpha, self.name)
        if not self.pca_lambda >= 0:
            raise UserError(f"online_pca needs pca_lambda >= 0, got {self.pca_lambda!r}")

    def rate(self, t, P, G):
        return -self.alpha * online_pca_grad(P, G, self.pca_lambda, self.side_)


@dataclass
class Oja(ProjectionRule):
    alpha: float = 1.0

    name = "oja"
    smooth = True

    def __post_init__(self):
        super().__post_init__()
        _positive("alpha", self.alpha, self.name)

    def rate(self, t, P, G):
        CP = _gram_apply(G, P, self.side_)
        return self.alpha * (CP - P @ (P.mT @ CP))


@dataclass
class Adversarial(ProjectionRule):
    """Drives PᵀG → 0 while keeping P near-orthonormal: the worst case for the rate."""

    alpha: float = 10.0   # strength of the push away from G
    mu: float = 1.0       # strength of the orthonormality term
    init: str = "random"

    name = "adversarial"
    smooth = True

    def initial(self, G0):
        # start blind to G₀: a random basis of the orthogonal complement of col(G₀) when it exists
        P = random_basis(self.dim, self.rank, generator=(self.reset() or self.gen), dtype=G0.dtype)
        Gs = _oriented(G0, self.side_)
        k = int(torch.linalg.matrix_rank(Gs)) if bool(torch.linalg.matrix_norm(Gs) > 0) else 0
        if 0 < k and self.dim - k >= self.rank:
            Q = torch.linalg.qr(Gs)[0][:, :k]
            P = torch.linalg.qr(P - Q @ (Q.mT @ P))[0]
        # else col(G₀) leaves no r-dimensional complement: start random and let the flow push
        return P

    def rate(self, t, P, G):
        eye = torch.eye(P.shape[-1], dtype=P.dtype)
        return -self.alpha * _gram_apply(G, P, self.side_) - self.mu * P @ (P.mT @ P - eye)


@dataclass
class RandomSmooth(ProjectionRule):
    """An arbitrary smooth Γ from seeded random coefficients (for property tests and C1).

    Ṗ = scale · tanh(A P + P B) + c G̃G̃ᵀ P, with A (dim, dim), B (r, r) Gaussian and c ∈ [−1, 1].
    """

    scale: float = 1.0
    coef_seed: int = 0
    init: str = "random"
    A: Tensor = field(default=None, init=False, repr=False)
    B: Tensor = field(default=None, init=False, repr=False)
    c: float = field(default=0.0, init=False, repr=False)

    name = "random_smooth"
    smooth = True

    def bind(self, shape):
        super().bind(shape)
        g = torch.Generator().manual_seed(int(self.coef_seed))
        self.A = torch.randn(self.dim, self.dim, generator=g, dtype=torch.float64) / self.dim ** 0.5
        self.B = torch.randn(self.rank, self.rank, generator=g, dtype=torch.float64) / self.rank ** 0.5
        self.c = float(2 * torch.rand((), generator=g, dtype=torch.float64) - 1)
        return self

    def rate(self, t, P, G):
        A, B = self.A.to(P.dtype), self.B.to(P.dtype)
        return self.scale * torch.tanh(A @ P + P @ B) + self.c * _gram_apply(G, P, self.side_)


BUILTIN_RULES = (Constant, Identity, RandomJump, PeriodicSVD, OnlinePCA, Oja, Adversarial, RandomSmooth)
