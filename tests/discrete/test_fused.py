"""The batched path (discrete.fused) equals the per-matrix reference path (foreach vs forloop)."""
from __future__ import annotations

import copy

import pytest
import torch

from discrete import GaLore, OnlineSubspaceDescent

SHAPES = [(12, 20), (12, 20), (12, 20), (20, 12), (20, 12), (16, 16)]


def _params(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=g).to(dtype)) for s in SHAPES] + \
           [torch.nn.Parameter(torch.randn(7, generator=g).to(dtype))]


def _run(cls, foreach, group_kw, steps=12, dtype=torch.float32, zero_at=()):
    ps = _params(dtype=dtype)
    opt = cls([{"params": ps[:-1], **group_kw}, {"params": ps[-1:]}], lr=1e-2, weight_decay=0.01, foreach=foreach)
    g = torch.Generator().manual_seed(1)
    for t in range(steps):
        for p in ps:
            p.grad = torch.zeros_like(p) if t in zero_at else (torch.randn(p.shape, generator=g) * (1 + t)).to(dtype)
        opt.step()
    return ps, opt


CASES = [
    (OnlineSubspaceDescent, {"rank": 4, "pca_lambda": 0.1, "proj_type": "std"}),
    (OnlineSubspaceDescent, {"rank": 4, "pca_lambda": 0.0, "proj_type": "reverse_std", "proj_weight_decay": 0.1,
                             "scale": 0.25}),
    (OnlineSubspaceDescent, {"rank": 3, "proj_init": "random", "proj_type": "left"}),
    (OnlineSubspaceDescent, {"rank": 4, "proj_optimizer": "gd", "alpha": 0.5, "proj_type": "right"}),
    (GaLore, {"rank": 4, "update_proj_gap": 5, "scale": 0.25}),
    (GaLore, {"rank": 4, "update_proj_gap": 3, "switch": "rotate", "proj_type": "right"}),
]


@pytest.mark.parametrize("cls,kw", CASES)
def test_foreach_matches_forloop(cls, kw):
    ref, opt_ref = _run(cls, False, kw, zero_at=(4,))
    fused, opt_f = _run(cls, True, kw, zero_at=(4,))
    for a, b in zip(ref, fused):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(opt_ref.state.values(), opt_f.state.values()):
        for k, v in a.items():
            if torch.is_tensor(v):
                torch.testing.assert_close(v, b[k], rtol=1e-4, atol=1e-6, msg=k)


def test_fused_state_is_views_and_survives_state_dict_roundtrip():
    ps, opt = _run(OnlineSubspaceDescent, True, {"rank": 4}, steps=3)
    st = opt.state[ps[0]]
    assert st["proj"]._base is not None                      # a slice of the bucket buffer
    sd = copy.deepcopy(opt.state_dict())
    ps2 = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = OnlineSubspaceDescent([{"params": ps2[:-1], "rank": 4}, {"params": ps2[-1:]}], lr=1e-2, weight_decay=0.01,
                                 foreach=True)
    opt2.load_state_dict(sd)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        for p, q in zip(ps, ps2):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        opt2.step()
    for p, q in zip(ps, ps2):
        assert torch.equal(p, q)


def test_fused_bf16_params():
    ref, _ = _run(OnlineSubspaceDescent, False, {"rank": 4}, steps=5, dtype=torch.bfloat16)
    fused, opt = _run(OnlineSubspaceDescent, True, {"rank": 4}, steps=5, dtype=torch.bfloat16)
    for a, b in zip(ref, fused):
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)
    assert all(v.dtype == torch.float32 for st in opt.state.values() for k, v in st.items()
               if torch.is_tensor(v) and k != "step")


@pytest.mark.parametrize("side", [0, 1])
@pytest.mark.parametrize("precision,tol", [("highest", 1e-5), ("bf16", 3e-2)])
def test_batched_online_pca_grad_matches_kernel(side, precision, tol):
    from discrete.fused import online_pca_grad_batched
    from osd_theory.kernels import online_pca_grad, project

    g = torch.Generator().manual_seed(7)
    grads = [torch.randn(10, 14, generator=g) for _ in range(3)] + [torch.zeros(10, 14)]
    d = 10 if side == 0 else 14
    P = torch.stack([torch.linalg.qr(torch.randn(d, 4, generator=g))[0] * 1.1 for _ in grads])
    G_hat = torch.stack([project(p, G, side) for p, G in zip(P, grads)])
    got = online_pca_grad_batched(P, G_hat, grads, side, 0.3, precision=precision)
    for i, G in enumerate(grads):
        ref = online_pca_grad(P[i].double(), G.double(), 0.3, side)
        assert float((got[i].double() - ref).norm() / ref.norm()) < tol
