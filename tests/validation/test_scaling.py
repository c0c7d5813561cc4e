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
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(cfg)


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
