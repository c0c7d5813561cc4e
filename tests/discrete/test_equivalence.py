"""Equivalences: torch's AdamW/SGD, galore-torch's GaLoreAdamW, and the Euler step of the HD field.

Tolerances (float32, CPU, stated here once):
* AdamW vs ``torch.optim.AdamW(foreach=False)``: 100 steps, max |ΔW| ≤ 1e-5 (|W| ~ 1); the
  difference is round-off only (lerp vs mul/add for the moments, ε placed via e = ε√c₂).
* SGDMomentum vs ``torch.optim.SGD(momentum=0.9)``: 100 steps, max |ΔW| ≤ 1e-6.
* GaLore vs ``galore_torch.GaLoreAdamW``: 60 steps with refreshes every 10 (6 SVDs), scale 0.25,
  every proj_type, max |ΔW| ≤ 1e-5.
* One discrete step without bias correction vs one semi-implicit Euler step of the Adam field:
  ≤ 1e-6 relative (float32 state).
"""
from __future__ import annotations

import warnings

import pytest
import torch

from discrete import AdamW, GaLore, OnlineSubspaceDescent, SGDMomentum
from osd_theory import discrete_steps as ds
from osd_theory.hd import Adam
from osd_theory.kernels import LEFT, RIGHT, back_project, project


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10), torch.nn.Tanh(),
                               torch.nn.Linear(10, 3))


def _run(make, steps, groups=None):
    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(64, 12, generator=g), torch.randn(64, 3, generator=g)
    m = _model()
    opt = make(groups(m) if groups else m.parameters())
    for _ in range(steps):
        opt.zero_grad()
        ((m(X) - Y) ** 2).mean().backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_adamw_matches_torch():
    ref = _run(lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, foreach=False), 100)
    ours = _run(lambda p: AdamW(p, lr=1e-2, weight_decay=0.1), 100)
    assert (ref - ours).abs().max() <= 1e-5


def test_sgd_momentum_matches_torch():
    ref = _run(lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9), 100)
    ours = _run(lambda p: SGDMomentum(p, lr=1e-2, momentum=0.9), 100)
    assert (ref - ours).abs().max() <= 1e-6


@pytest.mark.parametrize("proj_type", ["std", "reverse_std", "left", "right"])
def test_galore_matches_galore_torch(proj_type):
    galore_torch = pytest.importorskip("galore_torch")

    def groups(m):
        ws = [m[0].weight, m[2].weight]
        rest = [p for p in m.parameters() if all(p is not w for w in ws)]
        return [{"params": rest}, {"params": ws, "rank": 4, "update_proj_gap": 10, "scale": 0.25, "proj_type": proj_type}]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _run(lambda p: galore_torch.GaLoreAdamW(p, lr=1e-2, eps=1e-8), 60, groups)
    ours = _run(lambda p: GaLore(p, lr=1e-2, eps=1e-8), 60, groups)
    assert (ref - ours).abs().max() <= 1e-5


@pytest.mark.parametrize("side", [LEFT, RIGHT])
def test_one_step_is_one_semi_implicit_euler_step(side):
    """OSD without bias correction: S₁ = S₀ + h·ρ(τ(ĝ) − S₀), W₁ = W₀ + h·scale·P D(S₁, ĝ)."""
    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(9, 7, generator=g)
    W = torch.nn.Parameter(W0.clone())
    lr, scale = 0.05, 0.5
    opt = OnlineSubspaceDescent([{"params": [W], "rank": 3, "scale": scale, "proj_type": ["left", "right"][side]}],
                                lr=lr, bias_correction=False)
    G0 = torch.randn(9, 7, generator=g)
    W.grad = G0.clone()
    opt.step()                                      # step 1 (P₀ from SVD of G0)
    st = opt.state[W]
    P = st["proj"].clone()                          # P₁ (after OSD's P step)
    S0 = (st["exp_avg"].clone(), st["exp_avg_sq"].clone())
    W1 = W.detach().clone()
    G1 = torch.randn(9, 7, generator=g)
    W.grad = G1.clone()
    opt.step()                                      # step 2, to compare
    field = Adam.from_discrete(lr, 0.9, 0.999, 1e-8)
    g_hat = project(P, G1, side)
    S1 = tuple(s + lr * r for s, r in zip(S0, field.state_rate(0.0, S0, g_hat)))
    W2 = W1 + lr * scale * back_project(P, field.direction(0.0, S1, g_hat), side)
    torch.testing.assert_close(st["exp_avg"], S1[0], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(st["exp_avg_sq"], S1[1], rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(W.detach(), W2, rtol=1e-6, atol=1e-7)


def test_pure_steps_call_the_hd_systems():
    """Lion's step uses the old momentum (direction_uses_new_state = False); SGD's h = lr/(1−μ)."""
    assert ds.lion_system(0.1, 0.9, 0.99).direction_uses_new_state is False
    m = torch.tensor([0.3, -0.2])
    g = torch.tensor([1.0, -1.0])
    S = [m.clone()]
    U = ds.lion_step(S, g, lr=0.1, beta1=0.9, beta2=0.99)
    assert torch.equal(U, torch.sign(0.9 * m - 0.1 * g))
    torch.testing.assert_close(S[0], 0.99 * m - 0.01 * g)
    assert ds.sgd_time_step(0.1, 0.9) == pytest.approx(1.0)


def test_signed_permutation_basis_at_full_rank_reproduces_adamw():
    """P orthogonal and a signed permutation (frozen by alpha = 0): the subspace Adam is AdamW."""
    g = torch.Generator().manual_seed(3)
    W0 = torch.randn(6, 5, generator=g)
    perm = torch.randperm(5, generator=g)
    signs = torch.where(torch.rand(5, generator=g) < 0.5, -1.0, 1.0)
    P = torch.eye(5)[:, perm] * signs                      # (n, r) with r = n: RIGHT side, full rank
    A, B = torch.nn.Parameter(W0.clone()), torch.nn.Parameter(W0.clone())
    osd = OnlineSubspaceDescent([{"params": [A], "rank": 5, "proj_type": "right", "alpha": 0.0}], lr=1e-2)
    osd.state[A] = {"step": torch.zeros(()), "proj": P.clone(), "proj_side": RIGHT, "last_refresh_step": 0,
                    "exp_avg": torch.zeros(6, 5), "exp_avg_sq": torch.zeros(6, 5),
                    "proj_exp_avg": torch.zeros(5, 5), "proj_exp_avg_sq": torch.zeros(5, 5)}
    ref = torch.optim.AdamW([B], lr=1e-2, weight_decay=0.0, foreach=False)
    target = torch.randn(6, 5, generator=g)
    for _ in range(30):
        for p, o in ((A, osd), (B, ref)):
            o.zero_grad()
            ((p - target) ** 3).abs().sum().backward()
            o.step()
    assert torch.equal(osd.state[A]["proj"], P)
    assert (A - B).abs().max() <= 1e-5
