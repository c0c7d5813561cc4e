"""Per-matrix kernels and projection rules: online-PCA gradient, its flow, bases, rule shapes.

Tolerances: the two-pass closed form and autograd of 𝓛_G differ only in rounding of
O(‖P‖²)-sized products (P entries ≤ ~10): 1e-10 relative to max(1, max|∇|) is ~10⁵ ε.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from osd_theory.kernels import (LEFT, RIGHT, basis_dim, online_pca_grad, online_pca_loss, orthogonality_defect,
                                project, random_basis)
from osd_theory.projections import PROJECTIONS, make_rule

from osd_theory.testing import floats_in, bases, dims, spectrum_matrix

DT = torch.float64


def _autograd_pca(P, G, lam, side):
    P = P.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(online_pca_loss(P, G, lam, side), P)
    return g


@settings(max_examples=25)
@given(data=st.data(), side=st.sampled_from([LEFT, RIGHT]), lam=st.one_of(st.just(0.0), floats_in(0.0, 1.0)),
       pass_g_hat=st.booleans())
def test_online_pca_closed_form_equals_autograd(data, side, lam, pass_g_hat):
    m, n = data.draw(dims())
    G = data.draw(spectrum_matrix(m, n))
    r = data.draw(st.integers(1, min(m, n)))
    P = data.draw(bases(basis_dim((m, n), side), r))
    g_hat = project(P, G, side) if pass_g_hat else None
    closed, auto = online_pca_grad(P, G, lam, side, G_hat=g_hat), _autograd_pca(P, G, lam, side)
    assert closed.shape == P.shape
    assert float((closed - auto).abs().max()) <= 1e-10 * max(1.0, float(auto.abs().max()))


@settings(max_examples=5)
@given(data=st.data(), side=st.sampled_from([LEFT, RIGHT]), lam=floats_in(0.0, 1.0))
def test_online_pca_zero_gradient_only_orthogonality_term(data, side, lam):
    """G = 0 has no direction: ∇ = 4λP(PᵀP − I) exactly, no NaN from G/‖G‖."""
    m, n = data.draw(dims())
    G = torch.zeros(m, n, dtype=DT)
    P = data.draw(bases(basis_dim((m, n), side), data.draw(st.integers(1, min(m, n)))))
    eye = torch.eye(P.shape[1], dtype=DT)
    grad = online_pca_grad(P, G, lam, side, G_hat=project(P, G, side))
    assert bool(torch.isfinite(grad).all())
    expected = 4 * lam * (P @ (P.mT @ P - eye))
    # same formula, rounding of O(‖P‖³) products only
    assert float((grad - expected).abs().max()) <= 1e-13 * max(1.0, float(expected.abs().max()))
    loss = online_pca_loss(P, G, lam, side)
    assert bool(torch.isfinite(loss)) and float((_autograd_pca(P, G, lam, side) - grad).abs().max()) <= 1e-12 * max(1.0, float(grad.abs().max()))


@settings(max_examples=10)
@given(data=st.data(), side=st.sampled_from([LEFT, RIGHT]), lam=floats_in(0.05, 1.0), jitter=floats_in(1e-4, 3e-2))
def test_online_pca_flow_keeps_P_near_orthonormal(data, side, lam, jitter):
    """Euler on Ṗ = −∇𝓛_G from a near-orthonormal P₀: ‖PᵀP − I‖ stays near its start.

    At PᵀP = I the fit term's flow is tangent to the Stiefel manifold (d(PᵀP)/dt =
    −4(AAᵀ − PᵀG̃G̃ᵀP) = 0), so only the λ term (which pulls to I) and Euler's O(h²)
    per-step drift move the defect: allow 1.5·d₀ + 10h² (h = 0.05, ‖∇‖ ≲ 1 near I)
    along the way and d₀ + h² at the end."""
    m, n = data.draw(dims(min_dim=2))
    G = data.draw(spectrum_matrix(m, n))
    dim = basis_dim((m, n), side)
    r = data.draw(st.integers(1, min(m, n)))
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    P = random_basis(dim, r, generator=g) + jitter * torch.randn(dim, r, generator=g, dtype=DT)
    d0 = float(orthogonality_defect(P))
    worst = 0.0
    h = 0.05               # below 2/Lipschitz (≈ 2/(6 + 12λ)) for ‖G̃‖ = 1, ‖P‖ ≈ 1
    for _ in range(100):
        P = P - h * online_pca_grad(P, G, lam, side)
        worst = max(worst, float(orthogonality_defect(P)))
    assert worst <= 1.5 * d0 + 10 * h * h
    assert float(orthogonality_defect(P)) <= d0 + h * h


@settings(max_examples=10)
@given(shape=dims(), seed=st.integers(0, 2**31 - 1))
def test_random_basis_haar_is_orthonormal(shape, seed):
    dim, r = max(shape), min(shape)
    P = random_basis(dim, r, generator=torch.Generator().manual_seed(seed))
    assert P.shape == (dim, r)
    assert float(orthogonality_defect(P)) <= 1e-13 * max(1, r)
    Q = random_basis(dim, r, generator=torch.Generator().manual_seed(seed), distribution="gaussian")
    assert Q.shape == (dim, r) and bool(torch.isfinite(Q).all())


RULE_OPTIONS = {"identity": {}, "random_jump": {"tau": 0.3}, "periodic_svd": {"tau": 0.3},
                "online_pca_refresh": {"tau": 0.3}}


@pytest.mark.parametrize("name", PROJECTIONS.names())
@settings(max_examples=3)
@given(data=st.data(), side=st.sampled_from(["left", "right", "auto"]), zero_grad=st.booleans())
def test_projection_rules_shapes_finite_and_jump_times(name, data, side, zero_grad):
    m, n = data.draw(dims())
    G = torch.zeros(m, n, dtype=DT) if zero_grad else data.draw(spectrum_matrix(m, n))
    r = data.draw(st.integers(1, min(m, n)))
    opts = {"side": side, **RULE_OPTIONS.get(name, {})}
    if name != "identity":
        opts["rank"] = r
    rule = make_rule(name, **opts).bind((m, n))
    dim, r = rule.dim, rule.rank
    P0 = rule.initial(G)
    assert P0.shape == (dim, r) and bool(torch.isfinite(P0).all())
    rate = rule.rate(0.5, P0, G)
    assert rate.shape == P0.shape and bool(torch.isfinite(rate).all())
    if not rule.smooth:
        assert bool((rate == 0).all())                           # jump / constant rules do not flow
    t0, t1 = data.draw(floats_in(0.0, 2.0)), data.draw(floats_in(2.01, 4.0))
    times = rule.jump_times(t0, t1)
    assert all(t0 < t < t1 for t in times) and times == sorted(times)
    if rule.jumps:
        assert len(times) >= int((t1 - t0) / 0.3) - 1          # period 0.3 over (t0, t1)
        P1 = rule.jump(times[0], P0, G)
        assert P1.shape == P0.shape and bool(torch.isfinite(P1).all())
    else:
        assert times == []


@pytest.mark.parametrize("batch", [(), (3,)])
def test_gram_float32_split_equals_float64(batch):
    """The 3×TF32 split of PᵀP (used on CUDA under TF32) reproduces the float64 Gram to float32 accuracy.

    On the CPU the three products are float32, so this checks the split's algebra (hi + lo = P, the
    cross terms and their transpose): a wrong mask, sign or missing term errs by ≥ 1e-4 relative.
    """
    from osd_theory.kernels import gram_float32
    g = torch.Generator().manual_seed(0)
    P = torch.randn(*batch, 40, 6, generator=g, dtype=torch.float32)
    ref = P.double().mT @ P.double()
    got = gram_float32(P, split=True)
    assert float((got.double() - ref).norm() / ref.norm()) < 2e-6


@pytest.mark.parametrize("batch", [(), (3,)])
def test_mtm_float32_split_equals_float64(batch):
    """The same split on both factors of AᵀB (the moment transport's P_newᵀP_old): float32 accuracy, and
    each ``hi`` part exact in TF32 (its 13 low mantissa bits zero), which is what makes the split work there."""
    from osd_theory.kernels import _tf32_split, mtm_float32
    g = torch.Generator().manual_seed(1)
    A = torch.randn(*batch, 40, 6, generator=g, dtype=torch.float32)
    B = torch.randn(*batch, 40, 5, generator=g, dtype=torch.float32)
    ref = A.double().mT @ B.double()
    got = mtm_float32(A, B, split=True)
    assert got.shape == ref.shape
    assert float((got.double() - ref).norm() / ref.norm()) < 2e-6
    hi, lo = _tf32_split(A)
    assert torch.equal(hi + lo, A) and int((hi.view(torch.int32) & 8191).abs().max()) == 0


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_seeded_haar_basis_is_the_same_draw_wherever_it_is_factored(device):
    """The Gaussian comes from the (CPU) generator, the QR runs on ``device``: one seeded basis everywhere."""
    from osd_theory.kernels import random_basis

    ref = random_basis(40, 6, generator=torch.Generator().manual_seed(3))
    got = random_basis(40, 6, generator=torch.Generator().manual_seed(3), device=device)
    assert got.device.type == device
    assert torch.allclose(got.cpu(), ref, atol=1e-12)
    assert torch.allclose(ref.mT @ ref, torch.eye(6, dtype=ref.dtype), atol=1e-12)
    other = random_basis(40, 6, generator=torch.Generator().manual_seed(4), device=device)
    assert not torch.allclose(other.cpu(), ref)
