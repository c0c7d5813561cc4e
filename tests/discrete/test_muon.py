"""Muon (discrete.Muon; inner "muon" of the subspace core): torch parity, the HD step, subspaces, bad input.

Tolerances. Parity with torch.optim.Muon: the same float32/bfloat16 operations in the same order
(the momentum is bit-equal; Newton–Schulz is the same code path), except that the step multiplies
−s·O before lr (torch folds lr·s into one alpha): ≤ 1 float32 ulp per step on O(1) weights, so
2e-6 absolute after 30 steps.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch

from discrete import OPTIMIZERS, Muon
from discrete.inner import INNER
from osd_theory import discrete_steps as ds
from osd_theory.hd.spectral import polar

ATOL = 2e-6


def _pair(shape, seed=0, **kw):
    torch.manual_seed(seed)
    W0 = torch.randn(*shape)
    a, b = torch.nn.Parameter(W0.clone()), torch.nn.Parameter(W0.clone())
    return a, b, Muon([a], **kw), torch.optim.Muon([b], **kw), W0


@pytest.mark.parametrize("shape,kw", [
    ((8, 16), {}),                                                        # torch's defaults (wd 0.1, μ 0.95, Nesterov)
    ((16, 8), {"lr": 0.02}),                                              # tall: shape factor √2
    ((12, 12), {"lr": 0.02, "nesterov": False, "weight_decay": 0.0}),
    ((20, 6), {"lr": 0.05, "momentum": 0.9, "adjust_lr_fn": "match_rms_adamw"}),
    ((6, 10), {"lr": 0.01, "ns_steps": 3, "ns_coefficients": (2.0, -1.5, 0.5), "eps": 1e-5}),
])
def test_matches_torch_optim_muon(shape, kw):
    a, b, oa, ob, W0 = _pair(shape, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(30):
        grad = torch.randn(*shape, generator=g)
        a.grad, b.grad = grad.clone(), grad.clone()
        oa.step()
        ob.step()
    assert torch.equal(oa.state[a]["momentum_buffer"], ob.state[b]["momentum_buffer"])
    assert float((a.detach() - b.detach()).abs().max()) <= ATOL
    assert float((a.detach() - W0).abs().max()) > 100 * ATOL                     # and both really moved


def test_exact_step_is_the_euler_step_of_lion_k_with_the_nuclear_norm():
    """orthogonalize="svd": U = s·∇𝒦((1−b)M_old − bĝ) with M = −buf, 𝒦 = ‖·‖_* (b = 1−μ²), and the buffer's
    step is the Euler step of Ṁ = −a(ĝ + M), a = (1−μ)/lr."""
    lr, mu = 0.03, 0.9
    torch.manual_seed(3)
    buf, g = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    system = ds.muon_system(lr, mu, True)
    assert math.isclose(system.b, 1 - mu * mu) and math.isclose(system.a, (1 - mu) / lr)
    M = -buf.clone()
    D = system.direction(0.0, (M,), g)
    system.euler_state_([M], g, lr)
    S = [buf.clone()]
    U = ds.muon_step(S, g, lr=lr, momentum=mu, orthogonalize="svd")
    assert torch.allclose(U, D, atol=1e-12) and torch.allclose(S[0], -M, atol=1e-15)
    assert torch.allclose(D, -polar(mu * mu * buf + (1 - mu * mu) * g), atol=1e-12)


def test_newton_schulz_step_is_close_to_the_exact_one():
    """NS5 is not UVᵀ: the update differs from the SVD step by ~0.2 per unit singular value."""
    torch.manual_seed(4)
    buf, g = torch.randn(16, 32), torch.randn(16, 32)
    Ue = ds.muon_step([buf.clone()], g, lr=0.02, momentum=0.95, orthogonalize="svd")
    Un = ds.muon_step([buf.clone()], g, lr=0.02, momentum=0.95)
    rel = float(torch.linalg.matrix_norm(Un - Ue) / torch.linalg.matrix_norm(Ue))
    assert 0.05 < rel < 0.4, rel


@pytest.mark.parametrize("name", ["galore", "osd", "rso"])
def test_every_projection_rule_runs_muon_in_the_subspace(name):
    """One momentum of Ĝ's shape, no second moment; the loss falls on a quadratic."""
    from osd_theory.problems import make_problem
    prob = make_problem("quadratic", 8, 12, 0)
    W = torch.nn.Parameter(prob.initial_point().float().clone())
    opt = OPTIMIZERS[name]([{"params": [W], "rank": 3, "proj_type": "left"}], lr=0.01, inner="muon", momentum=0.9)
    L0 = float(prob.loss(W.detach().double()))
    for _ in range(100):
        W.grad = prob.grad(W.detach().double()).float()
        opt.step()
    st = opt.state[W]
    moments = {k for k in st if k in ("exp_avg", "exp_avg_sq", "momentum_buffer")}
    assert moments == {"momentum_buffer"} and tuple(st["momentum_buffer"].shape) == (3, 12)
    assert float(prob.loss(W.detach().double())) < 0.8 * L0


