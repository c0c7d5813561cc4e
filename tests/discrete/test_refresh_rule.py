"""``online_pca_refresh`` (issue 12): OSD's online-PCA flow between jumps, GaLore's SVD jump every T / τ.

Both faces are checked against the rules it is composed of (``online_pca``'s field, ``periodic_svd``'s
jump): by hand step by step (the ``gd`` P step, float32 state: rtol 1e-5), bit-for-bit against OSD before
the first jump and against GaLore's basis with α = 0, and in the simulator (jump times, the basis at a jump).
"""
from __future__ import annotations

import pytest
import torch

from discrete import OnlineSubspaceDescent
from discrete.projection import basis_generator
from osd_theory.kernels import LEFT, project, svd_basis
from osd_theory.projections import PROJECTIONS, make_rule

SHAPE = (10, 14)
GAP = 3


def _grads(n, seed=0, zero_at=()):
    g = torch.Generator().manual_seed(seed)
    return [torch.zeros(SHAPE) if k in zero_at else torch.randn(*SHAPE, generator=g) * (1 + k) for k in range(n)]


def _opt(W, **kw):
    group = {"params": [W], "rank": 3, "projection": "online_pca_refresh", "update_proj_gap": GAP, **kw}
    return OnlineSubspaceDescent([group], lr=1e-2)


def test_registered_as_smooth_and_jumping_with_both_rules_options():
    import dataclasses
    cls = PROJECTIONS.get("online_pca_refresh")
    assert cls.smooth and cls.jumps and cls.p_optimizer == "adam"
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    assert {"alpha", "pca_lambda", "tau", "retract", "rank", "side", "init", "seed"} == names
    rule = make_rule("online_pca_refresh", alpha=2.0, pca_lambda=0.3, tau=0.25)
    assert (rule.alpha, rule.pca_lambda, rule.tau) == (2.0, 0.3, 0.25)


@pytest.mark.parametrize("side", ["left", "right"])
def test_p_steps_every_step_and_jumps_to_galores_svd_basis_every_gap(side):
    """P_{k+1} = J_k + αε·field(J_k, G_k), J_k = SVD_r(G_k) at k ≡ 0 mod T (P₀ at k = 0), else P_k."""
    lr, alpha = 1e-2, 3.0
    W = torch.nn.Parameter(torch.randn(*SHAPE, generator=torch.Generator().manual_seed(5)))
    opt = OnlineSubspaceDescent([{"params": [W], "rank": 3, "projection": "online_pca_refresh", "proj_type": side,
                                  "update_proj_gap": GAP, "alpha": alpha, "proj_optimizer": "gd"}], lr=lr)
    flow = make_rule("online_pca", rank=3, side=side).bind(SHAPE)          # the field between jumps
    galore = make_rule("periodic_svd", rank=3, side=side).bind(SHAPE)      # the jump
    P = None
    for k, G in enumerate(_grads(8)):
        W.grad = G.clone()
        opt.step()
        if k == 0:
            J = flow.initial_basis(G, basis_generator(0, 0, 0))
        elif k % GAP == 0:
            J = galore.jump_basis(P, G, basis_generator(0, 0, k))
            assert opt.diagnostics["refreshes"] == 1 and opt.diagnostics["overlap"][0] < 0.99   # a real jump
        else:
            J = P
            assert "refreshes" not in opt.diagnostics
        P = J + lr * alpha * flow.field(float(k), J, G)
        torch.testing.assert_close(opt.state[W]["proj"], P, rtol=1e-5, atol=1e-6, msg=f"step {k}")
        P = opt.state[W]["proj"].clone()                                   # no drift of the hand recursion
    assert opt.state[W]["last_refresh_step"] == 6


def test_before_the_first_jump_it_is_osd_and_with_alpha_zero_it_is_galores_basis():
    grads = _grads(8)
    runs = {}
    for name, kw in {"hybrid": {}, "osd": {"projection": "online_pca"},
                     "hybrid_frozen": {"alpha": 0.0}, "svd": {"projection": "periodic_svd"}}.items():
        W = torch.nn.Parameter(torch.randn(*SHAPE, generator=torch.Generator().manual_seed(5)))
        opt = _opt(W, **kw)
        trace = []
        for G in grads:
            W.grad = G.clone()
            opt.step()
            trace.append((W.detach().clone(), opt.state[W]["proj"].clone()))
        runs[name] = trace
    for k in range(GAP):                                                   # steps 0..T-1: OSD, bit for bit
        assert torch.equal(runs["hybrid"][k][0], runs["osd"][k][0]) and torch.equal(runs["hybrid"][k][1], runs["osd"][k][1])
    assert not torch.equal(runs["hybrid"][GAP][1], runs["osd"][GAP][1])    # the jump at step T
    for (W_a, P_a), (W_b, P_b) in zip(runs["hybrid_frozen"], runs["svd"]):  # α = 0: P moves only by GaLore's jumps
        assert torch.equal(P_a, P_b) and torch.equal(W_a, W_b)


