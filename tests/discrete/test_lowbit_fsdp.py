"""FSDP2 with low-precision states (issue 22 item 3): 2 gloo processes equal one process.

The 8-bit blocks run along the last dimension, and FSDP2 shards matrices (and their Ĝ-shaped or P-shaped
state) by rows, so every block lives whole on one process: the codes and block scales a process keeps are
the rows of the single-process ones, and the sharded trajectory is the single-process one up to the
float32 round-off of the reduce-scatter (which can move a value across a rounding threshold: one code
step, ~1 % of its block's absmax, in that moment). The model, batches and sharding are those of
tests/discrete/test_fsdp.py (uneven shards, both projection sides, an empty shard). Checked after 5 steps:
parameters against the single-process run to 1e-5 relative (measured 2e-8 to 6e-8 for every config: no
code flipped here), the state codes at most one step apart, and a torch.distributed.checkpoint round trip after 2
steps bit-exact (integer codes survive DCP as they are).
"""
from __future__ import annotations

import pytest
import torch

from discrete import OPTIMIZERS
from two_processes import leave, start
from test_fsdp import BATCH, STEPS, SAVE_AT, WORLD, flat, make_model, train

P2 = {"rank": 2, "update_proj_gap": 2}
CONFIGS = {   # name -> (optimizer, constructor keywords, projected-group keys)
    "adamw_int8": ("adamw", {"lr": 1e-2, "state_dtype": "int8"}, None),
    "galore_int8": ("galore", {"lr": 1e-2, "state_dtype": "int8"}, {**P2, "scale": 0.5}),
    "galore_bf16": ("galore", {"lr": 1e-2, "state_dtype": "bf16"}, {**P2, "scale": 0.5}),
    "osd_int8": ("osd", {"lr": 1e-2, "state_dtype": "int8"}, {"rank": 2, "proj_init": "random", "pca_lambda": 0.5,
                                                              "proj_state_dtype": "int8"}),
    "osd_int8_right": ("osd", {"lr": 1e-2, "state_dtype": "int8"}, {"rank": 2, "proj_type": "right",
                                                                    "proj_init": "random", "proj_optimizer": "gd",
                                                                    "alpha": 1.0}),
}
TOL = 1e-5          # one flipped code moves its entry by ~1 % of its block's absmax, then a step of lr·1e-2


def make_opt(model: torch.nn.Module, name: str):
    cls, kw, proj = CONFIGS[name]
    params = list(model.parameters())
    if proj is None:
        return OPTIMIZERS[cls]([{"params": params}], **kw)
    mats = [p for p in params if p.ndim == 2 and min(p.shape) >= proj["rank"]]
    rest = [p for p in params if not any(p is q for q in mats)]
    return OPTIMIZERS[cls]([{"params": rest}, {"params": mats, **proj}], **kw)


def _worker(rank: int, path: str, out: str) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from torch.distributed.fsdp import fully_shard

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}.store", rank=rank, world_size=WORLD)
    lo, hi = rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD

    def build(name):
        model = make_model()
        for m in model:
            if isinstance(m, torch.nn.Linear):
                fully_shard(m)
        fully_shard(model)
        return model, make_opt(model, name)

    res: dict = {"params": {}, "state": {}, "dcp": {}}
    for name in CONFIGS:
        model, opt = build(name)
        train(model, opt, range(SAVE_AT), lo, hi)
        msd, osd = get_state_dict(model, opt)
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=f"{path}.{name}")
        train(model, opt, range(SAVE_AT, STEPS), lo, hi)
        res["params"][name] = [p.full_tensor().detach() for p in model.parameters()]
        res["state"][name] = [{k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in opt.state[p].items()
                               if torch.is_tensor(v) and k != "step"} for p in model.parameters()]
        again, opt2 = build(name)
        sd = dict(zip(("model", "optim"), get_state_dict(again, opt2)))
        dcp.load(sd, checkpoint_id=f"{path}.{name}")
        set_state_dict(again, opt2, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
        train(again, opt2, range(SAVE_AT, STEPS), lo, hi)
        res["dcp"][name] = bool(torch.equal(flat(p.full_tensor() for p in again.parameters()),
                                            flat(res["params"][name])))
    if rank == 0:
        torch.save(res, out)
    leave()


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory):
    pytest.importorskip("torch.distributed.fsdp")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("needs torch.distributed with gloo")
    root = tmp_path_factory.mktemp("fsdp_lowbit")
    path, out = str(root / "run"), str(root / "result.pt")
    start(_worker, (path, out), root / "logs", WORLD)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fsdp2_with_low_precision_states_equals_one_process(fsdp, name):
    model = make_model()
    opt = make_opt(model, name)
    train(model, opt, range(STEPS))
    ref, got = flat(model.parameters()), flat(fsdp["params"][name])
    assert float((got - ref).norm() / ref.norm()) < TOL
    for p, sharded in zip(model.parameters(), fsdp["state"][name]):
        mine = {k: v for k, v in opt.state[p].items() if torch.is_tensor(v) and k != "step"}
        assert set(mine) == set(sharded)
        for k, v in mine.items():
            assert v.dtype == sharded[k].dtype and v.shape == sharded[k].shape, k
            if v.dtype in (torch.int8, torch.uint8):
                assert int((v.int() - sharded[k].int()).abs().max()) <= 1, k
    assert fsdp["dcp"][name]
