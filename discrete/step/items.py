"""An item: one parameter for one step, resolved once by the optimizer, consumed by an executor.

The optimizer (:mod:`discrete.base`) turns each parameter with a gradient into an :class:`Item` — its
gradient as the step sees it (float32, sign of ``maximize`` applied), its state (the live dict, or a fresh
one that is installed only when the step commits), its bound projection rule and :class:`Plan`, its index
over all groups and the step count k it starts from. :mod:`discrete.step.checks` fills ``norm`` and drops
or rejects items; an executor's ``prepare`` fills what the step needs of the gradient (the new basis, Ĝ, the
P field) without changing anything, and its ``commit`` mutates. Plain data: no behaviour lives here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from discrete.subspace import Plan
from osd_theory.projections import ProjectionRule


@dataclass(eq=False)
class Item:
    param: Tensor                     # W (m, n), or a full-rank parameter of any shape (a DTensor under FSDP2)
    grad: Tensor                      # G as the step sees it (float32 at least); this process's rows under FSDP2
    state: dict                       # the parameter's state (``fresh``: not yet in the optimizer)
    plan: Plan
    index: int                        # position over all param groups (seeds, diagnostics, messages)
    group: int                        # index of its param group
    rule: ProjectionRule | None = None    # bound rule; None on the full-rank path
    k: int = 0                        # steps taken before this one
    fresh: bool = False               # state created for this step, installed at commit
    norm: Tensor | None = None        # ‖G‖ (0-d, on G's device; summed over processes under FSDP2)
    # filled by an executor's prepare (nothing in the optimizer changes before commit)
    event: str | None = None          # None, "init", "jump", "skipped"
    P_new: Tensor | None = None       # the basis to commit at "init"/"jump" (the full basis under FSDP2)
    G_hat: Tensor | None = None       # Ĝ = project(P, G) with the step's P
    field: Tensor | None = None       # the P field at t = k (smooth rules), P's shape
    rows: Any = None                  # FSDP2: this process's rows (discrete.step.sharded.Rows)
    P_whole: Tensor | None = None     # FSDP2, right side: the whole P of this step (the state keeps its rows)

    @property
    def projected(self) -> bool:
        return self.rule is not None

    @property
    def inv(self) -> Tensor | None:
        """1/‖G‖ (0 for G = 0), the rules' normalisation; None when the norm was not computed."""
        return None if self.norm is None else inverse(self.norm)

    def describe(self) -> str:
        """'parameter 3 (8×6, group 1)': how messages name the item."""
        shape = "×".join(str(s) for s in self.param.shape)
        return f"parameter {self.index} ({shape}, group {self.group})"


def inverse(norm: Tensor) -> Tensor:
    """1/‖G‖ elementwise, 0 where ‖G‖ = 0 (a zero gradient has no direction; the rules' convention)."""
    return torch.where(norm > 0, 1.0 / norm, torch.zeros_like(norm))


@dataclass
class Context:
    """What an executor gets besides its items: the optimizer's name (for messages), its diagnostics (filled
    in at commit) and its layout cache (stacked buffers; a cache, not state)."""

    owner: str
    notes: dict
    cache: dict


def note_event(notes: dict, event: str | None, overlap: float | None, index: int) -> None:
    """Count a refresh in the diagnostics: ``refreshes``, ``refresh_skipped``, ``overlap`` {index: ‖P_newᵀP_old‖²/r}."""
    if event in ("init", "jump"):
        notes["refreshes"] = notes.get("refreshes", 0) + 1
    elif event == "skipped":
        notes["refresh_skipped"] = notes.get("refresh_skipped", 0) + 1
    if overlap is not None:
        notes.setdefault("overlap", {})[index] = overlap
