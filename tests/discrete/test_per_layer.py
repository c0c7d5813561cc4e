"""Per-layer mode (discrete/per_layer.py) against the ordinary mode.

Every row of the optimizer table trains a small MLP with gradient accumulation (3 backward passes per
step), global-norm clipping that bites (max norm 0.05, the norms are ~0.3) and a LambdaLR schedule,
once ordinarily (torch's ``clip_grad_norm_``) and once per-layer (``PerLayer.clip_grad_norm_``).

* Without clipping the arithmetic is the same, operation for operation: **bit-equal** parameters
  (rows on the per-matrix path; ``foreach`` rows take the batched path in the ordinary mode).
* With clipping the only difference is c·(PᵀG) against Pᵀ(c·G), a few ulp: parameters agree to
  2e-5 relative after 7 steps (refreshes at steps 3 and 6 included; measured ≤ 4e-8). OSD's default
  P-optimizer (Adam) and Lion normalise each entry of the P field, and at an SVD-initialised P that
  field is itself round-off (~1e-7): ulp differences become ±α·lr steps of P (measured 4e-3 relative,
  as large as clipping's own effect). So under clipping the OSD rows are compared with the stateless
  ``gd`` P-optimizer (the clipping arithmetic is what is tested); their Adam/Lion-on-P machinery is
  covered bit-exactly by the unclipped comparison.
"""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from discrete import OnlineSubspaceDescent, PerLayer
from discrete.step.items import Item as Pending
from discrete_table import PROJECTED, TABLE, build, flat
from osd_theory.errors import UserError

K, STEPS, MAX_NORM = 3, 7, 0.05


def micro_batches(step: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(1000 + step)
    X = torch.randn(K * 4, 7, generator=g).to(dtype)
    Y = torch.tanh(X[:, :2] * 2)
    return [(X[i::K], Y[i::K]) for i in range(K)]


def model_and_opt(row, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 6), torch.nn.Tanh(),
                                torch.nn.Linear(6, 2))
    opt = build(row, model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return model, opt, sched


def run(row, mode: str, clip: float | None = MAX_NORM, accumulation: int = K):
    """Train STEPS steps; mode is 'ordinary', 'deferred' or 'in_backward'. Returns (params, norms, model, opt)."""
    model, opt, sched = model_and_opt(row)
    layers = None if mode == "ordinary" else PerLayer(opt, accumulation_steps=accumulation,
                                                      in_backward=(mode == "in_backward"))
    norms = []
    for step in range(STEPS):
        for X, Y in micro_batches(step)[:accumulation]:
            (((model(X) - Y) ** 2).mean() / accumulation).backward()
        if layers is None:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip else float("inf"))
        elif clip:
            norm = layers.clip_grad_norm_(clip)
        else:
            norm = layers.grad_norm()
        norms.append(float(norm))
        opt.step()
        sched.step()
        opt.zero_grad()
    return flat(model), norms, model, opt


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def stateless_p(row):
    """The row with the stateless ``gd`` P-optimizer where its P-optimizer normalises entries (Adam, Lion)."""
    smooth = row.proj is not None and row.cls.preset.get("projection") == "online_pca"
    if not smooth or row.proj.get("proj_optimizer") in ("gd", "sgd"):
        return row
    return dataclasses.replace(row, name=row.name + "_gdP", proj={**row.proj, "proj_optimizer": "gd"})


@pytest.mark.parametrize("row", [stateless_p(r) for r in TABLE], ids=lambda r: r.name)
def test_deferred_equals_ordinary_with_accumulation_clipping_and_schedule(row):
    ref, ref_norms, _, ref_opt = run(row, "ordinary")
    got, norms, _, opt = run(row, "deferred")
    # bf16 products: the batched ordinary path casts the operands, the per-layer hook projects in float32
    # (discrete/precision.py), so the two differ by bf16 rounding (2⁻⁸ per product), not round-off
    tol = 2e-3 if (row.proj or {}).get("matmul_precision") == "bf16" else 2e-5
    assert rel(got, ref) < tol, rel(got, ref)
    assert norms == pytest.approx(ref_norms, rel=tol / 2)
    assert max(ref_norms) > 2 * MAX_NORM, "clipping must bite for this test to mean anything"
    if row.proj is not None:                        # the refreshes happened in both, at the same steps
        assert opt.diagnostics.get("refreshes") == ref_opt.diagnostics.get("refreshes")


PER_MATRIX = [r for r in TABLE if not r.kwargs.get("foreach")]


@pytest.mark.parametrize("row", PER_MATRIX, ids=lambda r: r.name)
def test_without_clipping_deferred_is_bit_equal(row):
    ref, ref_norms, _, _ = run(row, "ordinary", clip=None)
    got, norms, _, _ = run(row, "deferred", clip=None)
    assert torch.equal(got, ref)
    assert norms == pytest.approx(ref_norms, rel=1e-6)


