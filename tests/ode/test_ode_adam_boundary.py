"""Lyapunov boundaries located by autodiff dH/dt at sampled states (THEORY.md §3.2–3.3, claim C2).

Adam's b ≤ 4a, Lion-𝒦's 0 < b < 1 and Lion-𝒦-with-weight-decay's εγ ≤ 1: below the boundary no
sampled state has dH/dt > 0, above it some does, and each system's own ``condition()`` switches
at the boundary the autodiff locates. A condition moved off the boundary is caught.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ode import claims
from ode.claims import (BOUNDARIES, HDOT_POSITIVE, adam_boundary, condition_boundary, located_boundary,
                        worst_relative_hdot)

BELOW_ABOVE = {"adam": ((0.5, 3.99), (4.05, 32.0)), "lion_k": ((0.3, 0.99), (1.01, 2.7)),
               "lion_k_wd": ((0.25, 0.99), (1.01, 4.0))}


@settings(max_examples=12)
@given(data=st.data(), name=st.sampled_from(sorted(BELOW_ABOVE)))
def test_H_non_increasing_below_and_rising_above(data, name):
    (lo0, lo1), (hi0, hi1) = BELOW_ABOVE[name]
    below = data.draw(st.floats(lo0, lo1), label="below")
    above = data.draw(st.floats(hi0, hi1), label="above")
    assert worst_relative_hdot(name, below, 12) <= HDOT_POSITIVE
    assert worst_relative_hdot(name, above, 12) > HDOT_POSITIVE


def test_bisection_finds_four():
    ratio, _ = adam_boundary(n_samples=16, iters=20)
    assert abs(ratio - 4.0) < 1e-3


@pytest.mark.parametrize("name", sorted(BOUNDARIES))
def test_condition_switches_where_autodiff_says(name):
    found, (stated, _) = located_boundary(name, 12, 18), condition_boundary(name)
    assert found is not None and stated is not None and abs(found - stated) <= 1e-3 * stated, (found, stated)


def test_a_condition_off_the_boundary_is_caught(monkeypatch):
    """A planted `b <= 4.5a` in Adam's condition: the located and stated boundaries disagree."""
    from osd_theory.hd.adam import Adam
    from osd_theory.hd.base import Condition
    monkeypatch.setattr(Adam, "condition", lambda self: Condition(self.b <= 4.5 * self.a, "b <= 4.5a"))
    found, (stated, _) = located_boundary("adam", 12, 18), condition_boundary("adam")
    assert abs(stated - 4.5) < 1e-6 and abs(found - 4.0) < 1e-2
    assert claims.BOUNDARY_RTOL * stated < abs(found - stated)
