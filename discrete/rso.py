"""Random Subspace Optimization, optimizer form (RSO, arXiv:2502.07222; THEORY.md §6).

At outer step k, for each projected W (m×n), with P_k random (m×r on the LEFT side):

.. math::
    \\tilde B_k \\approx \\arg\\min_B\\ f(W_k + P_kB) + \\tfrac1{2η}\\|B\\|^2
    \\quad\\text{(K inner steps of ``inner`` from B = 0, fresh state)},\\qquad
    W_{k+1} = W_k + P_k\\tilde B_k,\\quad\\text{resample } P_{k+1}.

The parameter *is* W_k + P_k B at all times (the merge is implicit), so the gradient of the
subproblem is ∇_B = P_kᵀ∇f(W) + B/η — Ĝ plus the proximal term. ``rso_coord`` holds B.

Group keys: ``rank`` r, ``update_proj_gap`` K (inner steps per subproblem), ``rso_prox`` = 1/η
(0: no proximal term), ``proj_dist`` ∈ {haar, gaussian} (N(0, 1/r) entries), ``seed``,
``proj_type`` (side), ``scale``, ``inner``.

What the paper leaves open (THEORY.md §6 [?]) and what we chose: K = ``update_proj_gap``
(default 200, as GaLore's T); η: user-set, default none (1/η = 0); the inner Adam state and B
**are reset** at every resample (a fresh subproblem; bias correction restarts with it); P is
Haar by default (the theory's choice), Gaussian on request; the side follows ``proj_type``.
Each P is drawn from a generator seeded by (seed, parameter index, step), so a resumed run
draws the same P. For the activation-memory saving use :mod:`discrete.rso_module`.
"""
from __future__ import annotations

from typing import ClassVar

from discrete.base import SubspaceOptimizer


class RSO(SubspaceOptimizer):
    preset: ClassVar[dict] = {"projection": "random_jump", "switch": "restart"}
