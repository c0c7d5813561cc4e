"""The --sharpness probe against dense float64 references on a quadratic, and its trainer wiring."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import discrete
from discrete.validation import sharpness as S
from discrete.validation.runlog import read_log
from discrete.validation.trainer import train

M_, N_, R_ = 6, 5, 2


class Quadratic(nn.Module):
    """L = ½ wᵀHw over w = (vec W, b), W (M_ x N_) row-major; forward(x, y) -> (None, L) like the LLaMA model."""

    def __init__(self, H: torch.Tensor):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.W = nn.Parameter(torch.randn(M_, N_, generator=g))
        self.b = nn.Parameter(torch.randn(3, generator=g))
        self.H = H.float()

    def forward(self, x, y):
        w = torch.cat([self.W.flatten(), self.b])
        return None, 0.5 * w @ self.H @ w


def spd(n: int, top: float = 50.0) -> torch.Tensor:
    """A random SPD matrix with one planted large eigenvalue (a clear gap: power iteration converges)."""
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    ev = torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.5
    ev[0] = top
    return Q @ torch.diag(ev) @ Q.T


def warm_up(model, opt, steps=5):
    for _ in range(steps):
        opt.zero_grad()
        model(None, None)[1].backward()
        opt.step()


def adam_denominator(st, group, torch_eps: bool) -> torch.Tensor:
    """(√v/√c₂ + ε)·c₁ (torch) or (√v + ε)·c₁/√c₂ (HF), written out from Adam's update, in float64."""
    t, (b1, b2), eps = float(st["step"]), group["betas"], group["eps"]
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    v = st["exp_avg_sq"].double()
    return ((v.sqrt() / math.sqrt(c2) + eps) * c1) if torch_eps else (v.sqrt() + eps) * c1 / math.sqrt(c2)


def top_eig(A: torch.Tensor) -> float:
    return float(torch.linalg.eigvalsh((A + A.T) / 2).max())


def test_adamw_sharpness_is_lambda_max_of_d_inverse_h():
    H = spd(M_ * N_ + 3)
    model = Quadratic(H)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    warm_up(model, opt)
    d = torch.cat([adam_denominator(opt.state[p], opt.param_groups[0], True).flatten() for p in (model.W, model.b)])
    ref = top_eig(torch.diag(d.rsqrt()) @ H @ torch.diag(d.rsqrt()))
    out = S.SharpnessMeter((torch.zeros(1), torch.zeros(1)), {1}).measure(model, opt)
    assert out["sharpness"] == pytest.approx(ref, rel=2e-3)   # power iteration stops at 1e-3 relative change
    assert out["sharpness_threshold"] == pytest.approx(38 / 1e-2)  # Cohen et al. 2022 at beta1 = 0.9
    assert out["sharpness_ratio"] == pytest.approx(out["sharpness"] / 3800)
    assert "sharpness_full" not in out  # nothing is projected


@pytest.mark.parametrize("name", ["galore", "osd"])
def test_projected_and_full_space_sharpness_match_dense_references(name):
    H = spd(M_ * N_ + 3)
    model = Quadratic(H)
    scale = 0.25
    opt = discrete.OPTIMIZERS[name]([{"params": [model.b]},
                                     {"params": [model.W], "rank": R_, "update_proj_gap": 100, "scale": scale}],
                                    lr=1e-2)
    warm_up(model, opt)
    st, group = opt.state[model.W], opt.param_groups[1]
    assert st["proj_side"] == 1  # W is 6 x 5: the smaller side (5) is projected, W = W0 + R P^T
    torch_eps = group["eps_placement"] == "torch"
    D = adam_denominator(st, group, torch_eps) / scale                             # (M_, R_)
    db = adam_denominator(opt.state[model.b], opt.param_groups[0], torch_eps)     # (3,)
    P = st["proj"].double()                                                       # (N_, R_)
    # J: coordinates (R (M_ x R_), b) -> weights (vec W, b); W[i, j] = sum_k R[i, k] P[j, k]
    J = torch.zeros(M_ * N_ + 3, M_ * R_ + 3, dtype=torch.float64)
    J[: M_ * N_, : M_ * R_] = torch.einsum("ac,jk->ajck", torch.eye(M_, dtype=torch.float64), P).reshape(M_ * N_, M_ * R_)
    J[M_ * N_:, M_ * R_:] = torch.eye(3, dtype=torch.float64)
    dinv = torch.diag(torch.cat([D.flatten(), db]).rsqrt())
    ref_proj = top_eig(dinv @ J.T @ H @ J @ dinv)
    # full space: per row i of W, D lifted as Q diag(D_i) Q^T + mean(D_i) (I - Q Q^T), Q = qr(P)
    Q = torch.linalg.qr(P)[0]
    rows = [Q @ torch.diag(D[i].rsqrt()) @ Q.T + D[i].mean().rsqrt() * (torch.eye(N_, dtype=torch.float64) - Q @ Q.T)
            for i in range(M_)]
    Mf = torch.block_diag(*rows, torch.diag(db.rsqrt()))
    ref_full = top_eig(Mf @ H @ Mf)
    out = S.SharpnessMeter((torch.zeros(1), torch.zeros(1)), {1}).measure(model, opt)
    assert out["sharpness"] == pytest.approx(ref_proj, rel=2e-3)
    assert out["sharpness_full"] == pytest.approx(ref_full, rel=2e-3)
    assert out["sharpness_full"] >= out["sharpness"] * 0.99  # a Rayleigh quotient over the subspace


