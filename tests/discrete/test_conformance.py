"""Generic optimizer tests over the table (modelled on torch's test_optim / OptimizerInfo)."""
from __future__ import annotations

import copy

import pytest
import torch

from discrete.inner import INNER
from discrete_table import build, data, flat, groups, loss_fn, make_model, roundtrip, train


# -- right direction ----------------------------------------------------------------------
def test_goes_right_direction(row):
    model = make_model()
    losses = train(model, build(row, model), 40)
    assert losses[-1] < 0.8 * losses[0], losses[::10]


def test_with_lrscheduler_goes_right_direction(row):
    model = make_model()
    opt = build(row, model)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.7)
    losses = train(model, opt, 40, sched)
    assert losses[-1] < 0.8 * losses[0]
    assert opt.param_groups[0]["lr"] == pytest.approx(row.kwargs["lr"] * 0.7 ** 4)


def test_tensor_lr_matches_float_lr(row):
    a, b = make_model(), make_model()
    lr = torch.tensor(row.kwargs["lr"])            # float32: compare with the same rounded value
    opt_a = build(row, a, lr=float(lr))
    opt_b = build(row, b, lr=lr)
    train(a, opt_a, 6)
    train(b, opt_b, 6)
    assert torch.equal(flat(a), flat(b))


# -- no-ops ----------------------------------------------------------------------------------
def test_step_is_noop_when_params_have_no_grad(row):
    model = make_model()
    opt = build(row, model)
    before = flat(model)
    opt.step()
    assert torch.equal(before, flat(model))
    assert len(opt.state) == 0


def test_step_is_noop_for_zero_grads(row):
    if row.kwargs.get("weight_decay", 0):
        pytest.skip("weight decay moves parameters by design")
    model = make_model()
    opt = build(row, model)
    before = flat(model)
    for _ in range(4):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
    assert torch.equal(before, flat(model))
    for st in opt.state.values():
        for k, v in st.items():
            if torch.is_tensor(v):
                assert torch.isfinite(v).all(), k
    # a basis is never built from zeros: P is still the placeholder (last_refresh_step -1) for SVD inits
    if row.proj is not None and row.proj.get("proj_init", "svd") == "svd" and row.cls.__name__ != "RSO":
        assert all(st["last_refresh_step"] == -1 for st in opt.state.values() if "proj" in st)


# -- state dict ------------------------------------------------------------------------------
def test_state_dict_contract(row):
    model = make_model()
    opt = build(row, model)
    train(model, opt, 4)
    for p, st in opt.state.items():
        assert isinstance(st["step"], torch.Tensor) and st["step"].ndim == 0
        for k, v in st.items():
            assert torch.is_tensor(v) or isinstance(v, (int, float, str)), (k, type(v))
            if torch.is_tensor(v) and k != "step":
                assert v.dtype == torch.float32, k
        if "proj" in st:
            side, r = st["proj_side"], row.proj["rank"]
            assert st["proj"].shape == (p.shape[side], r)
            inner_shape = (r, p.shape[1]) if side == 0 else (p.shape[0], r)
            moment = INNER.get(row.kwargs.get("inner", "adamw")).state_names[0]   # sgd: momentum_buffer
            assert st[moment].shape == inner_shape


def test_save_load_weights_only_resume_is_bit_exact(row):
    """Resume from a weights_only state_dict at step k reproduces the uninterrupted run (CPU)."""
    ref = make_model()
    opt_ref = build(row, ref)
    train(ref, opt_ref, 10)

    a = make_model()
    opt_a = build(row, a)
    train(a, opt_a, 4)
    sd_model, sd_opt = roundtrip(a.state_dict()), roundtrip(opt_a.state_dict())
    b = make_model(seed=99)
    b.load_state_dict(sd_model)
    opt_b = build(row, b)
    opt_b.load_state_dict(sd_opt)
    train(b, opt_b, 6)
    assert torch.equal(flat(ref), flat(b))


def test_state_dict_deterministic(row):
    a = make_model()
    opt_a = build(row, a)
    train(a, opt_a, 5)
    b = copy.deepcopy(a)
    opt_b = build(row, b)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    train(a, opt_a, 3)
    train(b, opt_b, 3)
    assert torch.equal(flat(a), flat(b))


def test_deepcopy(row):
    model = make_model()
    opt = build(row, model)
    train(model, opt, 3)
    clone = copy.deepcopy(opt)
    for (pa, sa), (pb, sb) in zip(opt.state.items(), clone.state.items()):
        assert sa.keys() == sb.keys()
        for k in sa:
            if torch.is_tensor(sa[k]):
                assert torch.equal(sa[k], sb[k]) and sa[k].data_ptr() != sb[k].data_ptr()
    assert repr(clone).startswith(type(opt).__name__)


