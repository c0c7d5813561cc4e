"""``eps_placement``: where bias-corrected Adam adds ε, a group key with each preset's default.

GaLore adds ε to √v (galore-torch / HF), OSD and RSO to √v̂ (torch). The key makes that a choice, so a
contrast between two presets can hold it fixed (issue 12: the `online_pca_refresh` hybrid against GaLore).
"""
import pytest
import torch

from discrete import OPTIMIZERS


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 20), torch.nn.Tanh(), torch.nn.Linear(20, 6))


def _train(name, steps=12, opt_kw=None, **group):
    model = _model()
    mats = [p for p in model.parameters() if p.ndim == 2]
    rest = [p for p in model.parameters() if p.ndim != 2]
    opt = OPTIMIZERS[name]([{"params": rest}, {"params": mats, "rank": 3, "update_proj_gap": 4, "scale": 0.25,
                                                **group}], lr=1e-2, **(opt_kw or {}))
    x, y = torch.randn(32, 12, generator=torch.Generator().manual_seed(1)), torch.randn(32, 6)
    for t in range(steps):
        idx = torch.randint(0, 32, (8,), generator=torch.Generator().manual_seed(t))
        loss = ((model(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], opt


@pytest.mark.parametrize("name, default", [("galore", "hf"), ("osd", "torch"), ("rso", "torch")])
def test_each_preset_has_its_default(name, default):
    _, opt = _train(name, steps=1)
    assert {g["eps_placement"] for g in opt.param_groups} == {default}


def test_frozen_hybrid_with_galores_eps_is_galore_exactly():
    """online_pca_refresh with α = 0 (P moves only at the jumps) is GaLore's algorithm: bit-equal once ε
    sits where GaLore puts it, and not equal with OSD's default (the confound of the 60M/130M contrast)."""
    ref, _ = _train("galore")
    hybrid = dict(projection="online_pca_refresh", proj_optimizer="gd", alpha=0.0)
    same, _ = _train("osd", opt_kw={"eps_placement": "hf"}, **hybrid)
    other, _ = _train("osd", **hybrid)
    assert all(torch.equal(a, b) for a, b in zip(ref, same))
    assert max((a - b).abs().max().item() for a, b in zip(ref, other)) > 1e-7


def test_bad_value_is_refused_before_anything_changes():
    model = _model()
    with pytest.raises(ValueError, match="eps_placement"):
        OPTIMIZERS["osd"]([{"params": list(model.parameters())}], lr=1e-2, eps_placement="after")
    _, opt = _train("galore", steps=2)
    before = {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state_dict()["param_groups"][0].items()}
    with pytest.raises(ValueError, match="eps_placement"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "eps_placement": "sqrt"})
    assert len(opt.param_groups) == 2 and opt.state_dict()["param_groups"][0] == before


def test_older_state_dicts_without_the_key_load_with_the_preset_default():
    _, opt = _train("galore", steps=2)
    sd = opt.state_dict()
    for g in sd["param_groups"]:
        del g["eps_placement"]
    _, fresh = _train("galore", steps=0)
    fresh.load_state_dict(sd)
    assert {g["eps_placement"] for g in fresh.param_groups} == {"hf"}
