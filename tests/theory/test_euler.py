"""One discrete step = one Euler step of the field (DESIGN.md, "one vector field, two users").

``euler_state_`` (the in-place ``lerp`` the discrete optimizers call) must equal
``S + h·state_rate(S, ĝ)``; for Adam with h = lr, a = (1−β₁)/lr, b = (1−β₂)/lr it must
be the EMA updates of torch's Adam. Tolerance: lerp and the explicit sum round
differently; both are a handful of float64 operations on O(1)–O(10) numbers, so
1e-12 relative (to max(1, |S|)) is ~10⁴ ε.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from osd_theory.hd import Adam
from osd_theory.kernels import project

from osd_theory.testing import SYSTEMS, floats_in, hd_cases

RTOL = 1e-12


def _close(a, b):
    return bool(((a - b).abs() <= RTOL * torch.maximum(torch.ones_like(a), a.abs())).all())


@pytest.mark.parametrize("name", SYSTEMS)
@settings(max_examples=5)
@given(data=st.data(), h=floats_in(1e-4, 0.5))
def test_euler_state_equals_explicit_euler(name, data, h):
    case = data.draw(hd_cases(system=name))
    sys_ = case.system
    g_hat = project(case.P, case.G, case.side)
    expected = [s + h * r for s, r in zip(case.S, sys_.state_rate(case.t, case.S, g_hat))]
    S = [s.clone() for s in case.S]
    sys_.euler_state_(S, g_hat, h, t=case.t)
    # expected comes from state_rate independently, so a no-op euler_state_ fails here
    for got, want in zip(S, expected):
        assert _close(got, want), f"{sys_.describe()}: max diff {float((got - want).abs().max()):.3e}"


@settings(max_examples=15)
@given(lr=floats_in(1e-4, 1e-1), beta1=floats_in(0.0, 0.999), beta2=floats_in(0.0, 0.9999), shape=st.tuples(
    st.integers(1, 6), st.integers(1, 6)), seed=st.integers(0, 2**31 - 1))
def test_adam_euler_step_is_the_ema(lr, beta1, beta2, shape, seed):
    """m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²: the Euler step of size lr of the Adam field."""
    sys_ = Adam.from_discrete(lr=lr, beta1=beta1, beta2=beta2, eps=1e-8)
    g = torch.Generator().manual_seed(seed)
    grad = torch.randn(shape, generator=g, dtype=torch.float64)
    m = torch.randn(shape, generator=g, dtype=torch.float64)
    v = torch.rand(shape, generator=g, dtype=torch.float64) + 1e-3
    S = [m.clone(), v.clone()]
    sys_.euler_state_(S, grad, lr)
    assert _close(S[0], beta1 * m + (1 - beta1) * grad)
    assert _close(S[1], beta2 * v + (1 - beta2) * grad * grad)


def test_lion_k_wd_euler_step_with_zero_gamma():
    """Regression: with γ = 0 the relaxation rate is 0, and the lerp step was a no-op
    although ṁ = −αĝ ≠ 0 (fixed by LionKWeightDecay.euler_state_)."""
    from osd_theory.hd import make_system
    sys_ = make_system("lion_k_wd", alpha=2.0, gamma=0.0, eps=0.5, wd=1.0)
    g = torch.tensor([[1.0, -3.0]], dtype=torch.float64)
    S = [torch.zeros(1, 2, dtype=torch.float64)]
    sys_.euler_state_(S, g, 0.25)
    assert torch.equal(S[0], -0.25 * 2.0 * g)
