"""Full-rank references from the same core: AdamW, Lion, SGD with momentum.

They are :class:`~discrete.base.SubspaceOptimizer` with no projection: every parameter takes
the full-rank path ``U = inner(G)``, ``W ← (1 − lr·λ)W + lr·U`` with the inner steps of
:mod:`osd_theory.discrete_steps` (Euler steps of the Adam / Lion-𝒦 / heavy-ball fields plus the
named departures). ``AdamW`` equals ``torch.optim.AdamW`` and ``SGDMomentum`` equals
``torch.optim.SGD(momentum=μ, dampening=0)`` (with decoupled instead of L2 weight decay) to
float32 round-off (tests/discrete/test_equivalence.py).
"""
from __future__ import annotations

from typing import ClassVar

from discrete.base import SubspaceOptimizer


class AdamW(SubspaceOptimizer):
    """AdamW (torch's bias correction and ε placement). Defaults as torch.optim.AdamW but weight_decay 0."""

    projects: ClassVar[bool] = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **kw):
        super().__init__(params, lr, betas, eps, weight_decay, inner="adamw", **kw)


class Lion(SubspaceOptimizer):
    """Lion (arXiv:2302.06675): W ← (1 − lrλ)W − lr·sign(β₁m + (1−β₁)g), m ← β₂m + (1−β₂)g."""

    projects: ClassVar[bool] = False

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, **kw):
        super().__init__(params, lr, betas, 1e-8, weight_decay, inner="lion", **kw)


class SGDMomentum(SubspaceOptimizer):
    """SGD with momentum as torch (undamped buffer): buf ← μ·buf + g, W ← (1 − lrλ)W − lr·buf."""

    projects: ClassVar[bool] = False

    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0, **kw):
        super().__init__(params, lr, (0.9, 0.999), 1e-8, weight_decay, momentum=momentum, inner="sgd", **kw)
