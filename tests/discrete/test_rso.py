"""RSO optimizer form: W = W_k + P_k B inside a subproblem; resample and fresh state every K steps."""
from __future__ import annotations

import torch

from discrete import RSO
from osd_theory.kernels import back_project


def test_rso_subproblem_structure():
    g = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(torch.randn(6, 9, generator=g))
    opt = RSO([{"params": [W], "rank": 2, "update_proj_gap": 4, "rso_prox": 0.5, "proj_type": "left"}], lr=1e-2)
    starts, projs = {}, []
    for t in range(12):
        if t % 4 == 0:
            starts[t] = W.detach().clone()
        W.grad = torch.randn(6, 9, generator=g)
        opt.step()
        st = opt.state[W]
        if t % 4 == 0:
            projs.append(st["proj"].clone())
            assert opt.diagnostics["refreshes"] == 1 and st["subproblem_start"] == t
        W_k = starts[t - t % 4]
        torch.testing.assert_close(W.detach(), W_k + back_project(st["proj"], st["rso_coord"], 0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(projs[0], projs[1])
    gram = projs[0].mT @ projs[0]
    torch.testing.assert_close(gram, torch.eye(2), atol=1e-5, rtol=0)           # Haar: orthonormal columns
