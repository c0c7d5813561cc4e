"""Every projection rule trains, and the batched path equals the per-matrix reference path.

* batched (``foreach=True``, :mod:`discrete.step.batched`) vs per matrix (``foreach=False``,
  :mod:`discrete.step.single`) for every rule of the registry and a user rule file ×
  every inner optimizer: 8 steps (a jump every 3), weights to rtol 1e-5 / atol 1e-6, state to
  rtol 1e-4 / atol 1e-6 (float32; both paths call the same functions, only mm vs bmm and the order
  of the norm reduction differ). Adam on P amplifies round-off where ∇_P ≈ 0 (at an SVD-initialised
  online-PCA basis the field is pure round-off and Adam's first step normalises it to ±1), so the
  rows of rules with Adam on P (online_pca, online_pca_refresh) start from a random P₀;
  test_osd_adam_p_amplifies_roundoff_at_the_svd_basis shows the effect. (online_pca_refresh's later SVD
  jumps are compared as they come: by then Adam's moments carry the earlier steps, so the round-off
  field is not normalised to ±1.)
* for every smooth rule, one discrete P step with the stateless ``gd`` P-optimizer is the Euler step
  P₁ = P₀ + ε·Γ(P₀, G) of the simulator's own rule object (P is float32 state: rtol 1e-5).
"""
from __future__ import annotations

import textwrap

import pytest
import torch

from discrete import GaLore, OnlineSubspaceDescent
from discrete.inner import INNER
from osd_theory.projections import PROJECTIONS, make_rule

SHAPES = [(12, 20), (12, 20), (12, 20), (20, 12), (20, 12), (16, 16)]
RULES = [name for name in PROJECTIONS.names() if name != "identity"] + ["user"]


@pytest.fixture(scope="module")
def user_rule(tmp_path_factory):
    path = tmp_path_factory.mktemp("rule") / "myrule.py"
    path.write_text(textwrap.dedent("""
        def gamma(t, P, G):
            return -0.5 * P + G @ (G.T @ P) / (G.norm() ** 2 + 1e-12) if P.shape[0] == G.shape[0] else \\
                   -0.5 * P + G.T @ (G @ P) / (G.norm() ** 2 + 1e-12)
    """))
    return f"{path}:gamma"


def _params(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=g).to(dtype)) for s in SHAPES] + \
           [torch.nn.Parameter(torch.randn(7, generator=g).to(dtype))]


def _run(cls, foreach, group_kw, steps=8, dtype=torch.float32, zero_at=(), inner="adamw"):
    ps = _params(dtype=dtype)
    kw = {"momentum": 0.9} if inner in ("sgd", "muon") else {}
    rest = {"inner": "adamw"} if INNER.get(inner).matrices_only else {}      # Muon: the bias takes AdamW
    opt = cls([{"params": ps[:-1], **group_kw}, {"params": ps[-1:], **rest}], lr=1e-2, weight_decay=0.01,
              foreach=foreach, inner=inner, **kw)
    g = torch.Generator().manual_seed(1)
    for t in range(steps):
        for p in ps:
            p.grad = torch.zeros_like(p) if t in zero_at else (torch.randn(p.shape, generator=g) * (1 + t)).to(dtype)
        opt.step()
    return ps, opt


def _assert_same(ref, opt_ref, got, opt_got):
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(opt_ref.state.values(), opt_got.state.values()):
        assert a.keys() == b.keys()
        for k, v in a.items():
            if torch.is_tensor(v):
                torch.testing.assert_close(v, b[k], rtol=1e-4, atol=1e-6, msg=k)
            else:
                assert v == b[k], k


def _group(rule, user_rule):
    kw = {"rank": 4, "update_proj_gap": 3, "projection": user_rule if rule == "user" else rule}
    if rule != "user" and getattr(PROJECTIONS.get(rule), "p_optimizer", None) == "adam":
        kw["proj_init"] = "random"     # online PCA's Adam on P at an SVD P₀: see the test below
    return kw


@pytest.mark.parametrize("inner", INNER.names())
@pytest.mark.parametrize("rule", RULES)
def test_every_rule_trains_and_batched_matches_per_matrix(rule, inner, user_rule):
    kw = _group(rule, user_rule)
    ref, opt_ref = _run(OnlineSubspaceDescent, False, kw, zero_at=(4,), inner=inner)
    got, opt_got = _run(OnlineSubspaceDescent, True, kw, zero_at=(4,), inner=inner)
    _assert_same(ref, opt_ref, got, opt_got)
    st = opt_ref.state[ref[0]]
    assert st["last_refresh_step"] >= 0 and st["proj"].shape == (12, 4)
    if rule != "user" and PROJECTIONS.get(rule).jumps:
        assert st["last_refresh_step"] == 6                                  # jumps at 3 and 6 were compared
    assert not torch.equal(ref[0].detach(), _params()[0].detach())            # it trained