def test_8_bit_moments_and_a_bf16_p_are_read_dequantised():
    """The probe reads v through the inner rule (8-bit codes of √v are not values) and a bf16 P as float32."""
    from discrete.validation.metrics import adam_moments

    model = Quadratic(spd(M_ * N_ + 3))
    opt = discrete.OPTIMIZERS["galore"]([{"params": [model.b]}, {"params": [model.W], "rank": R_, "update_proj_gap": 100,
                                                                  "proj_dtype": "bf16"}], lr=1e-2, state_dtype="int8")
    warm_up(model, opt)
    st, group = opt.state[model.W], opt.param_groups[1]
    assert st["exp_avg_sq"].dtype == torch.uint8 and st["proj"].dtype == torch.bfloat16
    blk = next(b for b in S.blocks(opt) if b.p is model.W)
    torch_eps = group["eps_placement"] == "torch"
    v = adam_moments(group, st)[1].double()
    t, (b1, b2), eps = float(st["step"]), group["betas"], group["eps"]
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    D = ((v.sqrt() / math.sqrt(c2) + eps) * c1) if torch_eps else (v.sqrt() + eps) * c1 / math.sqrt(c2)
    torch.testing.assert_close(blk.inv_sqrt.double(), D.rsqrt(), rtol=1e-5, atol=0)
    assert blk.proj[0].dtype == torch.float32 and torch.equal(blk.proj[0], st["proj"].float())


def test_measure_steps_are_log_spaced_and_end_at_the_last_step():
    assert S.measure_steps(100, 6) == {1, 2, 3, 5, 7, 10, 15, 22, 32, 46, 68, 100}
    assert S.measure_steps(7, 1) == {1, 7}


def test_trainer_logs_sharpness_and_refresh_steps(make_cfg):
    cfg = make_cfg(optimizer="galore", steps=12, lr=2e-2, log_every=5, sharpness=2, log_refresh=True,
                   update_proj_gap=4)
    train(cfg)
    recs = {r["step"]: r for r in read_log(cfg.out) if r["kind"] == "train"}
    # log steps 1, 5, 10, 12; sharpness at round(10^(k/2)) = 1, 3, 10 and 12; refreshes at 1, 5, 9 (gap 4)
    assert sorted(recs) == [1, 3, 5, 9, 10, 12]
    assert {s for s, r in recs.items() if "sharpness" in r} == {1, 3, 10, 12}
    assert {s: r.get("refreshed") for s, r in recs.items() if r.get("refreshed")} == {1: 14, 5: 14, 9: 14}
    assert recs[9]["residual"] is None and 0 < recs[9]["residual_after"] < 1  # no P snapshot before an unplanned log
    assert all(math.isfinite(recs[s]["sharpness_full"]) and recs[s]["sharpness_s"] > 0 for s in (1, 3, 10, 12))


def test_sharpness_refuses_fsdp(make_cfg):
    from osd_theory.errors import UserError

    cfg = make_cfg(sharpness=4, fsdp=True)
    with pytest.raises(UserError, match="--sharpness needs"):
        S.meter(cfg, None)
