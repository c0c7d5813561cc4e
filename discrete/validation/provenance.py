"""Where a number came from: commit, command, device, versions, threads, and whether the device was shared.

:func:`record` is the one helper behind ``meta.json`` of a validation run and the rows that
``benchmarks/*.py`` and ``scripts/validation/step_bench.py`` write.

The commit comes from, in order: ``OSD_GIT_HASH`` (set by hand or CI), ``git`` in the checkout the
code runs from, the file :data:`BUILD_COMMIT_FILE` that a build writes into the package (setup.py),
or the ``vcs_info`` pip records for ``pip install git+...``. Without any of these ``git_hash`` is
null, ``git_source`` says why, and a warning is printed: never a silent "unknown".

Sharing: on CUDA, the other processes nvidia-smi lists on the same GPU (3-6 jobs on one card make
tokens/s meaningless); on a CPU, the 1-minute load average before the run against the usable cores
(another process busy on a 2-core machine halves a run's speed). ``device_shared`` is None where
it cannot be told.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_COMMIT_FILE = Path(__file__).resolve().parent / "_build_commit.txt"  # written by setup.py's build; git-ignored
DIST_NAME = "osd-theory"
CPU_BUSY_LOAD = 0.5  # runnable processes (1-min load average) beyond which another job shares the CPU


def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _pip_vcs_commit() -> str | None:
    """The commit pip recorded for ``pip install git+URL`` (PEP 610 direct_url.json), if any."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        text = distribution(DIST_NAME).read_text("direct_url.json")
    except (ImportError, PackageNotFoundError, OSError):
        return None
    try:
        return (json.loads(text or "{}").get("vcs_info") or {}).get("commit_id")
    except ValueError:
        return None


def git_state(warn: bool = True) -> dict:
    """``{"git_hash", "git_dirty", "git_source"}``; see the module docstring for the order of sources."""
    if os.environ.get("OSD_GIT_HASH"):
        return {"git_hash": os.environ["OSD_GIT_HASH"], "git_dirty": None, "git_source": "OSD_GIT_HASH"}
    if (REPO_ROOT / ".git").exists():
        head = _git("rev-parse", "HEAD")
        if head is not None and head.returncode == 0:
            dirty = _git("status", "--porcelain", "--untracked-files=no")
            return {"git_hash": head.stdout.strip(), "git_dirty": bool(dirty and dirty.stdout.strip()),
                    "git_source": "checkout"}
    if BUILD_COMMIT_FILE.is_file():
        commit = BUILD_COMMIT_FILE.read_text().strip()
        if commit:
            return {"git_hash": commit, "git_dirty": None, "git_source": "package (written at build time)"}
    commit = _pip_vcs_commit()
    if commit:
        return {"git_hash": commit, "git_dirty": None, "git_source": "pip (direct_url.json)"}
    why = ("unknown: not a git checkout, and the installed package records no commit (build it from a checkout, "
           "or set OSD_GIT_HASH)")
    if warn:
        warnings.warn(f"osd-theory: the code's git commit is {why}", RuntimeWarning, stacklevel=2)
    return {"git_hash": None, "git_dirty": None, "git_source": why}


def command() -> str:
    """The command line as typed (``osd-theory validate ...``, ``python3 benchmarks/memory.py ...``)."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if prog.endswith(".py"):
        prog = f"python3 {sys.argv[0]}"
    elif prog in ("__main__.py", "-c", "-m") or prog.startswith("python"):
        prog = Path(sys.executable).name
    return shlex.join([prog, *sys.argv[1:]])


def threads() -> dict:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "cpus_usable": usable}


def _smi(query: str) -> list[list[str]] | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-{query}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [[p.strip() for p in ln.split(",")] for ln in out.stdout.splitlines()] if out.returncode == 0 else None


def _cuda_sharing(device) -> tuple[bool | None, str]:
    """Other processes on this GPU, from nvidia-smi (which does not initialise CUDA in this process)."""
    gpus, apps = _smi("gpu=index,uuid"), _smi("compute-apps=gpu_uuid,pid")
    if gpus is None or apps is None:
        return None, "nvidia-smi not available"
    index = getattr(device, "index", None) or 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    physical = visible[index] if index < len(visible) else str(index)
    uuid = next((u for i, u in gpus if i == physical or u == physical), None)
    others = {pid for u, pid in apps if pid.isdigit() and int(pid) != os.getpid() and (uuid is None or u == uuid)}
    return bool(others), f"{len(others)} other process(es) on GPU {physical} at the start (nvidia-smi)"


def sharing(device) -> dict:
    """``device_shared`` (bool or None) and ``device_shared_how`` for a torch.device."""
    if getattr(device, "type", str(device)) == "cuda":
        shared, how = _cuda_sharing(device)
    elif hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        shared = load > CPU_BUSY_LOAD
        how = f"1-min load average {load:.2f} at the start (shared above {CPU_BUSY_LOAD})"
    else:
        shared, how = None, "no load average on this system"
    return {"device_shared": shared, "device_shared_how": how}


def device_name(device) -> str:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def record(device, warn: bool = True, name: str | None = None) -> dict:
    """The provenance fields every record carries (meta.json, benchmark rows); ``name``: the device's name
    when the caller knows it (a parent process that must not initialise CUDA)."""
    import torch

    device = torch.device(device) if isinstance(device, str) else device
    return {"command": command(), **git_state(warn), "python": platform.python_version(), "torch": torch.__version__,
            "device": name or device_name(device), **threads(), **sharing(device)}
