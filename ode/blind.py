"""Assumption 4.4(ii) as a computation: does a projection rule leave the blind set {P : PᵀG = 0}?

OSD Theorem 4.5 (THEORY.md §2) needs, for every constant G ≠ 0, that no solution of
Ṗ = Γ(P, G) stays in the blind set B_G = {P : PᵀG = 0} (LEFT side; GP = 0 on the RIGHT). Two facts
decide it for the rules here:

* **Rules built from P and G by matrix products keep B_G invariant.** On B_G every product that
  links G to P contains GᵀP = 0, so Γ(P, G) = P·X(P) + (terms ending in GᵀP) and
  d/dt(PᵀG) = Γᵀ G = X(P)ᵀ PᵀG = 0. This covers the online-PCA flow (OSD Eq. (6)), Oja's rule,
  the ``adversarial`` rule and Γ = 0 (``constant``, ``identity``): all violate (ii).
* **A rule whose Γ does not vanish against G on B_G leaves it.** :class:`GradientRelax`,
  Ṗ = β(G̃ − P) with r = the number of columns of G (oriented), has Γᵀ G = β GᵀG/‖G‖ ≠ 0 at every
  point of B_G, so no solution stays there for any positive time: (ii) holds for every G ≠ 0.
  ``random_smooth`` (fixed random coefficients) leaves B_G at the tested G, but its P-flow does
  not look at G, so it can have equilibria inside B_G: (ii) is not guaranteed for it.

:func:`blind_set_check` tests a rule the way the table in THEORY.md §2 says: start *exactly* in
B_G (G supported on its first rows, P on the others, so PᵀG = 0 with no rounding), integrate
Ṗ = Γ(P, G) with G held fixed, and report whether PᵀG moved.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from osd_theory.kernels import LEFT, project
from osd_theory.projections.base import ProjectionRule

# relative ‖PᵀG‖/(‖P‖‖G‖) above which P has left B_G; an exact start stays at 0.0 exactly for
# the invariant rules, and the leaving ones reach 1e-2 and more within t = 2 (measured)
LEFT_THRESHOLD = 1e-8


@dataclass
class GradientRelax(ProjectionRule):
    """Ṗ = β(G̃ − P), G̃ = G/‖G‖ oriented as (dim, k): P relaxes towards the normalised gradient.

    Needs rank r = k (the number of columns of the oriented gradient: n on the LEFT side), so
    that P and G̃ have the same shape; span(P) → col(G), a rank-k subspace of R^dim. Built for
    claim C3 as a rule that provably satisfies Assumption 4.4(ii) (module docstring): on B_G,
    d/dt(PᵀG) = β GᵀG/‖G‖ ≠ 0. Bounded: ‖P(t)‖ ≤ max(‖P₀‖, 1). Smooth and autonomous away
    from G = 0 (where G̃ is undefined, as for the online-PCA flow; there Ṗ = −βP).
    """

    beta: float = 1.0   # relaxation rate (1/time)

    name = "gradient_relax"
    smooth = True

    def bind(self, shape):
        super().bind(shape)
        k = shape[1] if self.side_ == LEFT else shape[0]
        if self.rank != k:
            raise ValueError(f"gradient_relax needs rank = {k} (the gradient's other dimension), got {self.rank}")
        return self

    def rate(self, t, P, G):
        Gs = G if self.side_ == LEFT else G.mT
        norm = torch.linalg.matrix_norm(Gs)
        target = Gs / norm if bool(norm > 0) else torch.zeros_like(Gs)
        return self.beta * (target - P)

    def describe(self):
        return f"gradient_relax(beta={self.beta:g}, rank={self.rank}, side={self.side})"


def exact_blind_pair(dim: int, k: int, rank: int, g_rank: int, seed: int = 0):
    """(G (dim, k), P₀ (dim, rank)) with P₀ᵀG = 0 exactly in floating point.

    G is random on its first ``g_rank`` rows and exactly 0 below; P₀ = [e_{g_rank+1} …] is
    supported on the zero rows. Needs rank ≤ dim − g_rank.
    """
    gen = torch.Generator().manual_seed(seed)
    G = torch.zeros(dim, k, dtype=torch.float64)
    G[:g_rank] = torch.randn(g_rank, k, generator=gen, dtype=torch.float64)
    P0 = torch.eye(dim, dtype=torch.float64)[:, g_rank:g_rank + rank].contiguous()
    return G, P0


def blind_set_check(rule: ProjectionRule, *, dim: int = 6, k: int = 3, t_end: float = 2.0, seeds=(0, 1)) -> dict:
    """Integrate Ṗ = Γ(P, G) with G fixed, from exact blind starts; did PᵀG move?

    ``rule`` is bound to a (dim, k) matrix on the LEFT side (its rank must be ≤ dim − g_rank).
    Two gradients per seed: rank one and rank ``dim − rank``. Returns ``{"leaves": bool,
    "max_rel": max ‖PᵀG‖/(‖P‖‖G‖), "rate_at_start": max ‖Γ(P₀, G)ᵀG‖/‖G‖², "cases": [...]}``.
    dopri5 at rtol 1e-10 (torchdiffeq), P only.
    """
    from torchdiffeq import odeint

    rule.bind((dim, k))
    worst, worst_rate, cases = 0.0, 0.0, []
    for seed in seeds:
        for g_rank in sorted({1, dim - rule.rank}):
            G, P0 = exact_blind_pair(dim, k, rule.rank, g_rank, seed)
            rule.reset()
            rate0 = float(torch.linalg.matrix_norm(project(rule.rate(0.0, P0, G), G, LEFT)) / (G * G).sum())
            ts = torch.linspace(0.0, t_end, 21, dtype=torch.float64)
            Ps = odeint(lambda t, P: rule.rate(float(t), P, G), P0, ts, rtol=1e-10, atol=1e-12)
            rel = max(float(torch.linalg.matrix_norm(P.mT @ G) / (torch.linalg.matrix_norm(P) * torch.linalg.matrix_norm(G)))
                      for P in Ps)
            worst, worst_rate = max(worst, rel), max(worst_rate, rate0)
            cases.append({"seed": seed, "g_rank": g_rank, "max_rel": rel, "rate_at_start": rate0})
    return {"leaves": worst > LEFT_THRESHOLD, "max_rel": worst, "rate_at_start": worst_rate, "cases": cases}
