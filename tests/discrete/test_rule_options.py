"""Options of the smooth rules' P step: retraction, moment transport (``rotate``, ``rotate_m``), the P step size's schedule.

Tolerances: float32 state; orthonormality to 1e-5 after QR; the transport and the lr checks compare
the same arithmetic done by hand (rtol 1e-5).
"""
from __future__ import annotations

import pytest
import torch

from discrete import OnlineSubspaceDescent
from osd_theory.kernels import LEFT
from osd_theory.projections import make_rule
from osd_theory.projections.base import retract_qr, tangent


def _opt(W, **kw):
    return OnlineSubspaceDescent([{"params": [W], "rank": 3, "proj_type": "left", **kw}], lr=1e-2)


def _grads(n, shape=(10, 14), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(n)]


def test_tangent_field_keeps_orthonormality_to_first_order():
    g = torch.Generator().manual_seed(1)
    P = retract_qr(torch.randn(3, 12, 4, generator=g, dtype=torch.float64))
    T = tangent(P, torch.randn(3, 12, 4, generator=g, dtype=torch.float64))
    S = P.mT @ T
    assert float((S + S.mT).abs().max()) < 1e-12              # d(PᵀP)/dt = PᵀṖ + ṖᵀP = 0
    assert torch.allclose(P.mT @ P, torch.eye(4, dtype=torch.float64).expand(3, 4, 4), atol=1e-12)


@pytest.mark.parametrize("foreach", [False, True])
def test_retract_keeps_p_orthonormal_every_step(foreach):
    W = torch.nn.Parameter(torch.randn(10, 14))
    W2 = torch.nn.Parameter(W.detach().clone())
    opt = OnlineSubspaceDescent([{"params": [W], "rank": 3, "proj_retract": True, "pca_lambda": 0.0}], lr=1e-1,
                                foreach=foreach)
    plain = OnlineSubspaceDescent([{"params": [W2], "rank": 3, "pca_lambda": 0.0}], lr=1e-1, foreach=foreach)
    for G in _grads(6):
        W.grad, W2.grad = G.clone(), G.clone()
        opt.step()
        plain.step()
        P = opt.state[W]["proj"]
        assert float((P.mT @ P - torch.eye(3)).abs().max()) < 1e-5
    Q = plain.state[W2]["proj"]
    assert float((Q.mT @ Q - torch.eye(3)).abs().max()) > 1e-3    # without it, P leaves the manifold


def test_retract_rule_continuous_face_is_tangent():
    rule = make_rule("online_pca", rank=3, retract=True, alpha=2.0).bind((10, 14))
    g = torch.Generator().manual_seed(2)
    P = retract_qr(torch.randn(10, 3, generator=g, dtype=torch.float64))
    G = torch.randn(10, 14, generator=g, dtype=torch.float64)
    Pdot = rule.rate(0.0, P, G)
    S = P.mT @ Pdot
    assert float((S + S.mT).abs().max()) < 1e-12
    assert torch.allclose(Pdot, 2.0 * tangent(P, rule.field(0.0, P, G)))


