"""P kept in bf16 (group key ``proj_dtype="bf16"``, issue 22 item 1: "P and the P-optimizer state may be bf16").

* the state holds P in bf16 (the P-optimizer's moments as ``proj_state_dtype`` says), the step works on a float32
  copy and stores it back; every executor runs it: the per-layer mode equals the ordinary step bit for bit,
  the per-matrix path equals the batched one to round-off;
* it tracks float32 P on a small regression (final loss within the bound of :data:`LOSS`, measured);
* the stored basis stays orthonormal to bf16 precision; stochastic rounding of P is unbiased where round to
  nearest loses sub-half-ulp steps;
* state dicts load with ``weights_only=True`` and resume bit-exact (stochastic rounding included); a state of
  the other proj_dtype is a clear error at load and at step, with nothing changed; float64 parameters and FSDP2
  are refused in one line (FSDP2: tests/discrete/test_fsdp.py).
"""
from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from discrete import GaLore, PerLayer
from discrete.subspace import store_basis_
from osd_theory.kernels import orthogonality_defect
from test_lowbit import _saved


def _bench():
    """benchmarks/bf16_basis.py: the problem and optimizers whose recorded losses docs/scaling.md quotes."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bf16_basis.py"
    spec = importlib.util.spec_from_file_location("bench_bf16_basis", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


B = _bench()
CLASSES = B.CLASSES
_model, _opt, _data, _train = B.model, B.optimizer, B.data, B.train
# |final loss − float32 P's| / float32 P's after 200 steps (measured, docs/results/benchmarks/bf16_basis.jsonl:
# GaLore −0.062, RSO −0.077, OSD gd 0.000, OSD −0.16: its Adam on P turns the rounding of P into O(1) changes of
# the trajectory, as any round-off, docs/optimizers.md; the loss stays), rounded up
LOSS = {"osd": 0.4, "osd_gd": 0.05, "galore": 0.2, "rso": 0.2}


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_bf16_p_is_stored_in_bf16_and_tracks_float32_p(name):
    ref_model = _model()
    ref_opt = _opt(ref_model, name, "float32")
    ref = _train(ref_model, ref_opt, 200)
    model = _model()
    opt = _opt(model, name)
    losses = _train(model, opt, 200)
    for p, q in zip(opt.param_groups[1]["params"], ref_opt.param_groups[1]["params"]):
        st = opt.state[p]
        assert st["proj"].dtype == torch.bfloat16
        assert all(v.dtype == torch.float32 for k, v in st.items() if torch.is_tensor(v) and k.startswith("proj_"))
        # as orthonormal as float32's P (OSD's P leaves the Stiefel manifold in both) within bf16's 2⁻⁸ per entry
        defects = [float(orthogonality_defect(P.double())) for P in (st["proj"], ref_opt.state[q]["proj"])]
        assert defects[0] <= defects[1] * 1.5 + 4 * st["proj"].shape[-1] * 2.0 ** -8, defects
    assert abs(losses[-1] - ref[-1]) <= LOSS[name] * ref[-1], (losses[-1], ref[-1])
    assert losses[-1] < 0.2 * losses[0]                       # it trains


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_executor_runs_bf16_p(name):
    batched, per_matrix, per_layer = _model(), _model(), _model()
    _train(batched, _opt(batched, name), 12)
    _train(per_matrix, _opt(per_matrix, name, foreach=False), 12)
    opt = _opt(per_layer, name)
    PerLayer(opt)
    _train(per_layer, opt, 12)
    assert torch.equal(_flat(per_layer), _flat(batched))                      # the same step, prepared in the hook
    assert float((_flat(per_matrix) - _flat(batched)).norm() / _flat(batched).norm()) < (1e-2 if name == "osd" else 1e-4)


def test_round_to_nearest_loses_small_p_steps_and_stochastic_rounding_keeps_them():
    P = torch.full((64, 4), 0.15).to(torch.bfloat16)             # ulp(0.15) = 2⁻¹⁰ in bf16
    step = 2.0 ** -13                                            # an eighth of an ulp: below half of it
    nearest = P.clone()
    store_basis_(nearest, nearest.float() + step)
    assert torch.equal(nearest, P)                               # lost
    means = []
    for seed in range(200):
        kept = P.clone()
        store_basis_(kept, kept.float() + step, [torch.Generator().manual_seed(seed)])
        means.append(float((kept.float() - P.float()).mean()))
    # E[SR(x)] = x: the mean displacement is the step (1/8 of the draws round up a whole ulp; 200 × 256 draws)
    assert abs(sum(means) / len(means) - step) < 0.1 * step


@pytest.mark.parametrize("name", ["osd", "osd_gd", "galore"])
@pytest.mark.parametrize("sr", [False, True])
def test_bf16_p_resumes_bit_exact(name, sr):
    straight = _model()
    _train(straight, _opt(straight, name, stochastic_rounding=sr), 16)
    model = _model()
    first = _opt(model, name, stochastic_rounding=sr)
    _train(model, first, 8)
    resumed = _opt(model, name, stochastic_rounding=sr)
    resumed.load_state_dict(_saved(first))
    assert all(resumed.state[p]["proj"].dtype == torch.bfloat16 for p in resumed.param_groups[1]["params"])
    _train(model, resumed, 8, start=8)
    assert torch.equal(_flat(model), _flat(straight))


def test_a_state_of_the_other_proj_dtype_is_a_clear_error_at_load_and_at_step():
    model = _model()
    opt = _opt(model, "osd", "float32")
    _train(model, opt, 2)
    sd = _saved(opt)
    sd["param_groups"][1]["proj_dtype"] = "bf16"                  # a float32 P under a bf16 group
    other = _opt(model, "osd", "bf16")
    with pytest.raises(ValueError, match=r"'proj' \(P\) kept in torch.float32, but this group has proj_dtype='bf16'"
                                         r".*nothing was loaded"):
        other.load_state_dict(sd)
    assert not other.state
    opt.param_groups[1]["proj_dtype"] = "bf16"                   # changed under an existing state
    X, Y = _data()
    ((model(X) - Y) ** 2).mean().backward()
    before, sd = _flat(model), copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match="kept in torch.float32, but this group has proj_dtype='bf16'.*nothing was"):
        opt.step()
    assert torch.equal(before, _flat(model))
    assert all(torch.equal(v, opt.state_dict()["state"][i][k]) for i, st in sd["state"].items() for k, v in st.items()
               if torch.is_tensor(v))


def test_float64_parameters_and_bad_values_are_refused_in_one_line():
    W = torch.nn.Parameter(torch.zeros(8, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="proj_dtype='bf16' keeps P in low precision, but this group has float64"):
        GaLore([{"params": [W], "rank": 2, "proj_dtype": "bf16"}])
    with pytest.raises(ValueError, match="proj_dtype"):
        GaLore([{"params": [W.float()], "rank": 2, "proj_dtype": "int8"}])
