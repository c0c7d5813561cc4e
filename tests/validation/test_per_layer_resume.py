"""``--per-layer`` runs resume bit-exact, for every subspace optimizer (issue 21, item 1).

The same run three ways: uninterrupted, and stopped after step 3 then resumed. With ``--per-layer`` the
optimizer is wrapped by :class:`discrete.PerLayer` before the checkpoint is loaded; ``load_state_dict``
replaces the param-group dicts, and the per-layer mode looks its groups up at use time (before it kept the
old dicts, so a resumed run stepped with stale groups and drifted from the second step on: 4e-3 in the loss).
"""
from __future__ import annotations

import pytest
import torch

from discrete.validation.trainer import train


@pytest.mark.parametrize("optimizer", ["galore", "osd", "rso"])
def test_per_layer_resume_is_bit_exact(make_cfg, tmp_path, optimizer, assert_same_run):
    full = make_cfg(optimizer=optimizer, steps=5, out=str(tmp_path / "full"), log_every=2, per_layer=True)
    train(full)
    part = make_cfg(optimizer=optimizer, steps=5, out=str(tmp_path / "part"), log_every=2, stop_after=3,
                    per_layer=True)
    train(part)
    part.stop_after, part.resume = None, True
    train(part)
    assert_same_run(full.out, part.out)


def test_per_layer_wrapped_before_load_state_dict_uses_the_loaded_groups():
    from discrete import GaLore, PerLayer

    def run(lr_loaded: float, wrap_first: bool):
        torch.manual_seed(0)
        W = torch.nn.Parameter(torch.randn(6, 5))
        opt = GaLore([{"params": [W], "rank": 2}], lr=1e-2)
        sd = GaLore([{"params": [torch.nn.Parameter(torch.randn(6, 5))], "rank": 2}], lr=lr_loaded).state_dict()
        layers = PerLayer(opt) if wrap_first else None
        opt.load_state_dict(sd)
        layers = layers or PerLayer(opt)
        for s in range(3):
            (W ** 2).sum().backward()
            opt.step()
            opt.zero_grad()
        return W.detach().clone()

    assert torch.equal(run(0.5, wrap_first=True), run(0.5, wrap_first=False))
    assert not torch.equal(run(0.5, wrap_first=True), run(1e-2, wrap_first=True))    # the lr matters


THEORY_KEYS = ("residual", "residual_after", "drift_step", "orth_error", "H")


@pytest.mark.parametrize("optimizer", ["galore", "osd", "rso"])
def test_per_layer_logs_the_theory_metrics_of_the_ordinary_run(make_cfg, tmp_path, optimizer):
    """Per-layer mode frees the gradients in backward; its log still has the residuals (from the gradients kept
    on the host on log steps) and they equal the ordinary run's. With 2 micro-batches: accumulation too."""
    import json

    def records(per_layer: bool):
        # OSD's default Adam on P turns float32 round-off into O(lr) differences of P (its first step is a sign:
        # docs/optimizers.md, round-off); with the plain P step the two paths agree to round-off
        extra = {"group_options": {"proj_optimizer": "gd"}} if optimizer == "osd" else {}
        cfg = make_cfg(optimizer=optimizer, steps=4, out=str(tmp_path / f"pl{per_layer}"), log_every=2,
                       per_layer=per_layer, micro_batch_size=2, batch_size=4, **extra)
        train(cfg)
        with open(tmp_path / f"pl{per_layer}" / "log.jsonl") as f:
            return [r for r in map(json.loads, f) if r.get("kind") == "train"]

    ordinary, layered = records(False), records(True)
    assert [r["step"] for r in ordinary] == [r["step"] for r in layered] == [1, 2, 4]
    assert all(r.get(key) is not None for r in ordinary[1:] for key in THEORY_KEYS)   # step 1 has no P before
    for a, b in zip(ordinary, layered):
        for key in THEORY_KEYS:
            if a.get(key) is None:
                assert b.get(key) is None, (key, a["step"])
            else:
                assert b.get(key) is not None, (key, b["step"], "per-layer")
                # float32 round-off: the bases come from the same SVD of differently laid-out products
                # (orth_error is itself round-off, ~1e-6, hence the absolute tolerance)
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (key, a["step"])
