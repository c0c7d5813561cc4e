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
