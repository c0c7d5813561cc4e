"""The new checks inside claims C5 and C7 can tell right from wrong on small inputs (seconds)."""
from __future__ import annotations

import math

import torch

from osd_theory.claims.discrete_ode import STEP_RTOL, _step_recording, euler_reference, hd_state
from osd_theory.claims.stochastic import Isotropic, adam_floor_prediction, classify
from osd_theory.problems import make_problem


def test_sgd_momentum_is_the_semi_implicit_euler_step_not_the_explicit_one():
    from discrete import OPTIMIZERS
    from osd_theory import discrete_steps as ds
    problem = make_problem("quadratic", 4, 5, 0)
    a, h, steps = 1.0, 0.1, 30
    lr, mu = a * h * h, 1 - a * h           # as claim C5: torch's lr = a h^2, momentum 1 - a h
    W = torch.nn.Parameter(problem.initial_point().clone())
    opt = OPTIMIZERS["sgd"]([W], lr=lr, momentum=mu)
    for k in range(steps):
        W.grad = problem.grad(W.detach())
        _step_recording(opt, W, k, [])
    system = ds.heavy_ball_system(ds.sgd_time_step(lr, mu), mu)
    H_K = float(system.hamiltonian(0.0, problem.loss(W.detach()), hd_state(opt, W, system.state_names)))
    semi = euler_reference(system, problem, h, steps, semi_implicit=True)
    expl = euler_reference(system, problem, h, steps, semi_implicit=False)
    assert abs(H_K - semi) <= STEP_RTOL * abs(semi), (H_K, semi)
    assert abs(H_K - expl) > 1e3 * STEP_RTOL * abs(expl), (H_K, expl)


def test_c7_classification_flags_a_result_that_passes_both_tests():
    shrinking = {"at_optimum": False, "p": 1.0, "p_halfwidth": 0.1}
    stalled = {"at_optimum": False, "p": -0.5, "p_halfwidth": 0.2}
    assert classify(shrinking) == "shrinks" and classify(stalled) == "stalls"
    import osd_theory.claims.stochastic as c7
    old = c7.STALL_P_MAX
    try:
        c7.STALL_P_MAX = 10.0                # a relaxed threshold: everything "stalls" too
        assert classify(shrinking) == "contradictory"
    finally:
        c7.STALL_P_MAX = old
    assert classify({"at_optimum": True, "p": math.nan, "p_halfwidth": math.nan}) == "optimum"


def test_adam_floor_prediction_is_lr_sigma_d_over_4():
    s = Isotropic(sigma=0.3, m=8, n=8)
    assert abs(adam_floor_prediction(s, 0.04) - 0.04 * 0.3 * 64 / 4) < 1e-15