def test_subspace_step_is_muon_of_the_projected_gradient():
    """GaLore + inner muon, one step from zero state: W ← W − lr·scale·P·NS(ĝ·(1−μ²)…) = W − lr·scale·P·NS(ĝ)."""
    torch.manual_seed(5)
    W = torch.nn.Parameter(torch.randn(6, 9))
    G = torch.randn(6, 9)
    W0 = W.detach().clone()
    opt = OPTIMIZERS["galore"]([{"params": [W], "rank": 2, "proj_type": "left", "scale": 0.5}], lr=0.1,
                               inner="muon", momentum=0.9)
    W.grad = G.clone()
    opt.step()
    P = opt.state[W]["proj"]
    U = ds.muon_step([torch.zeros(2, 9)], P.mT @ G, lr=0.1, momentum=0.9)
    assert torch.allclose(W.detach(), W0 + 0.1 * 0.5 * (P @ U), atol=1e-6)
    assert "muon" in INNER


def test_aux_adamw_group_and_state_dict_round_trip():
    torch.manual_seed(6)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    mats = [p for p in model.parameters() if p.ndim == 2]
    rest = [p for p in model.parameters() if p.ndim != 2]
    opt = Muon([{"params": mats}, {"params": rest, "inner": "adamw", "lr": 1e-3, "eps": 1e-8}], lr=0.02)
    X = torch.randn(16, 5)
    for _ in range(3):
        opt.zero_grad()
        model(X).pow(2).mean().backward()
        opt.step()
    assert set(opt.state[rest[0]]) == {"step", "exp_avg", "exp_avg_sq"}
    assert set(opt.state[mats[0]]) == {"step", "momentum_buffer"}
    twin = copy.deepcopy(model)
    fresh = Muon([{"params": [p for p in twin.parameters() if p.ndim == 2]},
                  {"params": [p for p in twin.parameters() if p.ndim != 2], "inner": "adamw", "lr": 1e-3, "eps": 1e-8}],
                 lr=0.02)
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    for o, m in ((opt, model), (fresh, twin)):
        o.zero_grad()
        m(X).pow(2).mean().backward()
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))


@pytest.mark.parametrize("kw,msg", [
    ({"nesterov": "yes"}, "nesterov"),
    ({"ns_steps": 100}, "ns_steps"),
    ({"ns_coefficients": (1.0, 2.0)}, "ns_coefficients"),
    ({"adjust_lr_fn": "rms"}, "adjust_lr_fn"),
    ({"orthogonalize": "qr"}, "orthogonalize"),
    ({"momentum": 1.0}, "momentum"),
])
def test_bad_settings_are_one_line_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Muon([torch.nn.Parameter(torch.zeros(3, 4))], **kw)


def test_non_matrix_and_sharded_parameters_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(3))])
    from discrete.step import sharded
    monkeypatch.setattr(sharded, "is_sharded", lambda params: True)
    with pytest.raises(ValueError, match="whole matrices"):
        Muon([torch.nn.Parameter(torch.zeros(3, 4))])


def test_bad_group_leaves_the_optimizer_unchanged():
    W = torch.nn.Parameter(torch.zeros(3, 4))
    opt = Muon([W], lr=0.02)
    with pytest.raises(ValueError, match="ns_steps"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, 2))], "ns_steps": -1})
    assert len(opt.param_groups) == 1


def test_inner_muon_refuses_a_non_matrix_at_construction():
    """GaLore(inner="muon") over biases too: a one-line error when the group is made, not a crash mid-step."""
    W, b = torch.nn.Parameter(torch.zeros(4, 6)), torch.nn.Parameter(torch.zeros(6))
    with pytest.raises(ValueError, match="2-D matrices only"):
        OPTIMIZERS["galore"]([{"params": [b]}, {"params": [W], "rank": 2}], inner="muon", momentum=0.9)
    OPTIMIZERS["galore"]([{"params": [b]}, {"params": [W], "rank": 2, "inner": "muon", "momentum": 0.9}])


def test_a_stack_of_matrices_is_stepped_matrix_by_matrix():
    """The batched subspace path hands muon_step an (L, r, n) stack: same bits as one matrix at a time, and the
    shape factor of the matrices (tall 8×5: √(8/5)), not of the stack."""
    g = torch.randn(3, 8, 5, generator=torch.Generator().manual_seed(7))
    S = [torch.zeros(3, 8, 5)]
    U = ds.muon_step(S, g, lr=0.1, momentum=0.9)
    for i in range(3):
        Ui = ds.muon_step([torch.zeros(8, 5)], g[i], lr=0.1, momentum=0.9)
        assert torch.equal(U[i], Ui)
    assert math.isclose(float(torch.linalg.matrix_norm(U[0], ord=2)),
                        math.sqrt(8 / 5) * float(torch.linalg.matrix_norm(ds.muon_step([torch.zeros(8, 5)], g[0], lr=0.1,
                                                                                           momentum=0.9, adjust_lr_fn="none"), ord=2)), rel_tol=1e-6)