@pytest.mark.parametrize("row", PER_MATRIX, ids=lambda r: r.name)
def test_in_backward_equals_ordinary_without_clipping(row):
    skip = dataclasses.replace(row, kwargs={**row.kwargs, "nonfinite": "skip"})   # in_backward refuses "raise"
    ref, ref_norms, _, _ = run(skip, "ordinary", clip=None)
    got, norms, _, _ = run(skip, "in_backward", clip=None)
    assert torch.equal(got, ref)
    assert norms == pytest.approx(ref_norms, rel=1e-6)   # the true norm, not GaLore's 0


def test_accumulation_matters_so_the_test_can_fail():
    """Acting on every micro-batch (GaLore's layer-wise bug, accumulation_steps=1 with 3 passes) is refused,
    and one pass per step trains to a different point: the equality above is not vacuous."""
    row = next(r for r in PROJECTED if r.name == "galore_std")
    with pytest.raises(UserError, match="second complete gradient"):
        _three_passes_declared_one(row)
    one, _, _, _ = run(row, "deferred", accumulation=1)
    ref, _, _, _ = run(row, "ordinary")
    assert rel(one, ref) > 1e-3


def _three_passes_declared_one(row):
    model, opt, _ = model_and_opt(row)
    PerLayer(opt, accumulation_steps=1)
    for X, Y in micro_batches(0):
        ((model(X) - Y) ** 2).mean().backward()


def test_projected_gradients_are_freed_and_pending_is_small():
    row = next(r for r in PROJECTED if r.name == "osd_std")
    model, opt, _ = model_and_opt(row)
    layers = PerLayer(opt, accumulation_steps=1)
    X, Y = micro_batches(0)[0]
    ((model(X) - Y) ** 2).mean().backward()
    mats = [p for p in model.parameters() if p.ndim == 2]
    assert all(p.grad is None for p in mats)
    assert all(p.grad is not None for p in model.parameters() if p.ndim != 2)
    assert len(layers._pending) == len(mats)
    assert all(isinstance(e, Pending) and e.field is not None for e in layers._pending.values())
    assert layers.pending_bytes() > 0
    opt.step()
    assert layers.pending_bytes() == 0 and all(int(opt.state[p]["step"]) == 1 for p in mats)


def test_partial_accumulation_at_step_is_refused_and_state_unchanged():
    row = next(r for r in PROJECTED if r.name == "osd_std")
    model, opt, _ = model_and_opt(row)
    PerLayer(opt, accumulation_steps=2)
    X, Y = micro_batches(0)[0]
    ((model(X) - Y) ** 2).mean().backward()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(UserError, match="1 of accumulation_steps=2"):
        opt.step()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()) and not opt.state


def test_nonfinite_raise_leaves_state_unchanged_and_skip_skips():
    row = next(r for r in PROJECTED if r.name == "galore_std")
    for policy in ("raise", "skip"):
        model, opt, _ = model_and_opt(row)
        for group in opt.param_groups:
            group["nonfinite"] = policy
        layers = PerLayer(opt)
        X, Y = micro_batches(0)[0]
        ((model(X) - Y) ** 2).mean().backward()
        opt.step()
        opt.zero_grad()
        snap = copy.deepcopy((model.state_dict(), opt.state_dict()))
        bad = next(p for p in model.parameters() if p.ndim == 2)
        bad.register_hook(lambda g: torch.full_like(g, float("nan")))
        ((model(X) - Y) ** 2).mean().backward()
        if policy == "raise":
            with pytest.raises(ValueError, match="NaN or Inf"):
                opt.step()
            assert all(torch.equal(v, model.state_dict()[k]) for k, v in snap[0].items())
            assert int(opt.state[bad]["step"]) == 1
            layers.discard()
        else:
            opt.step()
            assert opt.diagnostics["skipped_nonfinite"] == 1
            assert torch.equal(bad.detach(), snap[0]["0.weight"]) and int(opt.state[bad]["step"]) == 1
            assert all(int(opt.state[p]["step"]) == 2 for p in model.parameters() if p.ndim == 2 and p is not bad)


def test_clear_errors_for_unsupported_combinations():
    row = next(r for r in PROJECTED if r.name == "galore_std")
    model, opt, _ = model_and_opt(row)
    with pytest.raises(UserError, match="nonfinite='raise'"):
        PerLayer(opt, in_backward=True)
    for group in opt.param_groups:
        group["nonfinite"] = "ignore"
    layers = PerLayer(opt, in_backward=True)
    with pytest.raises(UserError, match="deferred"):
        layers.clip_grad_norm_(1.0)
    with pytest.raises(ValueError, match="accumulation_steps"):
        PerLayer(opt, accumulation_steps=0)
    with pytest.raises(UserError, match="discrete.OPTIMIZERS"):
        PerLayer(torch.optim.AdamW(model.parameters()))