@pytest.mark.parametrize("switch", ["keep", "reset"])
def test_the_groups_switch_policy_acts_at_the_jumps_only(switch):
    W = torch.nn.Parameter(torch.randn(*SHAPE, generator=torch.Generator().manual_seed(5)))
    opt = _opt(W, switch=switch, proj_type="left")
    for k, G in enumerate(_grads(7)):
        m_before = opt.state[W]["exp_avg"].clone() if opt.state[W] else torch.zeros(3, SHAPE[1])
        W.grad = G.clone()
        opt.step()
        Ghat = svd_basis(G, 3, LEFT).T @ G if k % GAP == 0 else None       # Ĝ at a jump: with the SVD basis
        m = opt.state[W]["exp_avg"]
        if k % GAP == 0 and k > 0:
            expected = 0.1 * Ghat if switch == "reset" else None
            if expected is not None:                                       # m zeroed, then one inner step
                torch.testing.assert_close(m.abs(), expected.abs(), rtol=1e-4, atol=1e-6)   # up to SVD signs
            else:
                assert not torch.allclose(m.abs(), (0.1 * Ghat).abs(), atol=1e-3)
        elif k > 0:
            assert not torch.allclose(m, 0.1 * project(opt.state[W]["proj"], G, LEFT), atol=1e-3)
            assert torch.count_nonzero(m_before) > 0


def test_zero_gradient_at_a_jump_keeps_p_and_still_steps_it():
    W = torch.nn.Parameter(torch.randn(*SHAPE))
    opt = _opt(W, proj_optimizer="gd")
    grads = _grads(4, zero_at=(GAP,))
    for G in grads:
        W.grad = G.clone()
        opt.step()
    assert opt.diagnostics.get("refresh_skipped") == 1 and opt.state[W]["last_refresh_step"] == 0


# -- the continuous face ------------------------------------------------------------------------------
def test_continuous_face_composes_the_two_rules():
    g = torch.Generator().manual_seed(3)
    P = torch.linalg.qr(torch.randn(10, 3, generator=g, dtype=torch.float64))[0]
    G = torch.randn(*SHAPE, generator=g, dtype=torch.float64)
    hyb = make_rule("online_pca_refresh", rank=3, side="left", alpha=2.0, pca_lambda=0.2, tau=0.4).bind(SHAPE)
    osd = make_rule("online_pca", rank=3, side="left", alpha=2.0, pca_lambda=0.2).bind(SHAPE)
    svd = make_rule("periodic_svd", rank=3, side="left", tau=0.4).bind(SHAPE)
    assert torch.equal(hyb.rate(0.3, P, G), osd.rate(0.3, P, G))
    assert torch.equal(hyb.jump(0.4, P, G), svd.jump(0.4, P, G))
    assert hyb.jump_times(0.0, 2.0) == svd.jump_times(0.0, 2.0) == pytest.approx([0.4, 0.8, 1.2, 1.6])
    assert hyb.jump_times(0.4, 1.2) == pytest.approx([0.8])                # strictly inside (t0, t1)


def test_simulator_flows_then_jumps_to_the_svd_basis():
    from ode import RunSpec, run_spec
    from ode.integrate import SimulationConfig
    from ode.system import Layout
    from osd_theory.verdicts import lyapunov_verdict

    def spec(t_end):
        return RunSpec(optimizer="heavy_ball", hp={"a": 1.0}, projection="online_pca_refresh",
                       proj_hp={"tau": 0.5, "alpha": 2.0}, problem="lowrank_regression", dim=(6, 5), rank=2,
                       side="left", config=SimulationConfig(t_end=t_end, rtol=1e-8, atol=1e-11))

    traj = run_spec(spec(2.0))
    assert traj.jumps["t"].tolist() == [0.5, 1.0, 1.5]
    assert bool((traj.jumps["H_before"] == traj.jumps["H_after"]).all())
    assert lyapunov_verdict(traj).holds
    # the first segment alone ends where the first jump happens: its P flowed (not the SVD basis), and the
    # jump replaces it by the top-r basis of G(W(0.5)): ‖PᵀG‖ after the jump = √(σ₁² + σ₂²)
    head = run_spec(spec(0.5))
    W, _, P, _ = Layout(len(head.final_y) - 3).unpack(head.final_y)
    from ode import build_run
    _, _, problem = build_run(spec(0.5))
    G = problem.grad(W)
    top = float(torch.linalg.vector_norm(svd_basis(G, 2, LEFT).T @ G))
    assert traj.jumps["proj_grad_before"][0].item() == pytest.approx(float(torch.linalg.vector_norm(P.T @ G)), rel=1e-9)
    assert traj.jumps["proj_grad_after"][0].item() == pytest.approx(top, rel=1e-9)
    assert traj.jumps["proj_grad_before"][0].item() < top * (1 - 1e-6)    # the flow had not reached it


def test_a_jump_keeps_the_p_optimizers_moments():
    """Adam-on-P's moments survive a jump (resetting them makes Adam normalise the round-off field at the
    SVD basis into a full step; tests/discrete/test_batched.py): two runs that differ before the jump and
    share G_jump land on the same jump basis but keep different P moments."""
    import torch
    from discrete import OPTIMIZERS

    def run(history_seed):
        W = torch.nn.Parameter(torch.zeros(10, 8))
        opt = OPTIMIZERS["osd"]([{"params": [W], "rank": 3, "update_proj_gap": 3,
                                  "projection": "online_pca_refresh", "proj_optimizer": "adam"}], lr=1e-2, alpha=0.5)
        g = torch.Generator().manual_seed(history_seed)
        grads = [torch.randn(10, 8, generator=g) for _ in range(3)]
        grads.append(torch.randn(10, 8, generator=torch.Generator().manual_seed(99)))   # G at the jump (step 3)
        for G in grads:
            W.grad = G.clone()
            opt.step()
        assert opt.diagnostics["refreshes"] == 1 and "overlap" in opt.diagnostics       # the last step jumped
        return opt.state[W]

    a, b = run(1), run(2)
    assert not torch.allclose(a["proj_exp_avg_sq"], b["proj_exp_avg_sq"], rtol=1e-3, atol=0)
