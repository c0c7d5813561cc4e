"""RSO module form: exact gradients, only x P saved for backward, merge keeps the function."""
from __future__ import annotations

import torch
import torch.nn as nn

from discrete import AdamW
from discrete.rso_module import ProjectedLinearFunction, RSOController, RSOLinear, wrap_linears


def test_gradcheck_projected_linear():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(4, 6, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    P = torch.randn(6, 2, generator=g, dtype=torch.float64)
    B = torch.randn(4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ProjectedLinearFunction.apply, (x, W, b, P, B))
    y = ProjectedLinearFunction.apply(x, W, b, P, B)
    torch.testing.assert_close(y, x @ (W + B @ P.mT).mT + b)


def _saved_activation_numel(model, x):
    params = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    saved = []

    def pack(t):
        if t.data_ptr() not in params:
            saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum().backward()
    return sum(saved)


def test_backward_stores_only_the_projected_input():
    torch.manual_seed(0)
    N, d, r = 64, 32, 4
    plain = nn.Sequential(nn.Linear(d, d), nn.Linear(d, d))
    rso = nn.Sequential(nn.Linear(d, d), nn.Linear(d, d))
    rso.load_state_dict(plain.state_dict())
    assert wrap_linears(rso, r) == ["0", "1"]
    x = torch.randn(N, d, requires_grad=False)
    n_plain, n_rso = _saved_activation_numel(plain, x), _saved_activation_numel(rso, x)
    assert n_plain >= 2 * N * d - N * d       # the second linear saves its (N, d) input
    assert n_rso == 2 * N * r                 # x P per layer, nothing else
    assert all(p.grad is None for n, p in rso.named_parameters() if n.endswith("weight"))


def test_merge_keeps_function_and_training_decreases_loss():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    wrap_linears(model, 4)
    ctl = RSOController(model, prox=0.01)
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(2)
    X, Y = torch.randn(128, 8, generator=g), torch.randn(128, 3, generator=g)
    losses = []
    for t in range(60):
        opt.zero_grad()
        loss = ((model(X) - Y) ** 2).mean()
        loss.backward()
        ctl.add_prox_grad_()
        opt.step()
        losses.append(float(loss.detach()))
        if (t + 1) % 10 == 0:
            with torch.no_grad():
                before = model(X)
            ctl.merge_and_resample(opt)
            with torch.no_grad():
                torch.testing.assert_close(model(X), before, rtol=1e-5, atol=1e-6)
            assert all(float(layer.B.detach().abs().max()) == 0 and layer.B not in opt.state for layer in ctl.layers)
    assert losses[-1] < 0.8 * losses[0]
    assert isinstance(model[0], RSOLinear) and int(model[0].subproblem) == 7