def test_bf16_params_keep_float32_state_across_load(row):
    model = make_model(dtype=torch.bfloat16)
    opt = build(row, model)
    train(model, opt, 3)
    sd = roundtrip(opt.state_dict())
    opt2 = build(row, model)
    opt2.load_state_dict(sd)
    for (p, s1), s2 in zip(opt.state.items(), opt2.state.values()):
        for k, v in s1.items():
            if torch.is_tensor(v) and k != "step":
                assert s2[k].dtype == torch.float32 and torch.equal(v, s2[k]), k
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_hooks_run_in_order(row):
    model = make_model()
    opt = build(row, model)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.register_state_dict_post_hook(lambda o, sd: calls.append("sd") or sd)
    train(model, opt, 1)
    opt.state_dict()
    assert calls == ["pre", "post", "sd"]


def test_closure_returns_loss(row):
    model = make_model()
    opt = build(row, model)
    X, Y = data()

    def closure():
        opt.zero_grad()
        loss = loss_fn(model, X, Y)
        loss.backward()
        return loss

    assert torch.isfinite(opt.step(closure))


# -- bad input ---------------------------------------------------------------------------------
BAD_CTOR = [
    ({"lr": -1e-3}, "Invalid learning rate"),
    ({"weight_decay": -0.1}, "Invalid weight_decay value"),
]


@pytest.mark.parametrize("over,msg", BAD_CTOR)
def test_errors_constructor(row, over, msg):
    model = make_model()
    with pytest.raises(ValueError, match=msg):
        build(row, model, **over)


def test_errors_betas(row):
    model = make_model()
    if "betas" not in row.cls.__init__.__code__.co_varnames:
        pytest.skip("no betas")
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        build(row, model, betas=(0.9, 1.0))


@pytest.mark.parametrize("key,value,msg", [
    ("rank", 0, "Invalid rank"), ("rank", 6, "Invalid rank"), ("rank", 2.5, "Invalid rank"),
    ("proj_type", "diagonal", "Unknown proj_type"), ("update_proj_gap", 0, "Invalid update_proj_gap"),
    ("scale", -1.0, "Invalid scale"),
])
def test_errors_projected_groups(prow, key, value, msg):
    model = make_model()
    g = groups(model, prow)
    g[1][key] = value
    with pytest.raises(ValueError, match=msg):
        prow.cls(g, **prow.kwargs)


def test_sparse_grad_is_an_error(row):
    model = make_model()
    opt = build(row, model)
    p = next(model.parameters())
    p.grad = torch.zeros_like(p).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        opt.step()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_grad_raises_or_skips(row, bad):
    model = make_model()
    opt = build(row, model)
    train(model, opt, 2)
    before = copy.deepcopy(opt.state_dict())
    params_before = flat(model)
    p = list(model.parameters())[2]
    for q in model.parameters():
        q.grad = torch.ones_like(q)
    p.grad[0, 0] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        opt.step()
    skip = build(row, model)
    skip.load_state_dict(before)
    for g in skip.param_groups:                 # load_state_dict restored the saved policy
        g["nonfinite"] = "skip"
    skip.step()
    after = skip.state_dict()
    idx = [id(q) for g in skip.param_groups for q in g["params"]].index(id(p))
    for k, v in before["state"][idx].items():
        assert torch.equal(torch.as_tensor(v), torch.as_tensor(after["state"][idx][k])), k
    assert torch.equal(p.detach().flatten(), params_before[sum(q.numel() for q in list(model.parameters())[:2]):][:p.numel()])
    assert skip.diagnostics["skipped_nonfinite"] == 1


def test_nonfinite_ignore_matches_raise_on_finite_grads_and_does_not_check(row):
    # "ignore" only drops the host-synchronising check: on finite gradients it must follow
    # the default policy bit for bit, and on a NaN it must not raise (the NaN reaches the state,
    # as in torch.optim).
    runs = []
    for policy in ("raise", "ignore"):
        torch.manual_seed(0)
        model = make_model()
        opt = build(row, model)
        for g in opt.param_groups:
            g["nonfinite"] = policy
        train(model, opt, 3)
        runs.append(flat(model))
    assert torch.equal(runs[0], runs[1])
    for q in model.parameters():
        q.grad = torch.full_like(q, float("nan"))
    opt.step()
    state_values = [v for st in opt.state.values() for v in st.values()
                    if isinstance(v, torch.Tensor) and v.is_floating_point()]
    assert not all(torch.isfinite(v).all() for v in state_values + [flat(model)])


def test_empty_group_is_fine(row):
    model = make_model()
    g = groups(model, row) + [{"params": []}]
    opt = row.cls(g, **row.kwargs)
    train(model, opt, 2)


def test_can_load_older_state_dict(row):
    """A state dict saved before newer group keys existed loads and steps (defaults fill in)."""
    model = make_model()
    opt = build(row, model)
    train(model, opt, 2)
    sd = copy.deepcopy(opt.state_dict())
    for g in sd["param_groups"]:
        for key in ("nonfinite", "bias_correction", "foreach", "matmul_precision", "alpha", "switch", "seed"):
            g.pop(key, None)
    opt2 = build(row, model)
    opt2.load_state_dict(sd)
    train(model, opt2, 2)
    # the float32 load hooks live for one load only: none accumulate across loads
    assert len(opt2._optimizer_load_state_dict_pre_hooks) == len(opt2._optimizer_load_state_dict_post_hooks) == 0
