"""The validation track with Muon: full rank (discrete.Muon + auxiliary AdamW) and Muon inside GaLore's subspace."""
from __future__ import annotations

import math

import pytest

from discrete.validation.model import build_model
from discrete.validation.optim import split_params
from discrete.validation.runlog import read_log
from discrete.validation.trainer import train


@pytest.mark.parametrize("optimizer,group_options", [("muon", {}), ("galore", {"inner": "muon", "momentum": 0.95})])
def test_tiny_run_with_muon(make_cfg, optimizer, group_options):
    cfg = make_cfg(optimizer=optimizer, steps=6, lr=1e-2, scale=1.0, log_every=3, group_options=group_options)
    out = train(cfg)
    steps = [r for r in read_log(cfg.out) if r["kind"] == "train"]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["H"]) for r in steps)
    assert steps[-1]["loss"] < steps[0]["loss"] and math.isfinite(out["val_ppl"])
    assert steps[-1]["K_muon"] > 0                        # Muon's kinetic part ‖buf‖_*·η·s/(1−μ) is tracked
    # state bytes: one float32 momentum per Muon matrix (of Ĝ's shape r×n in the subspace), Adam's two for the rest
    proj, full = split_params(build_model(cfg.model, vocab_size=cfg.vocab_size, max_seq_len=cfg.seq_len))
    full_adam = 2 * 4 * sum(p.numel() for p in full)
    if optimizer == "muon":
        muon = 4 * sum(p.numel() for p in proj)
    else:
        muon = 4 * sum(cfg.rank * max(p.shape) for p in proj)      # proj_type std: the smaller side is projected
        assert steps[-1]["state_bytes"]["projector"] == 4 * sum(cfg.rank * min(p.shape) for p in proj)
    assert steps[-1]["state_bytes"]["moments"] == full_adam + muon


def test_bad_muon_option_is_a_user_error(make_cfg):
    from osd_theory.errors import UserError
    with pytest.raises(UserError, match="ns_steps"):
        train(make_cfg(optimizer="muon", steps=1, group_options={"ns_steps": -1}))
