"""Projection dynamics Ṗ = Γ(P, ∇L): one rule, two faces (THEORY.md §1.2).

A rule acts on one side of an (m, n) matrix W (see :mod:`osd_theory.kernels`): P is
(m, r) on the LEFT, (n, r) on the RIGHT. A rule is

* **smooth** (:class:`SmoothRule`) — ``rate(t, P, G) = Ṗ = α·field(t, P, G)`` (online-PCA
  flow, Oja, adversarial, any user callable);
* **jump** — event times and a new P at each (random resampling, GaLore's periodic SVD);
* neither (constant, identity).

**Continuous face** (the simulator, :mod:`ode`): ``initial(G0)``, ``rate``, ``jump_times``,
``jump``. The ODE integrates a smooth P with W and S, and applies jumps between segments.

**Discrete face** (the optimizers, :mod:`discrete`), with the same definitions:

* P₀ — :meth:`ProjectionRule.initial_basis` (the continuous ``initial`` calls it too);
* jumps — every ``update_proj_gap`` steps, P ← :meth:`ProjectionRule.jump_basis` (the
  continuous ``jump`` calls it too);
* smooth rules — after the weight update, one step of a P-optimizer on the "gradient"
  −field(t, P, G) with step size αε:  P ← (1 − αελ^P)P + αε·Opt_P(−field). With the
  stateless ``gd`` P-optimizer this is exactly the Euler step P ← P + ε·rate of the flow;
  with ``adam`` on the online-PCA field it is OSD's P update (arXiv:2408.12857 Alg. 1).
  :attr:`SmoothRule.p_optimizer` names each rule's default.

``dH/dt`` never depends on Γ (adjointness), so *any* rule is admissible for the
Lyapunov claim; Γ only matters for the rate and for Assumption 4.4(ii).

Lifecycle: ``rule.bind(shape)`` resolves the side and checks the rank; every method after
that acts on that shape (or a batch (L, ·, ·) of them: the built-in fields are batched and
free of host synchronisation, so the optimizers' batched path calls them on stacked tensors).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from osd_theory.errors import UserError
from osd_theory.kernels import LEFT, basis_dim, check_rank, gram_apply, parse_side, random_basis, svd_refresh

INITS = ("svd", "random", "identity")


@dataclass
class ProjectionRule:
    rank: int = 2
    side: str | int = "auto"       # a name of kernels.SIDE_RULES ("auto" = "std": the smaller dimension)
    init: str = "svd"              # P₀: "svd" (top-r of G₀, as the OSD reference code), "random" (Haar), "identity"
    seed: int = 0

    name: ClassVar[str] = "base"
    smooth: ClassVar[bool] = False  # has a non-zero rate Ṗ
    jumps: ClassVar[bool] = False   # changes P at event times
    batchable: ClassVar[bool] = True  # its discrete face works on stacked (L, ·, ·) tensors

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

    # -- both faces: where P comes from ----------------------------------------------
    def initial_basis(self, G: Tensor, gen: torch.Generator) -> Tensor | None:
        """P₀ (dim, r) from the first gradient, or None when G gives none yet (``svd`` of a zero G).

        ``gen`` drives any random draw (the simulator's stream, or the optimizer's per-(parameter,
        step) generator so that a resumed run draws the same P). Returned in G's floating dtype
        (float32 at least).
        """
        dtype = G.dtype if G.dtype in (torch.float32, torch.float64) else torch.float32
        if self.init == "identity":
            return torch.eye(self.dim, dtype=dtype, device=G.device)
        if self.init == "svd":
            P = svd_refresh(G, self.rank, self.side_)
            return None if P is None else P.to(dtype)
        return random_basis(self.dim, self.rank, generator=gen, dtype=torch.float64, device=G.device).to(dtype)

    def jump_basis(self, P: Tensor, G: Tensor, gen: torch.Generator) -> Tensor | None:
        """The new P at an event (jump rules), or None to keep P."""
        return None

    # -- continuous face --------------------------------------------------------------
    def initial(self, G0: Tensor) -> Tensor:
        """P₀ (dim, r) in G0's dtype. Resets the rule's random stream."""
        self.reset()
        P = self.initial_basis(G0, self.gen)
        if P is None:   # a zero gradient has no singular basis: fall back to a random one
            P = random_basis(self.dim, self.rank, generator=self.gen, dtype=G0.dtype)
        return P.to(G0.dtype)

    def rate(self, t: float, P: Tensor, G: Tensor) -> Tensor:
        """Ṗ = Γ(P, G) (same shape as P). Zero for pure jump / constant rules."""
        return torch.zeros_like(P)

    def jump_times(self, t0: float, t1: float) -> list[float]:
        """Event times in (t0, t1) at which :meth:`jump` is applied."""
        return []

    def jump(self, t: float, P: Tensor, G: Tensor) -> Tensor:
        """The new P at an event time (the discrete face's :meth:`jump_basis`, or P kept)."""
        P_new = self.jump_basis(P, G, self.gen)
        return P if P_new is None else P_new.to(P.dtype)

    def describe(self) -> str:
        return f"{self.name}(rank={self.rank}, side={self.side}, init={self.init})"


@dataclass
class SmoothRule(ProjectionRule):
    """A rule with a flow Ṗ = α·field(t, P, G); α is the rate of P relative to W (ε^P = α·ε)."""

    alpha: float = 1.0
    retract: bool = False    # keep P on the Stiefel manifold: tangent field (continuous), QR after each step (discrete)

    smooth = True
    p_optimizer: ClassVar[str] = "gd"   # discrete face: the Euler step of the flow, unless a rule says otherwise

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.alpha, (int, float)) and not isinstance(self.alpha, bool)
                and math.isfinite(self.alpha) and self.alpha >= 0):
            raise UserError(f"{self.name} needs alpha >= 0 (finite; 0 freezes P), got {self.alpha!r}")

    def field(self, t: float, P: Tensor, G: Tensor, G_hat: Tensor | None = None) -> Tensor:
        """Ṗ/α for P (…, dim, r) and G (…, m, n); ``G_hat`` = project(P, G, side) may be reused."""
        return self.field_from_parts(t, P, self.field_parts(t, P, G, G_hat))

    def field_parts(self, t: float, P: Tensor, G: Tensor, G_hat: Tensor | None = None,
                    inv: Tensor | None = None) -> tuple[Tensor, ...]:
        """The products of the field that touch the (m, n) gradient, each of P's size or smaller.

        The default is C P = G̃G̃ᵀP (:func:`osd_theory.kernels.gram_apply`). ``inv`` = 1/‖G‖ when
        known. The optimizers' batched path calls this per matrix and :meth:`field_from_parts` once
        on the stacked parts.
        """
        return (gram_apply(G, P, self.side_, inv),)

    def field_from_parts(self, t: float, P: Tensor, parts: tuple[Tensor, ...]) -> Tensor:
        """The field from :meth:`field_parts` (r-sized algebra, batched over leading dims)."""
        raise NotImplementedError

    def rate(self, t, P, G):
        F = self.field(t, P, G)
        return self.alpha * (tangent(P, F) if self.retract else F)


def tangent(P: Tensor, F: Tensor, reduce=None) -> Tensor:
    """F − P·sym(PᵀF): the part of F tangent to the Stiefel manifold at an orthonormal P (…, d, r).

    A flow along it keeps PᵀP = I; the discrete face of a rule with ``retract`` takes the step along
    the same tangent field and then :func:`retract_qr`, whose first-order term is that step.
    ``reduce`` sums the r×r product PᵀF over processes when P and F are a process's rows (FSDP2).
    """
    S = P.mT @ F if reduce is None else reduce(P.mT @ F)
    return F - P @ (0.5 * (S + S.mT))


def retract_qr(P: Tensor) -> Tensor:
    """The Q factor of P = QR with diag(R) > 0 (a retraction onto orthonormal columns), batched."""
    Q, R = torch.linalg.qr(P)
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    return Q * torch.where(d < 0, -1.0, 1.0).to(Q.dtype).unsqueeze(-2)


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