def test_a_gradient_set_by_hand_takes_the_ordinary_path():
    """No backward pass seen (e.g. DCP's zero-gradient step that creates the state): the ordinary step runs."""
    row = next(r for r in PROJECTED if r.name == "galore_std")
    model, opt, _ = model_and_opt(row)
    PerLayer(opt, accumulation_steps=2)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert all(int(opt.state[p]["step"]) == 1 for p in model.parameters() if p.ndim == 2)


def test_remove_restores_the_ordinary_mode():
    row = next(r for r in PROJECTED if r.name == "galore_std")
    model, opt, _ = model_and_opt(row)
    PerLayer(opt).remove()
    X, Y = micro_batches(0)[0]
    ((model(X) - Y) ** 2).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_state_dict_round_trip_in_per_layer_mode():
    """A checkpoint taken after step() resumes to the same trajectory (pending updates are never state)."""
    row = next(r for r in PROJECTED if r.name == "osd_std")
    model, opt, _ = model_and_opt(row)
    PerLayer(opt)

    def one(step):
        X, Y = micro_batches(step)[0]
        ((model(X) - Y) ** 2).mean().backward()
        opt.step()
        opt.zero_grad()

    for s in range(3):
        one(s)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict()))
    for s in range(3, 5):
        one(s)
    end = flat(model)
    model.load_state_dict(saved[0])
    opt.load_state_dict(saved[1])
    for s in range(3, 5):
        one(s)
    assert torch.equal(flat(model), end)


def test_module_example_and_osd_default():
    """Per-layer OSD (Adam on P, the default) on a bf16 model runs and keeps float32 state."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).to(torch.bfloat16)
    mats = [p for p in model.parameters() if p.ndim == 2]
    opt = OnlineSubspaceDescent([{"params": [p for p in model.parameters() if p.ndim != 2]},
                                 {"params": mats, "rank": 2}], lr=1e-2)
    layers = PerLayer(opt)
    for _ in range(2):
        model(torch.randn(4, 8, dtype=torch.bfloat16)).float().pow(2).mean().backward()
        layers.clip_grad_norm_(1.0)
        opt.step()
        opt.zero_grad()
    assert all(opt.state[p]["proj"].dtype == torch.float32 for p in mats)


# -- on a GPU (skipped on the CPU): the ordinary mode takes the batched path there ------------------------
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def cuda_run(name: str, mode: str, width: int = 64, steps: int = 4):
    """An MLP of width×width matrices on CUDA with float32 products, clipping at 0.05; returns (params, model, opt, layers)."""
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = torch.nn.Sequential(torch.nn.Linear(width, 2 * width), torch.nn.Tanh(), torch.nn.Linear(2 * width, width),
                                torch.nn.Tanh(), torch.nn.Linear(width, 4)).to(dev)
    row = next(r for r in PROJECTED if r.name == name)
    mats = [p for p in model.parameters() if p.ndim == 2]
    rest = [p for p in model.parameters() if p.ndim != 2]
    proj = {**row.proj, "rank": 8, "clip_rank": True, "matmul_precision": "highest"}  # the 4-row head: rank 4
    opt = row.cls([{"params": rest}, {"params": mats, **proj}], **{**row.kwargs, "foreach": None})
    layers = PerLayer(opt) if mode == "deferred" else None
    g = torch.Generator(device=dev).manual_seed(0)
    for _ in range(steps):
        X = torch.randn(32, width, device=dev, generator=g)
        ((model(X) - X[:, :4]) ** 2).mean().backward()
        if layers is None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
        else:
            layers.clip_grad_norm_(MAX_NORM)
        opt.step()
        opt.zero_grad()
    return flat(model).cpu(), model, opt, layers


@needs_cuda
@pytest.mark.parametrize("name", ["galore_std", "osd_gdP_foreach", "rso_haar"])
def test_cuda_deferred_equals_ordinary(name):
    ref = cuda_run(name, "ordinary")[0]
    got = cuda_run(name, "deferred")[0]
    assert rel(got, ref) < 1e-5, rel(got, ref)


@needs_cuda
def test_cuda_backward_holds_the_kept_bytes_instead_of_the_gradients():
    """After backward, allocated memory drops by (projected gradient bytes − kept Ĝ and field bytes)."""
    torch.cuda.synchronize()
    held = {}
    for mode in ("ordinary", "deferred"):
        _, model, opt, layers = cuda_run("osd_gdP_foreach", mode, width=512, steps=1)
        X = torch.randn(32, 512, device="cuda")
        base = torch.cuda.memory_allocated()
        ((model(X) - X[:, :4]) ** 2).mean().backward()
        held[mode] = torch.cuda.memory_allocated() - base
        if layers is not None:
            kept = layers.pending_bytes()
        mats = [p for p in model.parameters() if p.ndim == 2]
        grads = sum(p.numel() * 4 for p in mats)
        opt.zero_grad()
        if layers is not None:
            layers.discard()
    assert held["ordinary"] - held["deferred"] == pytest.approx(grads - kept, abs=64 * 1024)
