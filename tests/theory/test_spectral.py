"""Spectral 𝒦 (osd_theory.convex) and Muon as spectral Lion-𝒦 (osd_theory.hd.spectral).

Tolerances. float64 throughout. Autodiff of 𝒦 through ``svdvals`` and the closed form U φ'(Σ) Vᵀ
are two roundings of the same number: 1e-10 relative. Central differences with step 1e-6 on O(1)
entries: truncation ~1e-12·|𝒦'''|, rounding ~ε|𝒦|/1e-6 ≈ 1e-10: compared at 1e-7.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from osd_theory.convex import SpectralK, make_convex
from osd_theory.errors import UserError
from osd_theory.hd import make_system
from osd_theory.hd.spectral import (NS_COEFFICIENTS, Muon, MuonWeightDecay, newton_schulz, polar, polar_gap)
from osd_theory.kernels import random_basis

from osd_theory.testing.strategies import SPECTRAL_FNS, floats_in

DT = torch.float64
SMOOTH = ("spectral_tanh", "spectral_pseudo_huber")


def _with_spectrum(s, m, n, seed=0) -> torch.Tensor:
    """U diag(s) Vᵀ with Haar U (m, r), V (n, r), r = len(s)."""
    g = torch.Generator().manual_seed(seed)
    U, V = random_basis(m, len(s), generator=g, dtype=DT), random_basis(n, len(s), generator=g, dtype=DT)
    return (U * torch.tensor(s, dtype=DT)) @ V.mT


def _fd_grad(f, Z, h=1e-6):
    out = torch.zeros_like(Z)
    for idx in range(Z.numel()):
        E = torch.zeros(Z.numel(), dtype=DT)
        E[idx] = h
        E = E.reshape(Z.shape)
        out.view(-1)[idx] = (f(Z + E) - f(Z - E)) / (2 * h)
    return out


SPECTRA = {"generic": [2.0, 1.1, 0.4], "repeated": [1.5, 1.5, 0.7], "all equal": [0.9, 0.9, 0.9],
           "rank deficient": [1.3, 0.0, 0.0], "tiny": [1e-3, 5e-4, 2e-4]}


def test_spectral_fns_are_registered():
    assert set(SPECTRAL_FNS) == {"spectral_l2", "spectral_tanh", "spectral_pseudo_huber"}
    assert all(isinstance(make_convex(n), SpectralK) for n in SPECTRAL_FNS)


@pytest.mark.parametrize("name", SPECTRAL_FNS)
@pytest.mark.parametrize("spectrum", sorted(SPECTRA))
def test_gradient_matches_autodiff_and_finite_differences(name, spectrum):
    K = make_convex(name, 0.3)
    Z = _with_spectrum(SPECTRA[spectrum], 3, 5, seed=len(spectrum))
    G = K.grad(Z)
    Zr = Z.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(K.value(Zr), Zr)
    fd = _fd_grad(K.value, Z)
    assert torch.allclose(G, auto, rtol=1e-10, atol=1e-12), float((G - auto).abs().max())
    assert torch.allclose(G, fd, rtol=1e-7, atol=1e-8), float((G - fd).abs().max())


@pytest.mark.parametrize("name", SPECTRAL_FNS)
def test_conjugate_gradient_matches_finite_differences_inside_the_ball(name):
    K = make_convex(name, 0.2)
    Y = _with_spectrum([0.8, 0.8, 0.3], 4, 3, seed=1)          # repeated, ‖Y‖₂ = 0.8 < 1
    assert torch.allclose(K.conj_grad(Y), _fd_grad(K.conj, Y), rtol=1e-7, atol=1e-8)


def test_pseudo_huber_gradient_is_the_matrix_function():
    """Independent of the SVD: ∇Σ(√(σ²+δ²) − δ) = Z(ZᵀZ + δ²I)^{-1/2} (eigendecomposition of ZᵀZ)."""
    d = 0.3
    Z = torch.randn(4, 6, generator=torch.Generator().manual_seed(2), dtype=DT)
    w, Q = torch.linalg.eigh(Z.mT @ Z + d * d * torch.eye(6, dtype=DT))
    ref = Z @ (Q * w.rsqrt()) @ Q.mT
    assert torch.allclose(make_convex("spectral_pseudo_huber", d).grad(Z), ref, rtol=1e-12, atol=1e-13)
    assert torch.allclose(make_convex("spectral_l2").grad(Z), Z)


@pytest.mark.parametrize("name", SPECTRAL_FNS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), theta=floats_in(0.0, 1.0), delta=floats_in(0.3, 1.0))
def test_convex_orthogonally_invariant_and_fenchel_young(name, seed, theta, delta):
    """σ/δ ≤ ~6 here: beyond, tanh(σ/δ) rounds towards 1 and (∇𝒦*) = δ·atanh loses the digits back."""
    K = make_convex(name, delta)
    g = torch.Generator().manual_seed(seed)
    X, Y = 0.5 * torch.randn(3, 4, generator=g, dtype=DT), 0.5 * torch.randn(3, 4, generator=g, dtype=DT)
    mix = K.value(theta * X + (1 - theta) * Y)
    assert mix <= theta * K.value(X) + (1 - theta) * K.value(Y) + 1e-12 * (1 + abs(float(mix)))
    assert float(((K.grad(X) - K.grad(Y)) * (X - Y)).sum()) >= -1e-12          # monotone gradient
    Q, R = random_basis(3, 3, generator=g, dtype=DT), random_basis(4, 4, generator=g, dtype=DT)
    assert torch.allclose(K.value(Q @ X @ R), K.value(X), rtol=1e-12)
    # Fenchel–Young with equality at Y = ∇𝒦(X), and (∇𝒦*)(∇𝒦(X)) = X
    Gx = K.grad(X)
    assert math.isclose(float(K.value(X) + K.conj(Gx)), float((X * Gx).sum()), rel_tol=1e-9, abs_tol=1e-9)
    assert torch.allclose(K.conj_grad(Gx), X, rtol=1e-6, atol=1e-8)


def test_elementwise_is_not_spectral():
    """A planted confusion (elementwise tanh for the spectral one) is visible: not orthogonally invariant."""
    X = _with_spectrum([2.0, 1.0], 3, 3)
    Q = random_basis(3, 3, generator=torch.Generator().manual_seed(5), dtype=DT)
    el, sp = make_convex("tanh", 0.3), make_convex("spectral_tanh", 0.3)
    assert not math.isclose(float(el.value(Q @ X)), float(el.value(X)), rel_tol=1e-6)
    assert math.isclose(float(sp.value(Q @ X)), float(sp.value(X)), rel_tol=1e-12)


def test_spectral_k_rejects_a_vector():
    with pytest.raises(UserError, match="matrix"):
        make_convex("spectral_tanh").grad(torch.ones(3, dtype=DT))


# -- δ → 0: the polar factor, and Newton–Schulz's distance to it ----------------------------
@pytest.mark.parametrize("name", SMOOTH)
def test_gradient_tends_to_the_polar_factor(name):
    """‖∇𝒦_δ − UVᵀ‖_F per the scalar gap: tanh 1 − tanh(σ/δ), pseudo-Huber 1 − σ/√(σ²+δ²)."""
    s = torch.tensor([2.0, 1.0, 0.5], dtype=DT)
    Z = _with_spectrum(s.tolist(), 4, 6, seed=3)
    gaps = [polar_gap(Z, name, d) for d in (0.3, 0.1, 0.03)]
    phi = make_convex(name[len("spectral_"):], 1.0)
    for d, gap in zip((0.3, 0.1, 0.03), gaps):
        want = float(torch.linalg.vector_norm(1 - type(phi)(delta=d).grad(s)))
        assert math.isclose(gap, want, rel_tol=1e-8, abs_tol=1e-13)
    assert gaps[0] > gaps[1] > gaps[2]


def test_polar_is_the_nuclear_norm_gradient_and_zero_on_the_kernel():
    Z = _with_spectrum([1.3, 0.6], 3, 4, seed=4)                # rank 2 of 3: the third σ is round-off
    O = polar(Z)
    assert torch.allclose(torch.linalg.svdvals(O), torch.tensor([1.0, 1.0, 0.0], dtype=DT), atol=1e-12)
    assert torch.allclose(O @ O.mT @ Z, Z, atol=1e-12)            # a partial isometry on Z's range
    Zf = _with_spectrum([1.3, 0.6, 0.2], 3, 4, seed=4)            # full rank: ‖·‖_* is differentiable there
    Zr = Zf.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(torch.linalg.svdvals(Zr).sum(), Zr)
    assert torch.allclose(polar(Zf), auto, atol=1e-10)


def test_newton_schulz_is_torchs_and_not_the_polar_factor():
    """Bit-equal to torch.optim.Muon's iteration; its singular values lie in a band around 1, not at 1.

    Measured on Gaussian 32×64, 64×32, 16×16: NS5's singular values in [0.68, 1.14], ‖NS5 − UVᵀ‖_F ≈
    0.18–0.22·√min(m, n); the smooth field at δ = 0.01 is within 3e-9 of UVᵀ (tanh) on the same matrices.
    """
    from torch.optim._muon import _zeropower_via_newtonschulz as torch_ns
    g = torch.Generator().manual_seed(0)
    for shape in ((32, 64), (64, 32), (16, 16)):
        X = torch.randn(*shape, generator=g)
        O = newton_schulz(X)
        assert torch.equal(O, torch_ns(X, NS_COEFFICIENTS, 5, 1e-7))
        sv = torch.linalg.svdvals(O.double())
        assert 0.6 < float(sv.min()) < 0.75 and 1.0 < float(sv.max()) < 1.2, sv
        rel = float(torch.linalg.matrix_norm(O.double() - polar(X.double()))) / math.sqrt(min(shape))
        assert 0.1 < rel < 0.3
        assert polar_gap(X.double(), "spectral_tanh", 0.01) < 1e-8


def test_newton_schulz_scalar_map_is_not_monotone():
    """NS5 acts on each singular value by a quintic composed five times; it is not non-decreasing on
    (0, 1], so NS-Muon is the gradient of no convex spectral 𝒦 (the exact SVD step is: ∇‖·‖_*)."""
    s = torch.linspace(1e-3, 1.0, 2001, dtype=DT)
    a, b, c = NS_COEFFICIENTS
    x = s.clone()
    for _ in range(5):
        x = a * x + b * x**3 + c * x**5
    assert bool((x.diff() < 0).any()) and float(x.min()) > 0


# -- the HD systems ------------------------------------------------------------------------
def test_muon_systems_take_only_a_spectral_k():
    for name in ("muon", "muon_wd"):
        with pytest.raises(UserError, match="spectral"):
            make_system(name, kinetic_fn="tanh")
        assert isinstance(make_system(name).K, SpectralK)


def test_from_discrete_maps_torch_muon_settings():
    """Nesterov: β₁ = μ², β₂ = μ, so a = (1−μ)/(lr·s), b = 1 − μ²; without: b = 1 − μ."""
    m = Muon.from_discrete(lr=0.02, momentum=0.95, nesterov=True, lr_scale=2.0)
    assert math.isclose(m.a, 0.05 / 0.04) and math.isclose(m.b, 1 - 0.95**2)
    assert math.isclose(Muon.from_discrete(lr=0.02, momentum=0.95, nesterov=False).b, 0.05)
    w = MuonWeightDecay.from_discrete(lr=0.02, momentum=0.9, weight_decay=0.1, lr_scale=2.0)
    assert math.isclose(w.wd, 0.05) and math.isclose(w.eps * w.gamma, 1 - 0.81)


@pytest.mark.parametrize("name", ("muon", "muon_wd"))
def test_lyapunov_identity_at_repeated_singular_values(name):
    """dH/dt (autodiff over W and M) = −Δ when the look-ahead and M have repeated singular values."""
    from osd_theory.problems import make_problem
    sys_ = make_system(name, **({"a": 1.3, "b": 0.2} if name == "muon" else {"wd": 0.5}))
    prob = make_problem("quadratic", 3, 4, 0)
    M = _with_spectrum([0.7, 0.7, 0.2], 3, 4, seed=6)
    W = 0.9 * _with_spectrum([1.0, 1.0, 0.5], 3, 4, seed=7) / (sys_.wd if name == "muon_wd" else 1.0)
    G = prob.grad(W)
    Wr, Mr = W.clone().requires_grad_(True), M.clone().requires_grad_(True)
    H = sys_.hamiltonian(0.0, prob.loss(Wr), (Mr,), Wr)
    gW, gM = torch.autograd.grad(H, (Wr, Mr))
    Wdot = sys_.direction(0.0, (M,), G, W) - sys_.weight_decay * W
    (Mdot,) = sys_.state_rate(0.0, (M,), G)
    dH = float((gW * Wdot).sum() + (gM * Mdot).sum())
    Delta = float(sys_.dissipation(0.0, (M,), G, W))
    assert Delta >= 0 and math.isclose(dH, -Delta, rel_tol=1e-9, abs_tol=1e-10)


# -- the symbolic proof with a non-separable 𝒦 (osd_theory.symbolic.spectral) ---------------
def test_symbolic_proof_for_a_matrix_k_closes_and_falls_back_numerically():
    from osd_theory.symbolic import prove
    for name in ("muon", "muon_wd"):
        r = prove(name, link=False)
        assert r.method == "symbolic" and r.identity_holds and r.independent_of_Pdot, r.detail
    r = prove("muon", force_numeric=True, link=False)            # the numpy-SVD spectral tanh at random points
    assert r.method == "numeric" and r.identity_holds, r.detail


def test_symbolic_proof_for_a_matrix_k_can_fail():
    """Planted: Δ without its [0; (1−b)M] bracket (rejected by the proof), and a flipped look-ahead
    (−bĝ → +bĝ; rejected by the proof and by the link to the torch code)."""
    from osd_theory.symbolic import prove
    from osd_theory.symbolic.link import link_to_code
    from osd_theory.symbolic.spectral import K_grad, Muon as MuonSym

    class DroppedBracket(MuonSym):
        def dissipation(self, h, S, g, W):
            return (h.a / h.b) * self.bracket((1 - h.b) * S[0], -h.b * g)

    class FlippedLookAhead(MuonSym):
        def direction(self, h, S, g, W):
            return K_grad((1 - h.b) * S[0] + h.b * g)

    assert not prove(DroppedBracket(), link=False).identity_holds
    assert not prove(FlippedLookAhead(), link=False).identity_holds
    assert not link_to_code(FlippedLookAhead()).ok