def test_rotate_transports_moments_at_every_p_step():
    W = torch.nn.Parameter(torch.randn(10, 14))
    opt = _opt(W, switch="rotate", proj_optimizer="gd", proj_init="random", alpha=50.0)   # P lr 0.5: R far from I
    G0, G1 = _grads(2)
    W.grad = G0
    opt.step()
    st = opt.state[W]
    m_before, P_before = st["exp_avg"].clone(), st["proj"].clone()
    W.grad = G1
    opt.step()
    # by hand: the inner step on Ĝ with P_before, then the P step, then m ← R m with R the least-squares
    # coordinates of span(P_before) in the new basis: min_R ‖P_new R − P_before‖_F
    m = 0.9 * m_before + 0.1 * (P_before.mT @ G1)
    R = torch.linalg.lstsq(st["proj"], P_before).solution
    torch.testing.assert_close(st["exp_avg"], R @ m, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(R @ m, m, atol=1e-4)                 # the transport did something


@pytest.mark.parametrize("side", ["left", "right"])
def test_rotate_m_transports_the_first_moment_only_at_every_p_step(side):
    W = torch.nn.Parameter(torch.randn(10, 14))
    opt = _opt(W, switch="rotate_m", proj_optimizer="gd", proj_init="random", alpha=50.0, proj_type=side)
    G0, G1 = _grads(2)
    W.grad = G0
    opt.step()
    st = opt.state[W]
    m0, v0, P0 = st["exp_avg"].clone(), st["exp_avg_sq"].clone(), st["proj"].clone()
    W.grad = G1
    opt.step()
    # by hand: the inner step on Ĝ with P0, the P step, then m ← R m (LEFT) or m Rᵀ (RIGHT), R = argmin ‖P_new R − P0‖;
    # v kept
    g_hat = P0.mT @ G1 if side == "left" else G1 @ P0
    m = 0.9 * m0 + 0.1 * g_hat
    v = 0.999 * v0 + 0.001 * g_hat * g_hat
    R = torch.linalg.lstsq(st["proj"], P0).solution
    torch.testing.assert_close(st["exp_avg"], R @ m if side == "left" else m @ R.mT, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(st["exp_avg_sq"], v, rtol=1e-5, atol=1e-9)
    assert not torch.allclose(R @ m if side == "left" else m @ R.mT, m, atol=1e-4)   # the transport did something


def test_rotate_m_at_a_jump_rotates_m_and_keeps_v():
    from discrete import GaLore
    W = torch.nn.Parameter(torch.randn(10, 14))
    opt = GaLore([{"params": [W], "rank": 3, "proj_type": "left", "update_proj_gap": 2, "switch": "rotate_m"}], lr=1e-2)
    G0, G1, G2 = _grads(3)
    for G in (G0, G1):
        W.grad = G
        opt.step()
    st = opt.state[W]
    m0, v0, P0 = st["exp_avg"].clone(), st["exp_avg_sq"].clone(), st["proj"].clone()
    W.grad = G2
    opt.step()                                                   # step index 2: the jump, then the inner step
    P1 = st["proj"]
    assert opt.diagnostics["refreshes"] == 1 and not torch.allclose(P1, P0, atol=1e-3)
    g_hat = P1.mT @ G2
    torch.testing.assert_close(st["exp_avg"], 0.9 * (P1.mT @ P0 @ m0) + 0.1 * g_hat, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(st["exp_avg_sq"], 0.999 * v0 + 0.001 * g_hat * g_hat, rtol=1e-5, atol=1e-9)


def test_constant_proj_lr_ignores_the_schedule():
    out = {}
    for mode in ("follow", "constant"):
        W = torch.nn.Parameter(torch.randn(10, 14, generator=torch.Generator().manual_seed(3)))
        opt = _opt(W, proj_optimizer="gd", proj_init="random", proj_lr=mode, alpha=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.1)   # ε_t = 0.1·ε₀ from the start
        W.grad = _grads(1)[0]
        P0 = opt.state[W]["proj"].clone() if opt.state[W] else None
        opt.step()
        out[mode] = opt.state[W]["proj"].clone()
        assert P0 is None and sched.get_last_lr()[0] == pytest.approx(1e-3)
    rule = make_rule("online_pca", rank=3, side="left", init="random").bind((10, 14))
    from discrete.projection import basis_generator
    P0 = rule.initial_basis(_grads(1)[0], basis_generator(0, 0, 0)).float()
    field = rule.field(0.0, P0, _grads(1)[0])
    torch.testing.assert_close(out["follow"], P0 + 1e-3 * field, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out["constant"], P0 + 1e-2 * field, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", range(3))
def test_transport_is_the_least_squares_change_of_basis_for_non_orthonormal_p(seed):
    """OSD's P drifts off orthonormality (‖PᵀP − I‖ of 1–2 %); the transport must not scale m by PᵀP.

    With P_new = P_old, R is the identity (P_newᵀP_old = PᵀP would amplify m by up to ‖PᵀP‖₂ each P step);
    in general P_new R is the least-squares fit of P_old in span(P_new): its residual is ⊥ span(P_new).
    float64 state, so the identity holds to 1e-10.
    """
    from discrete.projection import SWITCH
    g = torch.Generator().manual_seed(seed)
    P = retract_qr(torch.randn(12, 4, generator=g, dtype=torch.float64))
    P = P + 0.05 * torch.randn(12, 4, generator=g, dtype=torch.float64)      # ‖PᵀP − I‖ of a few %
    assert float(torch.linalg.matrix_norm(P.mT @ P, 2)) > 1.01
    m = torch.randn(4, 7, generator=g, dtype=torch.float64)
    state = {"exp_avg": m.clone(), "exp_avg_sq": m.square(), "proj_side": LEFT}
    SWITCH.get("rotate_m")(state, P, P.clone(), ("exp_avg", "exp_avg_sq"))
    torch.testing.assert_close(state["exp_avg"], m, rtol=0, atol=1e-10)
    P_new = P + 0.1 * torch.randn(12, 4, generator=g, dtype=torch.float64)
    state["exp_avg"] = m.clone()
    SWITCH.get("rotate")(state, P, P_new, ("exp_avg", "exp_avg_sq"))
    resid = P_new @ state["exp_avg"] - P @ m
    assert float((P_new.mT @ resid).abs().max()) < 1e-10
