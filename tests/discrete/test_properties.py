"""Hypothesis properties of the subspace optimizers (bounded strategies, STYLE.md §2.8)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings, strategies as st

from discrete import RSO, AdamW, GaLore, OnlineSubspaceDescent
from discrete.state import side_of
from osd_theory.kernels import LEFT, RIGHT, orthogonality_defect

CLASSES = {"osd": OnlineSubspaceDescent, "galore": GaLore, "rso": RSO}


@st.composite
def spectral_matrix(draw, m, n, seed_max=10_000):
    """G = U diag(s) Vᵀ with a controlled, non-degenerate spectrum in [1e-2, 1]."""
    seed = draw(st.integers(0, seed_max))
    g = torch.Generator().manual_seed(seed)
    k = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -2, k, dtype=torch.float64)
    return ((U * s) @ V.mT).float()


@st.composite
def problem(draw):
    m = draw(st.integers(2, 24))
    n = draw(st.integers(2, 24))
    r = draw(st.integers(1, min(m, n)))
    proj_type = draw(st.sampled_from(["std", "reverse_std", "left", "right"]))
    return m, n, r, proj_type


@settings(max_examples=40)
@given(problem(), st.sampled_from(sorted(CLASSES)), st.data())
@example((5, 5, 5, "std"), "osd", None)       # square, full rank: std projects the right side as galore-torch
def test_projected_state_is_r_sized(prob, name, data):
    m, n, r, proj_type = prob
    W = torch.nn.Parameter(torch.randn(m, n))
    opt = CLASSES[name]([{"params": [W], "rank": r, "proj_type": proj_type}], lr=1e-3)
    W.grad = data.draw(spectral_matrix(m, n)) if data is not None else torch.randn(m, n)
    opt.step()
    s = opt.state[W]
    side = side_of(proj_type, W.shape)
    assert s["proj_side"] == side
    assert s["proj"].shape == ((m, r) if side == LEFT else (n, r))
    assert s["exp_avg"].shape == ((r, n) if side == LEFT else (m, r))
    assert all(v.dtype == torch.float32 for k, v in s.items() if torch.is_tensor(v) and k != "step")


@settings(max_examples=15)
@given(st.integers(4, 16), st.integers(4, 16), st.data())
def test_osd_basis_returns_to_orthonormal_under_lambda(m, n, data):
    """P scaled off the Stiefel manifold (×1.3) returns: ‖PᵀP − I‖_F at least halves within 100 steps."""
    r = data.draw(st.integers(1, min(m, n)))
    lam = data.draw(st.sampled_from([0.1, 1.0]))
    W = torch.nn.Parameter(torch.zeros(m, n))
    opt = OnlineSubspaceDescent([{"params": [W], "rank": r, "pca_lambda": lam, "proj_init": "random"}], lr=1e-3)
    W.grad = data.draw(spectral_matrix(m, n))
    opt.step()
    opt.state[W]["proj"].mul_(1.3)
    start = float(orthogonality_defect(opt.state[W]["proj"]))
    for _ in range(100):
        W.grad = data.draw(spectral_matrix(m, n))
        opt.step()
    assert float(orthogonality_defect(opt.state[W]["proj"])) < 0.5 * start


@settings(max_examples=10)
@given(st.integers(4, 16), st.integers(4, 16), st.data())
def test_osd_small_p_steps_stay_near_orthonormal(m, n, data):
    """From an orthonormal P₀ and a small P step (α·lr = 5e-4), ‖PᵀP − I‖_F stays below 0.05 over 40 steps."""
    r = data.draw(st.integers(1, min(m, n)))
    W = torch.nn.Parameter(torch.zeros(m, n))
    opt = OnlineSubspaceDescent([{"params": [W], "rank": r, "pca_lambda": 0.1, "proj_init": "random"}], lr=1e-4)
    worst = 0.0
    for _ in range(40):
        W.grad = data.draw(spectral_matrix(m, n))
        opt.step()
        worst = max(worst, float(orthogonality_defect(opt.state[W]["proj"])))
    assert worst < 0.05


@settings(max_examples=15)
@given(st.integers(2, 8), st.integers(2, 8), st.integers(0, 1000))
def test_full_rank_signed_permutation_reproduces_adamw(m, n, seed):
    g = torch.Generator().manual_seed(seed)
    W0 = torch.randn(m, n, generator=g)
    d = min(m, n)
    side = LEFT if m <= n else RIGHT
    P = torch.eye(d)[:, torch.randperm(d, generator=g)] * torch.where(torch.rand(d, generator=g) < 0.5, -1.0, 1.0)
    A, B = torch.nn.Parameter(W0.clone()), torch.nn.Parameter(W0.clone())
    osd = OnlineSubspaceDescent([{"params": [A], "rank": d, "proj_type": ["left", "right"][side], "alpha": 0.0}], lr=1e-2)
    osd.state[A] = {"step": torch.zeros(()), "proj": P, "proj_side": side, "last_refresh_step": 0,
                    "exp_avg": torch.zeros(m, n), "exp_avg_sq": torch.zeros(m, n),
                    "proj_exp_avg": torch.zeros(d, d), "proj_exp_avg_sq": torch.zeros(d, d)}
    ref = AdamW([B], lr=1e-2, weight_decay=0.0)              # OSD's default decay is 0
    for _ in range(10):
        G = torch.randn(m, n, generator=g)
        A.grad, B.grad = G.clone(), G.clone()
        osd.step()
        ref.step()
    assert (A - B).abs().max() <= 1e-5


@settings(max_examples=15)
@given(st.integers(3, 16), st.integers(3, 16), st.data())
def test_galore_refreshes_exactly_every_gap(m, n, data):
    gap = data.draw(st.integers(1, 5))
    W = torch.nn.Parameter(torch.zeros(m, n))
    opt = GaLore([{"params": [W], "rank": 1, "update_proj_gap": gap}], lr=1e-3)
    refreshed = []
    for t in range(12):
        W.grad = data.draw(spectral_matrix(m, n))
        opt.step()
        refreshed.append(opt.diagnostics.get("refreshes", 0))
    assert refreshed == [1 if t % gap == 0 else 0 for t in range(12)]
    assert opt.state[W]["last_refresh_step"] == 11 - (11 % gap)
