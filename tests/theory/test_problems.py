"""Test problems (THEORY.md §8): closed-form gradients = autograd; known stationary points.

Tolerances: closed form and autograd evaluate the same float64 expression in a different
order; rounding is a few ε times the largest intermediate (Rosenbrock: |400 x (y − x²)|
~ 10³), so we compare relative to max(1, max|∇L|) at 1e-11.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from osd_theory.problems import PROBLEMS, make_problem

from osd_theory.testing import fit_dims, dims

PROBLEM_NAMES = PROBLEMS.names()


def _autograd(problem, W):
    W = W.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(problem.loss(W), W)
    return g


@pytest.mark.parametrize("name", PROBLEM_NAMES)
@settings(max_examples=5)
@given(shape=dims(max_dim=8), seed=st.integers(0, 10_000), noise=st.floats(0.0, 2.0))
def test_closed_form_gradient_equals_autograd(name, shape, seed, noise):
    m, n = fit_dims(name, *shape)
    problem = make_problem(name, m=m, n=n, seed=seed)
    g = torch.Generator().manual_seed(seed)
    W = problem.initial_point() + noise * torch.randn(m, n, generator=g, dtype=torch.float64)
    closed, auto = problem.grad(W), _autograd(problem, W)
    assert closed.shape == (m, n)
    assert float((closed - auto).abs().max()) <= 1e-11 * max(1.0, float(auto.abs().max()))


@pytest.mark.parametrize("name", [p for p in PROBLEM_NAMES if make_problem(p, m=4, n=4).stationary_point() is not None])
@pytest.mark.parametrize("seed,m,n", [(0, 4, 4), (1, 6, 2), (2, 2, 8)])
def test_known_stationary_point_has_zero_gradient(name, seed, m, n):
    """‖∇L(W*)‖ ≈ 0 relative to ‖∇L(W₀)‖ (1e-9: W* = A⁺CB⁺ carries cond(A)cond(B)·ε error)."""
    problem = make_problem(name, m=m, n=n, seed=seed)
    W_star = problem.stationary_point()
    scale = float(problem.grad_norm(problem.initial_point()))
    assert scale > 0, "W0 is already stationary: the test would be vacuous"
    assert float(problem.grad_norm(W_star)) <= 1e-9 * scale


def test_problems_without_unique_stationary_point_say_so():
    logistic = make_problem("logistic", m=3, n=3, seed=0)
    assert not logistic.has_stationary_points and logistic.stationary_point() is None
    # separable data: the gradient never vanishes, even far out along a descent path
    W = torch.zeros(3, 3, dtype=torch.float64)
    for _ in range(50):
        G = logistic.grad(W)
        assert float(G.norm()) > 0
        W = W - 10.0 * G
    assert float(logistic.loss(W)) < float(logistic.loss(torch.zeros(3, 3, dtype=torch.float64)))
    assert make_problem("deep_linear", m=4, n=3).stationary_point() is None


def test_box_quadratic_kkt_point_is_the_clip():
    problem = make_problem("box_quadratic", m=3, n=4, seed=0, scale=3.0)
    P = problem.box_kkt_point(1.0)
    assert float(P.abs().max()) <= 1.0 and bool((problem.C.abs() > 1).any())
    # KKT of min ½‖W − C‖² on the box: W − Π(W − ∇L) = 0
    G = problem.grad(P)
    assert float((P - (P - G).clamp(-1, 1)).abs().max()) <= 1e-15


def test_logistic_loss_exact_at_large_margins():
    """Regression: F.softplus's linear branch (x > 20) made L inconsistent with ∇L by
    ~e^{−20}; with margins ≫ 20 autograd of L must still equal the closed form."""
    problem = make_problem("logistic", m=3, n=5, seed=1)
    W0 = torch.randn(3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    W = 25.0 * W0 / problem._margins(W0).abs().median()       # many |margins| around 20–30
    assert int(((problem._margins(W) < -20) & (problem._margins(W) > -40)).sum()) >= 5
    closed, auto = problem.grad(W), _autograd(problem, W)
    assert float((closed - auto).abs().max()) <= 1e-13 * max(float(closed.abs().max()), 1e-300)
