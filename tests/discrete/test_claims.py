"""Claim C5 runs quickly and reports a threshold per optimizer."""
from __future__ import annotations

from discrete.claims import c5, heavy_ball_worst_case_lr

import torch


def test_c5_quick_holds():
    out = c5(quick=True)
    assert out["claim"] == "C5" and out["verdict"] == "holds", out["evidence"]
    for info in out["details"]["optimizers"].values():
        assert info["monotone"][0] and info["first_increasing_lr"] is not None


def test_heavy_ball_bound_is_scale_covariant():
    eigs = torch.tensor([0.01, 0.1, 1.0], dtype=torch.float64)
    a, b = heavy_ball_worst_case_lr(eigs), heavy_ball_worst_case_lr(2 * eigs)
    assert abs(a / b - 2.0) < 1e-6
