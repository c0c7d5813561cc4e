"""CUDA checks (skipped without a GPU): CPU↔CUDA state dicts, fused default on CUDA, RSO memory."""
from __future__ import annotations

import io

import pytest
import torch

from discrete import GaLore, OnlineSubspaceDescent
from discrete.rso_module import wrap_linears

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _params(device):
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=g).to(device)) for s in [(24, 40), (24, 40), (40, 24), (9,)]]


def _grads(step):
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(s, generator=g) for s in [(24, 40), (24, 40), (40, 24), (9,)]]


@pytest.mark.parametrize("cls", [OnlineSubspaceDescent, GaLore])
def test_state_dict_cpu_to_cuda_continues_like_cpu(cls):
    """3 steps on CPU, save; continue 3 steps on CPU and, from the weights_only load, on CUDA (batched path)."""
    def build(ps):
        # float32 products on both devices, and (OSD) the stateless P step: Adam on P would amplify the
        # CPU/CUDA round-off where the online-PCA field is ≈ 0 (tests/discrete/test_batched.py)
        return cls([{"params": ps[:3], "rank": 4, "update_proj_gap": 100, "matmul_precision": "highest",
                     "proj_optimizer": "gd"}, {"params": ps[3:]}], lr=1e-2)

    ps = _params("cpu")
    opt = build(ps)
    for t in range(3):
        for p, g in zip(ps, _grads(t)):
            p.grad = g
        opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    qs = [torch.nn.Parameter(p.detach().cuda()) for p in ps]
    opt_cuda = build(qs)
    opt_cuda.load_state_dict(torch.load(buf, weights_only=True))
    st = opt_cuda.state[qs[0]]
    assert st["proj"].is_cuda and st["proj"].dtype == torch.float32 and not st["step"].is_cuda
    for t in range(3, 6):
        for p, q, g in zip(ps, qs, _grads(t)):
            p.grad, q.grad = g, g.cuda()
        opt.step()
        opt_cuda.step()
    assert opt_cuda.state[qs[0]]["proj"]._base is not None                    # CUDA default: batched path
    for p, q in zip(ps, qs):
        torch.testing.assert_close(p, q.cpu(), rtol=1e-4, atol=1e-5)


def test_rso_module_shrinks_activation_memory_on_cuda():
    d, N, r = 1024, 4096, 64
    held = {}
    for name in ("plain", "rso"):
        model = torch.nn.Sequential(*[torch.nn.Linear(d, d, bias=False) for _ in range(3)]).cuda()
        if name == "rso":
            wrap_linears(model, r)
        x = torch.randn(N, d, device="cuda")
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        y = model(x)
        held[name] = torch.cuda.memory_allocated() - base
        y.sum().backward()
        del model, x, y
    # plain keeps the two hidden activations (N×d); RSO keeps only x P per layer (N×r)
    assert held["rso"] < 0.5 * held["plain"], held
