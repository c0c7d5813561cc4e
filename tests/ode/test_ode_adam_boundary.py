"""Adam's Lyapunov boundary b ≤ 4a (THEORY.md §3.2), from autodiff dH/dt at sampled states."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ode.claims import _adam_states, adam_boundary, worst_adam_hdot

PROBLEM, STATES = _adam_states(16)


@settings(max_examples=30)
@given(ratio=st.floats(0.5, 4.0))
def test_adam_H_non_increasing_below_boundary(ratio):
    # relative tolerance 1e-12 of Σ m²/(√v+e): rounding of the AD sum, nothing more
    assert worst_adam_hdot(ratio, PROBLEM, STATES) <= 1e-12


@settings(max_examples=30)
@given(ratio=st.floats(4.05, 32.0))
def test_adam_H_increases_somewhere_above_boundary(ratio):
    # states with g ≈ 0 and v ≫ e²: dH/dt ≈ (b/4a − 1) Σ m²/(√v+e) > 0
    assert worst_adam_hdot(ratio, PROBLEM, STATES) > 1e-3 * (ratio / 4 - 1)


def test_bisection_finds_four():
    ratio, _ = adam_boundary(n_samples=16, iters=20)
    assert abs(ratio - 4.0) < 1e-3
