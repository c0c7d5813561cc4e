"""scripts/validation/parallel_runs.sh: which GPU each job runs on, and that every run reaches the tarball.

The trainer and nvidia-smi are replaced by stubs on PATH (the script's logic is bash: the pool, the GPU
assignment, the saving), so this runs in a fraction of a second without a GPU.
"""
from __future__ import annotations

import os
import stat
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "validation" / "parallel_runs.sh"

# python3 stub: a validate run writes the CUDA_VISIBLE_DEVICES it saw into its run dir, then takes 0.5 s (a run
# named *slow* 2 s, *fast* none: jobs launched together are all still running when the next one is placed);
# report prints nothing
PYTHON = """#!/usr/bin/env bash
out=""; prev=""
for a in "$@"; do [ "$prev" = "--out" ] && out=$a; prev=$a; done
if [ -n "$out" ]; then mkdir -p "$out"; echo "${CUDA_VISIBLE_DEVICES-unset}" > "$out/gpu"
  case "$out" in *slow*) sleep 2;; *fast*) ;; *) sleep 0.5;; esac; echo "done: step 1"; fi
"""
NVIDIA_SMI = """#!/usr/bin/env bash
if [ "$1" = "-L" ]; then for i in $(seq 0 $((FAKE_GPUS - 1))); do echo "GPU $i: Fake (UUID: GPU-$i)"; done
else for i in $(seq 1 $FAKE_GPUS); do echo "Fake, 1 MiB"; done; fi
"""


def _stub(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def run_script(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "python3", PYTHON)
    _stub(bin_dir, "nvidia-smi", NVIDIA_SMI)

    def run(jobs, gpus_on_machine, **env):
        tag = f"t{uuid.uuid4().hex[:8]}"
        out = tmp_path / f"out-{tag}"
        full_env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "GPUS")}
        full_env.update({"PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out), "COMMON": "",
                         "N": str(len(jobs)), "FAKE_GPUS": str(gpus_on_machine), **env})
        # capture_output waits for the pipes to close: the once-orphaned sleep of the minute saver held them
        # for up to 60 s after the script ended, so a regression there shows up as this timeout
        proc = subprocess.run(["bash", str(SCRIPT), tag, *jobs], cwd=ROOT, env=full_env, capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        with tarfile.open(out / f"runs-{tag}.tgz") as tar:
            seen = {Path(m.name).parts[-2]: tar.extractfile(m).read().decode().strip()
                    for m in tar.getmembers() if m.name.endswith("/gpu")}
        subprocess.run(["rm", "-rf", f"/tmp/runs-{tag}", f"/tmp/warmup-{tag}", f"/tmp/warmup-{tag}.log"])
        return seen, proc.stdout

    return run


def test_jobs_go_round_robin_over_the_gpus_of_the_machine(run_script):
    seen, stdout = run_script(["a adamw", "b adamw", "c adamw", "d adamw", "e adamw"], gpus_on_machine=2)
    assert seen == {"a": "0", "b": "1", "c": "0", "d": "1", "e": "0"}
    assert "=== c (GPU 0): done" in stdout and "=== d (GPU 1): done" in stdout


def test_one_gpu_leaves_cuda_visible_devices_alone(run_script):
    seen, _ = run_script(["a adamw", "b adamw"], gpus_on_machine=1)
    assert seen == {"a": "unset", "b": "unset"}


def test_a_caller_pinned_card_is_shared_by_every_job(run_script):
    """CUDA_VISIBLE_DEVICES=1 on a 4-GPU machine: every job runs on card 1 (no GPUS given)."""
    seen, _ = run_script(["a adamw", "b adamw", "c adamw"], gpus_on_machine=4, CUDA_VISIBLE_DEVICES="1")
    assert seen == {"a": "1", "b": "1", "c": "1"}


def test_gpus_overrides_the_count(run_script):
    seen, _ = run_script(["a adamw", "b adamw", "c adamw"], gpus_on_machine=4, GPUS="3")
    assert seen == {"a": "0", "b": "1", "c": "2"}


def test_a_pool_starts_the_next_job_on_the_gpu_that_freed_up(run_script):
    """N=2 on 2 GPUs: 'slow' holds GPU 0, 'fast' ends at once, so 'c' goes to GPU 1 (i mod G would say 0)."""
    seen, _ = run_script(["slow adamw", "fast adamw", "c adamw"], gpus_on_machine=2, N="2")
    assert seen == {"slow": "0", "fast": "1", "c": "1"}
