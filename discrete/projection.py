"""How P is created and changed at events, as registries (no string if/elif chains).

* ``PROJ_INIT`` — OSD's P₀: ``svd`` (top-r basis of the first non-zero gradient, as the OSD
  reference code) or ``random`` (Haar orthonormal, seeded).
* ``SWITCH`` — what GaLore does to the subspace moments when P jumps (ECOSYSTEM.md §2.9):
  ``keep`` (galore-torch), ``reset`` (zero them), ``rotate`` (m ← R m with R = P_newᵀP_old;
  v ← (R∘R) v keeps v ≥ 0, a heuristic: Adam's v has no exact rotation).

All functions are pure in the sense of :mod:`discrete`: they take and mutate the state dict.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from osd_theory.kernels import LEFT, svd_basis
from osd_theory.registry import Registry


def usable(G: Tensor) -> bool:
    """A gradient a basis may be built from: finite and non-zero (one host sync)."""
    norm = torch.linalg.matrix_norm(G)
    return bool(torch.isfinite(norm) & (norm > 0))


def try_svd_basis(G: Tensor, rank: int, side: int) -> Tensor | None:
    """Top-r basis of G, or None when G is zero/non-finite or the SVD fails (keep the old basis)."""
    if not usable(G):
        return None
    try:
        return svd_basis(G, rank, side).float()
    except (torch.linalg.LinAlgError, RuntimeError):   # LAPACK/cuSOLVER failed to converge
        return None


# -- P₀ for OSD ---------------------------------------------------------------------------------
def _init_svd(state: dict, G: Tensor, rank: int) -> None:
    P = try_svd_basis(G, rank, state["proj_side"])
    if P is not None:
        state["proj"] = P.to(state["proj"].device)
        state["last_refresh_step"] = int(state["step"])


def _init_random(state: dict, G: Tensor, rank: int) -> None:
    state["last_refresh_step"] = int(state["step"])     # the seeded Haar placeholder is P₀


PROJ_INIT: Registry[Callable[[dict, Tensor, int], None]] = Registry("proj_init")
PROJ_INIT.add("svd", _init_svd)
PROJ_INIT.add("random", _init_random)


# -- GaLore's switch policy ---------------------------------------------------------------------
def _keep(state: dict, P_old: Tensor, P_new: Tensor, moment_keys: tuple[str, ...]) -> None:
    pass


def _reset(state: dict, P_old: Tensor, P_new: Tensor, moment_keys: tuple[str, ...]) -> None:
    for k in moment_keys:
        state[k].zero_()


def _rotate(state: dict, P_old: Tensor, P_new: Tensor, moment_keys: tuple[str, ...]) -> None:
    R = P_new.mT @ P_old                                  # (r, r): Ĝ_new ≈ R Ĝ_old (LEFT), Ĝ_old Rᵀ (RIGHT)
    for k in moment_keys:
        M = R * R if k.endswith("_sq") else R             # second moments: (R∘R) v ≥ 0
        x = state[k]
        x.copy_(M @ x if state["proj_side"] == LEFT else x @ M.mT)


SWITCH: Registry[Callable[[dict, Tensor, Tensor, tuple[str, ...]], None]] = Registry("switch policy")
SWITCH.add("keep", _keep)
SWITCH.add("reset", _reset)
SWITCH.add("rotate", _rotate)
