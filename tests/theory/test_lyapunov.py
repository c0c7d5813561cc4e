"""The Lyapunov identity dH/dt = −Δ of every HD system, for any P and any Ṗ (THEORY.md §1.2, §3).

Tolerances. Everything is float64 with O(1)–O(10³) entries; the identity is a sum of at
most a few hundred terms, so rounding is ≲ 10³ ε ≈ 2·10⁻¹³ of the largest term. We
compare relative to ``scale = max(1, |Δ|, |c_L⟨G, Ẇ⟩|)`` (the loss part can dominate
and cancel against the kinetic part) and use 1e-9: four orders above rounding, far
below the O(1) relative error of any wrong formula. Adam with bias correction adds
the finite-difference ∂H/∂t (see helpers.autodiff_dHdt): 1e-8.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from osd_theory.hd import make_system
from osd_theory.kernels import LEFT, RIGHT, project
from osd_theory.projections import make_rule
from osd_theory.problems import make_problem

from theory.helpers import autodiff_dHdt, field, grad_H
from osd_theory.testing.strategies import FULL_RANK, SYSTEMS, VIOLABLE, HDCase, floats_in, bases, hd_cases


def _tol(system) -> float:
    return 1e-8 if not system.autonomous else 1e-9


def _scale(case, Delta) -> float:
    _, Wdot, _ = field(case)
    loss_part = case.system.loss_weight * (case.G * Wdot).sum()
    return max(1.0, abs(float(Delta)), abs(float(loss_part)))


def _delta(case):
    g_hat, _, _ = field(case)
    return case.system.dissipation(case.t, case.S, g_hat, case.W)


@pytest.mark.parametrize("name", SYSTEMS)
@settings(max_examples=12)
@given(data=st.data())
def test_analytic_minus_delta_equals_autodiff_dHdt(name, data):
    """−Δ (closed form) = ⟨∇H, F⟩ (jvp), any side, rank, problem, generic P and Ṗ; also when
    the condition is violated (the identity is algebra; only the sign of Δ needs it)."""
    holds = data.draw(st.booleans()) if name in VIOLABLE else True
    case = data.draw(hd_cases(system=name, condition_holds=holds))
    Pdot = data.draw(bases(*case.P.shape))
    Delta = _delta(case)
    dH = autodiff_dHdt(case, Pdot)
    assert torch.isfinite(Delta) and torch.isfinite(dH)
    assert abs(float(dH + Delta)) <= _tol(case.system) * _scale(case, Delta), \
        f"{case.system.describe()}: dH/dt={float(dH):.6e}, -Delta={-float(Delta):.6e}"


@pytest.mark.parametrize("name", SYSTEMS)
@settings(max_examples=6)
@given(data=st.data())
def test_dissipation_nonnegative_when_condition_holds(name, data):
    case = data.draw(hd_cases(system=name, condition_holds=True))
    assert case.system.condition().holds, case.system.condition()
    Delta = _delta(case)
    # Δ is a sum of terms that are each ≥ 0 in exact arithmetic; rounding can cost ~ε·|Δ|
    assert float(Delta) >= -1e-13 * max(1.0, abs(float(Delta)))


@settings(max_examples=30)
@given(a=floats_in(0.05, 10.0), q=st.one_of(floats_in(0.05, 1.0), floats_in(1.05, 8.0)), e=floats_in(1e-3, 1.0),
       m=st.lists(floats_in(0.1, 3.0), min_size=1, max_size=6))
def test_adam_sign_threshold_b_equals_4a(a, q, e, m):
    """At g = 0 and large v the bracket of Δ tends to 1 − b/4a (THEORY.md §3.2):
    dH/dt > 0 there iff b > 4a; at b ≤ 4a no state of this family has dH/dt > 0."""
    b = 4 * a * q
    sys_ = make_system("adam", a=a, b=b, e=e)
    assert sys_.condition().holds == (q <= 1)
    problem = make_problem("quadratic", m=1, n=len(m), seed=0)
    W = problem.stationary_point()                       # G = ∇L(W*) = 0 exactly up to rounding
    # s with s/(s+e) = 1 − (q−1)/(2q) when q > 1 (bracket = (1 − q)/2 < 0); very large s otherwise
    s = e * (2 * q / (q - 1) - 1) if q > 1 else 1e3 / e
    M = torch.tensor([m], dtype=torch.float64)
    S = (M, torch.full_like(M, s * s))
    case = HDCase(sys_, problem, LEFT, W, torch.eye(1, dtype=torch.float64), S, 0.0)
    dH = autodiff_dHdt(case, torch.zeros(1, 1, dtype=torch.float64))
    Delta = _delta(case)
    assert abs(float(dH + Delta)) <= 1e-9 * max(1.0, abs(float(Delta)))
    if q > 1:
        assert float(dH) > 0, f"b = {b:g} > 4a = {4 * a:g} should give dH/dt > 0, got {float(dH):.3e}"
    else:
        assert float(dH) <= 1e-13 * float(Delta.abs().clamp_min(1.0))


@settings(max_examples=25)
@given(a=floats_in(0.05, 10.0), q=floats_in(1e-3, 1.0), e=floats_in(1e-4, 1.0),
       log_v=st.lists(floats_in(-4.0, 8.0), min_size=1, max_size=4), data=st.data())
def test_adam_no_state_with_dH_dt_positive_when_b_le_4a(a, q, e, log_v, data):
    """Searching states (v over 12 decades, ĝ = 0 or not) for dH/dt > 0 at b ≤ 4a finds none;
    ``target`` steers hypothesis towards the most negative normalised Δ."""
    from hypothesis import target
    sys_ = make_system("adam", a=a, b=4 * a * q, e=e)
    v = torch.tensor([10.0 ** x for x in log_v], dtype=torch.float64)
    m = torch.tensor(data.draw(st.lists(floats_in(-3.0, 3.0), min_size=len(log_v), max_size=len(log_v))),
                     dtype=torch.float64)
    g = torch.zeros_like(m) if data.draw(st.booleans()) else torch.tensor(
        data.draw(st.lists(floats_in(-3.0, 3.0), min_size=len(log_v), max_size=len(log_v))), dtype=torch.float64)
    Delta = sys_.dissipation(0.0, (m, v), g)
    norm = float((m * m / (v.sqrt() + e)).sum()) + 1e-300     # 2a·K: Δ/norm is scale-free
    target(-float(Delta) / norm)
    assert float(Delta) >= -1e-13 * norm


def _rules(case, data):
    """Several different Γ for the same state: zero, online-PCA, Oja, random smooth, random."""
    m, n = case.W.shape
    spec = {"rank": case.P.shape[1], "side": "left" if case.side == LEFT else "right"}
    named = [make_rule("constant", **spec), make_rule("online_pca", alpha=3.0, pca_lambda=0.1, **spec),
             make_rule("oja", **spec), make_rule("random_smooth", coef_seed=data.draw(st.integers(0, 99)), **spec)]
    out = [r.bind((m, n)).rate(0.0, case.P, case.G) for r in named]
    out.append(data.draw(bases(*case.P.shape)))
    return out


@settings(max_examples=12)   # 5 rules per case: 60 evaluations of dH/dt
@given(data=st.data())
def test_dHdt_independent_of_Pdot(data):
    """Same state, different projection dynamics Γ: dH/dt identical (and = −Δ)."""
    case = data.draw(hd_cases(system=data.draw(st.sampled_from([s for s in SYSTEMS if s not in FULL_RANK]))))
    rates = _rules(case, data)
    assert len({tuple(r.shape) for r in rates}) == 1
    assert any(bool(r.abs().sum() > 0) for r in rates)        # the rules really move P
    assert grad_H(case)[1] is None                            # ∂H/∂P ≡ 0: H is not a function of P
    values = [float(autodiff_dHdt(case, r)) for r in rates]
    assert max(values) - min(values) <= 1e-12 * max(1.0, max(abs(v) for v in values)), values
    assert abs(values[0] + float(_delta(case))) <= _tol(case.system) * _scale(case, _delta(case))


def test_P_need_not_be_orthonormal():
    """The identity uses adjointness only: a far-from-orthonormal P (PᵀP = 9I + …) still gives it."""
    case_sys = make_system("heavy_ball", a=2.0)
    problem = make_problem("quadratic", m=4, n=5, seed=1)
    W = problem.initial_point()
    P = 3.0 * torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    S = (torch.randn(2, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64),)
    case = HDCase(case_sys, problem, LEFT, W, P, S, 0.0)
    assert float((P.mT @ P - torch.eye(2, dtype=torch.float64)).norm()) > 1.0
    dH = autodiff_dHdt(case, torch.ones_like(P))
    assert abs(float(dH + _delta(case))) <= 1e-9 * _scale(case, _delta(case))
    # and Δ = ‖M‖² there, independently of P
    assert torch.allclose(_delta(case), S[0].pow(2).sum(), rtol=1e-14)


def test_right_side_is_left_side_of_transpose():
    """project(P, G, RIGHT) = project(P, Gᵀ, LEFT)ᵀ: the two sides are one formula."""
    g = torch.Generator().manual_seed(3)
    G = torch.randn(3, 5, generator=g, dtype=torch.float64)
    P = torch.randn(5, 2, generator=g, dtype=torch.float64)
    assert torch.allclose(project(P, G, RIGHT), project(P, G.mT, LEFT).mT, rtol=1e-15, atol=0)
