"""``osd-theory validate --per-layer`` and ``--fsdp`` (docs/scaling.md) against the ordinary runs.

Both compare logged losses, gradient norms and the final validation loss with the ordinary run on the
same global batch (rel 1e-5: float32 round-off; GaLore, whose trajectory does not amplify round-off,
see tests/discrete/test_fsdp.py). The discrete-level equalities are in tests/discrete.
"""
from __future__ import annotations

import json
import os
import socket

import pytest
import torch

from discrete.validation.runlog import read_log
from discrete.validation.trainer import train
from osd_theory.errors import UserError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg) -> None:
    from discrete.validation.distributed import exit_process

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(cfg)             # ends with teardown (barrier, destroy); then leave without finalization (CI saw SIGABRT)
    exit_process(0)


def _same_logs(a_dir: str, b_dir: str, rel: float = 1e-5) -> None:
    a, b = read_log(a_dir), read_log(b_dir)
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) > 3
    for ra, rb in zip(a, b):
        for key in ("loss", "val_loss", "grad_norm"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=rel), (ra["step"], key)


def test_per_layer_run_equals_the_ordinary_run(make_cfg, tmp_path):
    """2 micro-batches a step (accumulation), clipping at 1.0 (the norms here are ~3: it bites), the schedule."""
    one = make_cfg(optimizer="galore", steps=4, micro_batch_size=2, out=str(tmp_path / "one"))
    train(one)
    pl = make_cfg(optimizer="galore", steps=4, micro_batch_size=2, per_layer=True, out=str(tmp_path / "pl"))
    train(pl)
    _same_logs(one.out, pl.out)
    assert max(r["grad_norm"] for r in read_log(pl.out) if "grad_norm" in r) > 1.0
    assert json.loads((tmp_path / "pl" / "config.json").read_text())["per_layer"] is True


@pytest.mark.parametrize("loss_chunk", [0, 40])
def test_fsdp_two_gloo_processes_match_one_process(make_cfg, tmp_path, loss_chunk):
    """17 validation windows: the processes hold 9 and 8, so evaluation must keep their forwards in step.
    With a chunked loss the head's weight is recomputed from in backward, after FSDP2 has swapped the
    root's parameters: the run must still equal the one-process, one-piece run."""
    one = make_cfg(optimizer="galore", steps=4, micro_batch_size=2, val_tokens=17 * 16, out=str(tmp_path / "one"))
    train(one)
    two = make_cfg(optimizer="galore", steps=4, fsdp=True, val_tokens=17 * 16, loss_chunk=loss_chunk,
                   out=str(tmp_path / "two"))
    # spawn, not fork: a child forked after the parent ran OpenMP regions can hang in its first parallel op (seen in CI)
    torch.multiprocessing.start_processes(_worker, args=(2, _free_port(), two), nprocs=2, join=True,
                                          start_method="spawn")
    _same_logs(one.out, two.out)


@pytest.mark.parametrize("kw, message", [
    (dict(optimizer="adamw", per_layer=True), "has none"),
    (dict(optimizer="galore", fsdp=True), "2 or more processes"),
])
def test_unsupported_combinations_are_user_errors(make_cfg, kw, message):
    with pytest.raises(UserError, match=message):
        train(make_cfg(**kw))


def _two(cfg) -> None:
    torch.multiprocessing.start_processes(_worker, args=(2, _free_port(), cfg), nprocs=2, join=True,
                                          start_method="spawn")


@pytest.mark.parametrize("optimizer", ["galore", "osd"])
def test_fsdp_run_checkpoints_through_dcp_and_resumes_exactly(make_cfg, tmp_path, optimizer):
    """Under --fsdp every process writes its shards (torch.distributed.checkpoint) beside checkpoint.pt: a run
    stopped after step 3 and resumed logs what the uninterrupted run logs, bit for bit; a changed shard file is
    refused by name, and so is a resume with another number of processes."""
    import dataclasses

    from discrete.validation.checkpoint import load_checkpoint

    full = make_cfg(optimizer=optimizer, steps=5, fsdp=True, log_every=1, out=str(tmp_path / "full"))
    _two(full)
    part = make_cfg(optimizer=optimizer, steps=5, fsdp=True, log_every=1, stop_after=3, out=str(tmp_path / "part"))
    _two(part)
    ck = load_checkpoint(part.out)
    assert ck["step"] == 3 and ck["dcp"] == "checkpoint-dcp-3" and ck["dcp_files"]
    assert sorted(p.name for p in (tmp_path / "part").glob("checkpoint-dcp-*")) == ["checkpoint-dcp-3"]
    _two(dataclasses.replace(part, stop_after=None, resume=True))
    a, b = read_log(full.out), read_log(part.out)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss", "val_loss", "grad_norm"):
            assert ra.get(key) == rb.get(key), (ra["step"], key)
    assert load_checkpoint(part.out)["dcp"] == "checkpoint-dcp-5"          # the older folder is gone
    assert [p.name for p in (tmp_path / "part").glob("checkpoint-dcp-*")] == ["checkpoint-dcp-5"]
    if optimizer == "galore":                  # the whole model can be exported from the shards in one process
        pytest.importorskip("transformers")
        from discrete.validation.export_cli import export
        from discrete.validation.checkpoint_dcp import load_model_weights
        export(part.out, tmp_path / "hf")
        def weights(name):
            return load_model_weights(tmp_path / name, load_checkpoint(tmp_path / name))

        a, b = weights("full"), weights("part")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)     # the resumed run's end state
        assert (tmp_path / "hf" / "model.safetensors").is_file()
    # a changed shard: refused with the reason, before anything trains
    shard = next((tmp_path / "part" / "checkpoint-dcp-5").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes() + b"x")
    with pytest.raises(Exception) as err:
        _two(dataclasses.replace(part, stop_after=None, resume=True, steps=6))
    assert "do not match the checksums" in str(err.value)
