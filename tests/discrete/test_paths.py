"""Path independence: in float64 every executor runs the same maths (issue 20, item 6).

For every projection rule of the registry and a user rule file, and OSD's default Adam step on P included,
the per-matrix (``foreach=False``), batched (default) and per-layer (deferred, with accumulation) paths give
the same weights to 1e-9 relative after 6 steps (a jump every 2) in float64. So what differs between them
in float32 is round-off (mm against bmm, another summation order), which Adam on P amplifies where the
online-PCA field is itself round-off (tests/discrete/test_batched.py); DDP and FSDP2 are checked in float64
by tests/discrete/test_fsdp.py (the ``*_f64`` configurations) and tests/discrete/test_contract.py.
"""
from __future__ import annotations

import textwrap

import pytest
import torch

from discrete import OnlineSubspaceDescent, PerLayer
from discrete.step import layout
from osd_theory.projections import PROJECTIONS

RULES = [name for name in PROJECTIONS.names() if name != "identity"] + ["user"]
TOL = 1e-9      # float64 round-off over 6 steps is ~1e-14; 1e-9 leaves room for Adam's division by √v


@pytest.fixture(scope="module")
def user_rule(tmp_path_factory):
    path = tmp_path_factory.mktemp("rule") / "paths_rule.py"
    path.write_text(textwrap.dedent("""
        def gamma(t, P, G):
            Gs = G if P.shape[0] == G.shape[0] else G.mT
            return Gs @ (Gs.mT @ P) / (G.norm() ** 2 + 1e-12) - 0.3 * P
    """))
    return f"{path}:gamma"


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(10, 12), torch.nn.Tanh(), torch.nn.Linear(12, 12), torch.nn.Tanh(),
                               torch.nn.Linear(12, 12), torch.nn.Tanh(), torch.nn.Linear(12, 6)).double()


def _run(rule: str, path: str, user_rule: str, steps: int = 6) -> torch.Tensor:
    model = _model()
    mats = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    rest = [m.bias for m in model if isinstance(m, torch.nn.Linear)]
    proj = {"rank": 3, "update_proj_gap": 2, "projection": user_rule if rule == "user" else rule}
    opt = OnlineSubspaceDescent([{"params": rest}, {"params": mats, **proj}], lr=1e-2, weight_decay=0.05,
                                foreach=False if path == "single" else None)
    layers = PerLayer(opt, accumulation_steps=2) if path == "per_layer" else None
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for _ in range(2):                           # two micro-batches: accumulation in every path
            x = torch.randn(8, 10, generator=g, dtype=torch.float64)
            (model(x).pow(2).mean() / 2).backward()
        opt.step()
        opt.zero_grad()
    if layers is not None:
        layers.remove()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("large", [False, True], ids=["stacked", "large_matrix_layout"])
@pytest.mark.parametrize("rule", RULES)
def test_every_path_agrees_in_float64(rule, user_rule, large, monkeypatch):
    ref = _run(rule, "single", user_rule)
    if large:        # every matrix takes the layout of large ones: products and the W update per matrix
        monkeypatch.setattr(layout, "PER_MATRIX_ELEMS", 1)
    assert all(p.dtype == torch.float64 for p in [ref])
    for path in ("batched", "per_layer"):
        got = _run(rule, path, user_rule)
        assert float((got - ref).norm() / ref.norm()) < TOL, (path, float((got - ref).norm() / ref.norm()))


def test_float64_parameters_get_float64_state(user_rule):
    model = _model()
    mats = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    opt = OnlineSubspaceDescent([{"params": mats, "rank": 3}], lr=1e-2)
    model(torch.randn(4, 10, dtype=torch.float64)).sum().backward()
    opt.step()
    dtypes = {v.dtype for st in opt.state.values() for k, v in st.items() if torch.is_tensor(v) and k != "step"}
    assert dtypes == {torch.float64}
