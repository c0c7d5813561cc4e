"""Projected gradient flow (THEORY.md §3, GD row; OSD Ex. 3.1).

.. math::  \\dot W = -P P^\\top G,\\quad H = L,\\quad \\dot H = -\\|P^\\top G\\|^2 .

No state; the discrete form is ``W ← W − η P Pᵀ G``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from osd_theory.hd.base import Condition, HDSystem


@dataclass(frozen=True)
class GradientFlow(HDSystem):
    name = "gd"
    state_names = ()

    def relaxation(self, t, S, g_hat):
        return ()

    def direction(self, t, S, g_hat, W=None):
        return -g_hat                                    # Ẇ = −P ĝ

    def kinetic(self, t, S, W=None):
        return torch.zeros((), dtype=torch.float64)

    def dissipation(self, t, S, g_hat, W=None):
        return g_hat.pow(2).sum()                        # Δ = ‖ĝ‖²

    def condition(self):
        return Condition(True, "none needed (H = L)")
