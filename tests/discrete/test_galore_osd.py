"""GaLore switch policies and refresh robustness; OSD specifics (zero gradient, lr schedule drives P)."""
from __future__ import annotations

import pytest
import torch

from discrete import GaLore, OnlineSubspaceDescent
from discrete.projection import SWITCH


def _step(opt, W, G):
    W.grad = G
    opt.step()
    return opt.diagnostics


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("switch", SWITCH.names())
def test_switch_policies_and_overlap_diagnostics(switch):
    g = _gen()
    W = torch.nn.Parameter(torch.randn(10, 16, generator=g))
    opt = GaLore([{"params": [W], "rank": 3, "update_proj_gap": 2, "switch": switch}], lr=1e-2)
    _step(opt, W, torch.randn(10, 16, generator=g))
    _step(opt, W, torch.randn(10, 16, generator=g))
    m_before = opt.state[W]["exp_avg"].clone()
    d = _step(opt, W, torch.randn(10, 16, generator=g))          # step index 2: a refresh
    assert d["refreshes"] == 1 and 0.0 <= d["overlap"][0] <= 1.0 + 1e-6
    m_after = opt.state[W]["exp_avg"]
    if switch == "reset":
        # moments were zeroed, then took one step: m = (1 − β₁) Ĝ
        assert torch.allclose(m_after, 0.1 * (opt.state[W]["proj"].mT @ W.grad), atol=1e-6)
    elif switch == "rotate":
        assert m_after.norm() <= m_before.norm() * 0.9 + 0.1 * (opt.state[W]["proj"].mT @ W.grad).norm() + 1e-5


def test_refresh_is_skipped_on_zero_gradient_and_basis_kept():
    g = _gen(1)
    W = torch.nn.Parameter(torch.randn(8, 12, generator=g))
    opt = GaLore([{"params": [W], "rank": 2, "update_proj_gap": 2}], lr=1e-2)
    _step(opt, W, torch.randn(8, 12, generator=g))
    P0 = opt.state[W]["proj"].clone()
    _step(opt, W, torch.randn(8, 12, generator=g))
    d = _step(opt, W, torch.zeros(8, 12))                       # refresh due, but G = 0
    assert d.get("refresh_skipped") == 1 and torch.equal(opt.state[W]["proj"], P0)
    assert opt.state[W]["last_refresh_step"] == 0


def test_first_zero_gradient_defers_the_svd_basis():
    W = torch.nn.Parameter(torch.randn(8, 12))
    opt = OnlineSubspaceDescent([{"params": [W], "rank": 2}], lr=1e-2)
    _step(opt, W, torch.zeros(8, 12))                           # torchtitan-style zero-grad materialisation
    st = opt.state[W]
    assert st["last_refresh_step"] == -1 and torch.isfinite(st["proj"]).all()
    G = torch.randn(8, 12, generator=_gen(2))
    _step(opt, W, G)
    from osd_theory.kernels import svd_basis, subspace_overlap
    assert st["last_refresh_step"] == 1
    assert float(subspace_overlap(st["proj"], svd_basis(G, 2, st["proj_side"]))) > 0.99


def test_one_scheduler_drives_w_and_p():
    """P moves by alpha·lr with the *current* lr: with lr scheduled to 0, P stops."""
    g = _gen(3)
    W = torch.nn.Parameter(torch.randn(8, 12, generator=g))
    opt = OnlineSubspaceDescent([{"params": [W], "rank": 2, "alpha": 5.0}], lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 if t < 2 else 0.0)
    for _ in range(2):
        _step(opt, W, torch.randn(8, 12, generator=g))
        sched.step()
    P, W0 = opt.state[W]["proj"].clone(), W.detach().clone()
    _step(opt, W, torch.randn(8, 12, generator=g))
    assert torch.equal(opt.state[W]["proj"], P) and torch.equal(W.detach(), W0)


def test_subspace_state_is_never_reset_when_p_moves():
    """m_t = β₁ m_{t−1} + (1 − β₁) Ĝ_t with Ĝ_t projected by the P carried into step t: no reset, no rotation."""
    g = _gen(4)
    W = torch.nn.Parameter(torch.randn(8, 12, generator=g))
    opt = OnlineSubspaceDescent([{"params": [W], "rank": 2, "proj_type": "left"}], lr=1e-2)
    _step(opt, W, torch.randn(8, 12, generator=g))
    m = opt.state[W]["exp_avg"].clone()
    for _ in range(5):
        P = opt.state[W]["proj"].clone()
        G = torch.randn(8, 12, generator=g)
        _step(opt, W, G)
        m = 0.9 * m + 0.1 * (P.mT @ G)
        assert not torch.equal(opt.state[W]["proj"], P)                 # P moved
        torch.testing.assert_close(opt.state[W]["exp_avg"], m, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls,key,value,msg", [
    (OnlineSubspaceDescent, "pca_lambda", -0.1, "Invalid pca_lambda value"),
    (OnlineSubspaceDescent, "alpha", -1.0, "Invalid alpha value"),
    (OnlineSubspaceDescent, "proj_optimizer", "adafactor", "Unknown projection optimizer"),
    (OnlineSubspaceDescent, "proj_init", "zeros", "Unknown proj_init"),
    (OnlineSubspaceDescent, "proj_betas", (0.9, 1.5), "Invalid beta parameter at index 1"),
    (OnlineSubspaceDescent, "matmul_precision", "fp8", "Unknown matmul_precision"),
    (GaLore, "switch", "swap", "Unknown switch policy"),
    (GaLore, "inner", "adagrad", "Unknown inner optimizer"),
])
def test_projection_key_errors(cls, key, value, msg):
    W = torch.nn.Parameter(torch.randn(6, 8))
    with pytest.raises(ValueError, match=msg):
        cls([{"params": [W], "rank": 2, key: value}], lr=1e-3)


def test_unknown_constructor_keyword_is_a_type_error():
    W = torch.nn.Parameter(torch.randn(6, 8))
    with pytest.raises(TypeError, match="unexpected keyword"):
        GaLore([W], lr=1e-3, pca_lambdaa=0.1)
