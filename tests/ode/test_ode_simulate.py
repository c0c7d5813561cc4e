"""Deterministic checks of the simulator, the reference integrators, refinement and verdicts."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from osd_theory.errors import IntegrationError, UserError
from osd_theory.verdicts import (classify_refinement, lyapunov_verdict, positive_variation, stationarity_verdict)
from ode import RunSpec, build_run, run_spec
from ode.claims import blind_start, invariance_defect
from ode.diagnostics import COLUMNS, autodiff_hdot, jvp_hdot
from ode.integrate import SimulationConfig, initial_state
from ode.refinement import refinement_test
from ode.system import CoupledField
from ode.trajectory import Trajectory

HB_QUAD = dict(optimizer="heavy_ball", projection="constant", problem_hp={"condition": 100.0})


# -- the refinement test tells planted solver error from a real violation ---------------------
def test_refinement_flags_explicit_euler_as_solver_error():
    # explicit Euler at h = 0.5 on heavy ball (stable but not H-monotone, THEORY §7 measured example)
    spec = RunSpec(**HB_QUAD, config=SimulationConfig(method="euler", step_size=0.5, t_end=30.0))
    assert not lyapunov_verdict(run_spec(spec)).holds          # the planted rise is seen ...
    assert refinement_test(spec).kind == "solver error"       # ... and shrinks with h


def test_refinement_flags_adam_b_8a_as_real_violation():
    spec = RunSpec(optimizer="adam", hp={"a": 1.0, "b": 8.0}, config=SimulationConfig(t_end=10.0, rtol=1e-6, atol=1e-8))
    v = lyapunov_verdict(run_spec(spec))
    assert not v.holds and v.max_pointwise_hdot > 0.1         # H rises, and dH/dt > 0 pointwise
    assert refinement_test(spec).kind == "real violation"     # the rise persists at rtol/10, /100


def test_classify_refinement_rules():
    lv = lambda *pv: [{"param": i, "positive_variation": p, "max_rise": p} for i, p in enumerate(pv)]
    assert classify_refinement(lv(0.0, 0.0, 0.0)).kind == "no rise"
    assert classify_refinement(lv(1.0, 0.5, 0.25)).kind == "solver error"
    assert classify_refinement(lv(1.0, 1.0, 0.99)).kind == "real violation"
    assert classify_refinement(lv(1.0, 0.2, 0.19)).kind == "inconclusive"


# -- structure-preserving reference ------------------------------------------------------------
@settings(max_examples=6)
@given(h=st.floats(0.05, 2.0))
def test_implicit_midpoint_monotone_at_any_step(h):
    # heavy ball on a quadratic has quadratic H: implicit midpoint decreases it at every h
    spec = RunSpec(**HB_QUAD, dim=(3, 3), rank=2, config=SimulationConfig(method="implicit_midpoint", step_size=h, t_end=8 * h))
    traj = run_spec(spec)
    assert lyapunov_verdict(traj).holds, lyapunov_verdict(traj).summary()


def test_implicit_midpoint_is_second_order():
    # error at t = 1 against a tight dopri5 solution: halving h divides it by ≈ 4 (order 2)
    spec = RunSpec(optimizer="heavy_ball", projection="online_pca", dim=(3, 3), rank=2,
                   config=SimulationConfig(t_end=1.0, rtol=1e-12, atol=1e-14, autodiff=False))
    ref = run_spec(spec).final("H")
    errs = [abs(run_spec(spec.with_config(method="implicit_midpoint", step_size=h)).final("H") - ref) for h in (0.1, 0.05)]
    assert 3.0 < errs[0] / errs[1] < 5.0, errs


# -- diagnostics -------------------------------------------------------------------------------
@pytest.mark.parametrize("opt", ["heavy_ball", "adam", "lion_k", "signum", "gd"])
def test_autodiff_hdot_equals_jvp(opt):
    system, rule, problem = build_run(RunSpec(optimizer=opt, dim=(4, 3)))
    y = initial_state(system, rule, problem)
    f = CoupledField(system, rule, problem)
    y = tuple(b + 0.3 * torch.randn_like(b) if b.ndim else b for b in y)   # a generic state
    y = (y[0], *(s.abs() if n == "exp_avg_sq" else s for s, n in zip(y[1:-2], system.state_names)), y[-2], y[-1])
    W, S, P, G, g = f.parts(0.0, y)
    Wd, Sd = f.velocity(0.0, W, S, P, g), system.state_rate(0.0, S, g)
    a, b = autodiff_hdot(f, 0.0, W, S, Wd, Sd), jvp_hdot(f, 0.0, W, S, Wd, Sd)
    assert math.isclose(a, b, rel_tol=1e-10, abs_tol=1e-12)
    assert math.isclose(a, -float(system.dissipation(0.0, S, g, W)), rel_tol=1e-8, abs_tol=1e-12)


def test_samples_are_accepted_steps_and_end_exactly():
    traj = run_spec(RunSpec(config=SimulationConfig(t_end=3.0)))
    t, h = traj["t"], traj["h"]
    assert traj.final("t") == 3.0 and h[-1] == 0
    assert torch.allclose(t[:-1] + h[:-1], t[1:], rtol=0, atol=1e-12)   # consecutive step endpoints
    assert set(COLUMNS) <= set(traj.columns)


def test_jumps_logged_on_both_sides():
    traj = run_spec(RunSpec(projection="random_jump", proj_hp={"tau": 0.5}, config=SimulationConfig(t_end=2.0)))
    assert traj.jumps["t"].tolist() == [0.5, 1.0, 1.5]
    assert bool((traj.jumps["H_before"] == traj.jumps["H_after"]).all())


def test_non_autonomous_adam_bc_runs_from_t0():
    traj = run_spec(RunSpec(optimizer="adam_bc", config=SimulationConfig(t_end=2.0)))
    assert traj["t"][0] > 0 and not traj.meta["autonomous"]
    # the autodiff dH/dt includes ∂ₜH: it must match the closed form (Barakat–Bianchi V)
    ad, an = traj["dHdt_autodiff"], traj["dHdt"]
    assert bool(((ad - an).abs() <= 1e-5 * an.abs() + 1e-8).all())


def test_stop_residual():
    traj = run_spec(RunSpec(optimizer="heavy_ball", projection="identity", problem="box_quadratic", dim=(3, 4), rank=3,
                            side="left", config=SimulationConfig(t_end=100.0, stop_residual=1e-6)))
    assert traj.meta["status"].startswith("stopped") and traj.final("residual") <= 1e-6 < traj["residual"][-2]


def test_full_rank_lion_with_weight_decay_is_lyapunov():
    traj = run_spec(RunSpec(optimizer="lion_k_wd", hp={"wd": 0.5}, projection="identity", problem="box_quadratic",
                            dim=(3, 4), rank=3, side="left", config=SimulationConfig(t_end=5.0)))
    assert lyapunov_verdict(traj).holds and traj.meta["stationarity_name"].startswith("||grad (f +")


def test_non_finite_state_raises_with_time():
    spec = RunSpec(**HB_QUAD, config=SimulationConfig(method="euler", step_size=10.0, t_end=2000.0))
    with pytest.raises(IntegrationError) as info:
        run_spec(spec)
    assert 0 < info.value.t_reached < 2000 and "non-finite" in str(info.value)
    assert len(info.value.trajectory) > 0


def test_user_rule_bad_shape_is_user_error():
    spec = RunSpec(projection="constant")
    system, rule, problem = build_run(spec)
    from osd_theory.projections import make_rule
    from ode.integrate import simulate
    bad = make_rule(lambda t, P, G: torch.zeros(1), rank=2).bind(problem.shape)
    with pytest.raises(UserError, match="shape"):
        simulate(system, bad, problem, SimulationConfig(t_end=1.0))


# -- verdicts ------------------------------------------------------------------------------------
def _synthetic(residual, has_sp=True, H=None):
    n = len(residual)
    cols = {c: torch.zeros(n, dtype=torch.float64) for c in COLUMNS}
    cols["residual"] = torch.tensor(residual, dtype=torch.float64)
    cols["t"] = torch.arange(n, dtype=torch.float64)
    cols["W_norm"] = torch.ones(n, dtype=torch.float64)
    if H is not None:
        cols["H"] = torch.tensor(H, dtype=torch.float64)
    return Trajectory(cols, meta={"has_stationary_points": has_sp, "status": "completed",
                                  "config": {"rtol": 1e-8, "atol": 1e-10}, "adaptive": True})


@settings(max_examples=30)
@given(r=st.lists(st.floats(0, 1e-20), min_size=2, max_size=10))
def test_problem_without_stationary_points_is_never_stationary(r):
    assert not stationarity_verdict(_synthetic(r, has_sp=False)).stationary


def test_stall_is_not_stationary_and_convergence_is():
    assert not stationarity_verdict(_synthetic([3.78] * 5)).stationary
    assert stationarity_verdict(_synthetic([3.78, 1e-3, 1e-9])).stationary


def test_lyapunov_tolerance_and_positive_variation():
    # a rise of 1e-6 on H = 1 exceeds tol = 10 (1e-10 + 1e-8) ≈ 1e-7; a rise of 1e-9 does not
    assert not lyapunov_verdict(_synthetic([1.0] * 3, H=[1.0, 0.5, 0.5 + 1e-6])).holds
    assert lyapunov_verdict(_synthetic([1.0] * 3, H=[1.0, 0.5, 0.5 + 1e-9])).holds
    assert positive_variation(_synthetic([1.0] * 3, H=[1.0, 1.5, 1.0])) == 0.5


def test_logistic_run_is_reported_not_stationary():
    traj = run_spec(RunSpec(optimizer="heavy_ball", projection="online_pca", problem="logistic", dim=(2, 2),
                            rank=1, config=SimulationConfig(t_end=5.0, autodiff=False)))
    assert not stationarity_verdict(traj).stationary


# -- C4 --------------------------------------------------------------------------------------------
def test_c4_blind_start_stalls_exactly():
    """Heavy ball + online PCA from an exact blind start: PᵀG is exactly 0 at every accepted step."""
    from osd_theory.problems import make_problem
    spec = RunSpec(optimizer="heavy_ball", projection="online_pca", proj_hp={"alpha": 1.0}, problem="box_quadratic",
                   dim=(4, 4), rank=2, side="left", config=SimulationConfig(t_end=20.0, rtol=1e-9, atol=1e-12, autodiff=False))
    W0, P0 = blind_start(make_problem("box_quadratic", 4, 4, 0), 2)
    traj = run_spec(spec, W0=W0, P0=P0)
    assert float(traj["proj_grad_norm"].abs().max()) == 0.0
    assert abs(traj.final("grad_norm") - float(traj["grad_norm"][0])) <= 1e-12 * float(traj["grad_norm"][0])


def test_online_pca_keeps_the_blind_set_invariant_but_oja_free_rules_do_not():
    from ode.blind import GradientRelax, blind_set_check
    from osd_theory.projections import make_rule
    assert invariance_defect() < 1e-12                       # d/dt(PᵀG) = 0 on {PᵀG = 0}
    assert not blind_set_check(make_rule("online_pca", rank=3, side="left", alpha=5.0))["leaves"]
    assert blind_set_check(GradientRelax(rank=3, side="left"))["leaves"]


def test_plot_writes_a_file(tmp_path):
    from ode.plot import plot_trajectory
    traj = run_spec(RunSpec(projection="random_jump", config=SimulationConfig(t_end=2.0, autodiff=False)))
    assert plot_trajectory(traj, tmp_path / "h.png").stat().st_size > 1000
