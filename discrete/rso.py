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

import torch

from discrete import checks, state as S
from discrete.base import SubspaceOptimizer
from osd_theory.kernels import random_basis
from osd_theory.registry import Registry

PROJ_DISTS: Registry[str] = Registry("proj_dist")
PROJ_DISTS.add("haar", "haar")
PROJ_DISTS.add("gaussian", "gaussian")


def rso_generator(seed: int, index: int, step: int) -> torch.Generator:
    """A generator that depends only on (seed, parameter index, step): resumable draws."""
    return torch.Generator().manual_seed((seed * 1_000_003 + index) * 1_000_033 + step)


def draw_basis(rows: int, rank: int, dist: str, gen: torch.Generator, device) -> torch.Tensor:
    return random_basis(rows, rank, generator=gen, distribution=PROJ_DISTS.get(dist), dtype=torch.float64).to(
        device=device, dtype=torch.float32)


class RSO(SubspaceOptimizer):
    proj_keys: ClassVar[dict] = {
        **checks.GALORE_KEYS,
        "proj_dist": ("haar", lambda v, g: S.check_choice(PROJ_DISTS, v)),
        "rso_prox": (0.0, checks.nonneg("rso_prox")),
        "seed": (0, checks.seed),
    }

    def _init_proj(self, state, G, group, index):
        shape = (group["rank"], G.shape[1]) if state["proj_side"] == 0 else (G.shape[0], group["rank"])
        state["rso_coord"] = torch.zeros(shape, dtype=torch.float32, device=G.device)   # B

    def _before_project(self, state, G, group, hp, inner, index):
        t = int(state["step"])
        if t % group["update_proj_gap"] != 0:
            return
        rows = S.basis_rows(G.shape, state["proj_side"])
        state["proj"] = draw_basis(rows, group["rank"], group["proj_dist"],
                                   rso_generator(group["seed"], index, t), G.device)   # resample P_k
        for k in inner.state_names:                                                     # fresh subproblem
            state[k].zero_()
        state["rso_coord"].zero_()
        state["subproblem_start"] = t
        state["last_refresh_step"] = t
        self.diagnostics["resamples"] = self.diagnostics.get("resamples", 0) + 1

    def _subspace_grad(self, state, G_hat, group):
        prox = group["rso_prox"]
        return G_hat if prox == 0 else G_hat + prox * state["rso_coord"]      # ∇_B = PᵀG + B/η

    def _bias_step(self, state):
        return int(state["step"]) - state.get("subproblem_start", 0)        # restarts with each subproblem

    def _after_update(self, state, G, G_hat, U, group, hp):
        state["rso_coord"].add_(U, alpha=hp.lr * group["scale"])            # W − W_k = P B
