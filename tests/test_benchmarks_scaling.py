"""The GPU benchmarks of issue 10 run on the CPU at tiny sizes (``--smoke``) and write the rows they promise.

benchmarks/memory.py: every optimizer × per-layer mode row, in one process; the byte counts it
measures (optimizer state, gradients held after backward, per-layer pending) equal the analytic formula
exactly, so the formula printed next to the GPU peaks is checked here. One row, with activation
checkpointing, also runs through the subprocess driver the GPU runs use. benchmarks/fsdp.py: FSDP2 and DDP
through torchrun with 2 gloo processes; both must reach the same loss (same data, same initialisation; OSD with Adam on a random P₀).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS_MEMORY = {"model", "optimizer", "per_layer", "batch", "seq_len", "peak_gb", "device", "analytic", "command"}
KEYS_FSDP = {"model", "optimizer", "mode", "gpus", "tokens_per_s", "peak_gb_per_gpu", "device", "command"}


def _run(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_memory_smoke_rows_match_the_formula(tmp_path):
    proc = _run("memory.py", "--smoke", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(tmp_path / "memory.jsonl")
    assert len(rows) == 2 + 3 * 3                 # AdamW off/in_backward + 3 optimizers × 3 modes
    for r in rows:
        assert KEYS_MEMORY <= set(r) and r["status"] == "ok", r
        # issue 21: provenance in every row (the checkout's commit, threads, whether the device was shared)
        assert len(r["git_hash"]) == 40 and r["git_source"] == "checkout" and r["torch_threads"] >= 1, r
        assert isinstance(r["device_shared"], (bool, type(None))) and r["command"].startswith("python3 benchmarks/"), r
        a = r["analytic"]
        assert r["optimizer_state_gb"] == pytest.approx(a["state"], rel=0, abs=1e-15), r
        assert r["grads_gb"] == pytest.approx(a["grads"], rel=0, abs=1e-15), r
        assert r["pending_gb"] == pytest.approx(a["pending"], rel=0, abs=1e-15), r
    modes = {(r["optimizer"], r["per_layer_mode"]): r for r in rows}
    assert modes[("galore", "deferred")]["grads_gb"] < modes[("galore", "off")]["grads_gb"]   # the point of the mode
    assert modes[("osd", "deferred")]["pending_gb"] > modes[("galore", "deferred")]["pending_gb"]  # + P's field


def test_memory_smoke_lean_rows_match_the_formula(tmp_path):
    """8-bit states, bf16 weights with stochastic rounding, P in bf16: the state bytes still equal the formula's."""
    proc = _run("memory.py", "--smoke", "--optimizers", "galore,osd", "--per-layer", "off", "--state-dtypes", "int8",
                "--proj-dtype", "bf16", "--weights", "bf16", "--stochastic-rounding", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(tmp_path / "memory.jsonl")
    assert [r["optimizer"] for r in rows] == ["galore", "osd"]
    for r in rows:
        assert r["status"] == "ok" and r["proj_dtype"] == "bf16" and r["state_dtype"] == "int8", r
        assert r["optimizer_state_gb"] == pytest.approx(r["analytic"]["state"], rel=0, abs=1e-15), r


def test_memory_subprocess_driver(tmp_path):
    proc = _run("memory.py", "--smoke", "--subprocess", "--optimizers", "osd", "--per-layer", "deferred",
                "--ac", "on", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = _rows(tmp_path / "memory.jsonl")
    assert row["status"] == "ok" and row["per_layer"] is True and row["activation_checkpointing"] is True, row
    assert row["optimizer_state_gb"] == pytest.approx(row["analytic"]["state"], rel=0, abs=1e-15)


def test_memory_rows_that_cannot_fit_the_cap_are_recorded_not_run(tmp_path):
    """7B AdamW: weights, gradients and state alone are 7B × 16 bytes ≈ 100 GiB > an 80 GB card's 79 GiB, so
    the row is written from the formula (a meta-device model: no memory, seconds on a CPU) and not trained."""
    proc = _run("memory.py", "--models", "7b", "--optimizers", "adamw", "--per-layer", "off", "--ac", "on",
                "--cap-gb", "79", "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = _rows(tmp_path / "memory.jsonl")
    assert KEYS_MEMORY <= set(row) and row["status"] == "exceeds_cap" and row["peak_gb"] is None, row
    a = row["analytic"]
    assert a["weights"] == pytest.approx(6738415616 * 4 / 2**30) and a["static"] > 79 == row["cap_gb"]
    assert "formula static" in proc.stdout


def test_fsdp_smoke_fsdp_and_ddp_reach_the_same_loss(tmp_path):
    pytest.importorskip("torch.distributed.fsdp")
    proc = _run("fsdp.py", "--smoke", "--optimizers", "osd", "--modes", "fsdp,ddp", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(tmp_path / "fsdp.jsonl")
    assert [r["mode"] for r in rows] == ["fsdp", "ddp"]
    for r in rows:
        assert KEYS_FSDP <= set(r) and r["status"] == "ok" and r["gpus"] == 2 and r["tokens_per_s"] > 0, r
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], rel=1e-5)