CASES = [
    (OnlineSubspaceDescent, {"rank": 4, "pca_lambda": 0.1, "proj_type": "std", "proj_optimizer": "gd"}),
    (OnlineSubspaceDescent, {"rank": 4, "pca_lambda": 0.0, "proj_type": "reverse_std", "proj_weight_decay": 0.1,
                             "scale": 0.25, "proj_init": "random"}),
    (OnlineSubspaceDescent, {"rank": 3, "proj_init": "random", "proj_type": "left"}),
    (OnlineSubspaceDescent, {"rank": 4, "proj_optimizer": "gd", "alpha": 0.5, "proj_type": "right"}),
    (GaLore, {"rank": 4, "update_proj_gap": 5, "scale": 0.25}),
    (GaLore, {"rank": 4, "update_proj_gap": 3, "switch": "rotate", "proj_type": "right"}),
    (GaLore, {"rank": 4, "update_proj_gap": 3, "switch": "rotate_m", "proj_type": "left"}),
    # the transport after every P step runs on the bucket's stacked state
    (OnlineSubspaceDescent, {"rank": 4, "switch": "rotate", "proj_optimizer": "gd", "proj_type": "left"}),
    (OnlineSubspaceDescent, {"rank": 4, "switch": "rotate_m", "proj_optimizer": "gd", "proj_type": "right"}),
    (OnlineSubspaceDescent, {"rank": 4, "switch": "rotate_m", "proj_init": "random", "proj_type": "std"}),
    (OnlineSubspaceDescent, {"rank": 4, "switch": "rotate_m", "projection": "online_pca_refresh", "update_proj_gap": 3,
                             "proj_init": "random"}),
]


@pytest.mark.parametrize("cls,kw", CASES)
def test_foreach_matches_forloop(cls, kw):
    _assert_same(*_run(cls, False, kw, steps=12, zero_at=(4,)), *_run(cls, True, kw, steps=12, zero_at=(4,)))


def test_osd_adam_p_amplifies_roundoff_at_the_svd_basis():
    """At P₀ = top-r SVD basis of G the online-PCA field is round-off, yet Adam's first P step moves P by ≈ α·lr."""
    from osd_theory.kernels import LEFT, svd_basis
    W = torch.nn.Parameter(torch.randn(12, 20, generator=torch.Generator().manual_seed(3)))
    opt = OnlineSubspaceDescent([{"params": [W], "rank": 4}], lr=1e-2)       # α = 5: P lr 0.05
    W.grad = torch.randn(12, 20, generator=torch.Generator().manual_seed(4))
    opt.step()
    st = opt.state[W]
    field = float(st["proj_exp_avg"].abs().max()) / (1 - 0.9)               # m₁ = (1 − β₁)∇_P
    moved = float((st["proj"] - svd_basis(W.grad, 4, LEFT)).abs().max())
    assert field < 1e-4 and moved > 0.5 * 5 * 1e-2


def test_batched_state_is_views_and_survives_state_dict_roundtrip():
    import copy
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


def test_batched_bf16_params():
    kw = {"rank": 4, "proj_optimizer": "gd"}
    ref, _ = _run(OnlineSubspaceDescent, False, kw, steps=5, dtype=torch.bfloat16)
    got, opt = _run(OnlineSubspaceDescent, True, kw, steps=5, dtype=torch.bfloat16)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)
    assert all(v.dtype == torch.float32 for st in opt.state.values() for k, v in st.items()
               if torch.is_tensor(v) and k != "step")


SMOOTH = [name for name in PROJECTIONS.names() if PROJECTIONS.get(name).smooth] + ["user"]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("rule", SMOOTH)
def test_discrete_p_step_is_the_euler_step_of_the_simulators_rule(rule, side, user_rule):
    """P₁ = P₀ + ε·α·field(P₀, G₀) = P₀ + ε·Γ(P₀, G₀), with Γ the simulator's rate (gd P-optimizer)."""
    g = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(torch.randn(9, 7, generator=g, dtype=torch.float64))
    spec = user_rule if rule == "user" else rule
    lr, alpha = 0.05, 0.7
    opt = OnlineSubspaceDescent([{"params": [W], "rank": 3, "projection": spec, "proj_type": side, "alpha": alpha,
                                  "proj_optimizer": "gd", "proj_init": "random"}], lr=lr)
    G0 = torch.randn(9, 7, generator=g, dtype=torch.float64)
    W.grad = G0.clone()
    opt.step()
    P1 = opt.state[W]["proj"].double()
    # the stand-in P₀ was replaced by the rule's random P₀ at step 0, from the optimizer's generator
    from discrete.projection import basis_generator
    sim = make_rule(spec, rank=3, side=side, alpha=alpha, init="random").bind((9, 7))
    P0 = sim.initial_basis(G0, basis_generator(0, 0, 0)).float().double()
    expected = P0 + lr * sim.rate(0.0, P0, G0)
    torch.testing.assert_close(P1, expected.float().double(), rtol=1e-5, atol=1e-6)


def test_bf16_products_track_float32_products():
    """matmul_precision="bf16" (batched path) changes only the operands' rounding: 2⁻⁸ relative per product,
    so after 5 steps the weights agree with the float32-product run to ~1e-2 of the update size.

    Inner SGD (linear in Ĝ): Adam's first step is ĝ/|ĝ|, which flips with the sign of any Ĝ entry near 0,
    whatever the precision, and would make this a test of Adam rather than of the bf16 path.
    """
    kw = {"rank": 4, "proj_optimizer": "gd", "proj_init": "random"}
    ref, _ = _run(OnlineSubspaceDescent, True, {**kw, "matmul_precision": "highest"}, steps=5, inner="sgd")
    got, _ = _run(OnlineSubspaceDescent, True, {**kw, "matmul_precision": "bf16"}, steps=5, inner="sgd")
    start = _params()
    for a, b, w0 in zip(ref, got, start):
        moved = float((a - w0).abs().max())
        assert moved > 0 and float((a - b).abs().max()) <= 2e-2 * moved + 1e-6
