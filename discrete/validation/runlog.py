"""The run directory: resolved config, provenance (git hash, command, versions) and the JSONL log."""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from discrete.validation.config import REPO_ROOT

LOG_NAME = "log.jsonl"


def git_state() -> dict:
    """HEAD and whether the tree is dirty; ``OSD_GIT_HASH`` overrides (for copies without .git)."""
    if os.environ.get("OSD_GIT_HASH"):
        return {"git_hash": os.environ["OSD_GIT_HASH"], "git_dirty": None}
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            return {"git_hash": head.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"git_hash": None, "git_dirty": None}


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def write_provenance(run_dir: Path, config: dict, device: torch.device, world: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config)
    meta = {
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "argv": sys.argv,
        **git_state(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "world_size": world,
    }
    write_json(run_dir / "meta.json", meta)


class JsonlLog:
    """One JSON object per line, flushed per record; on resume, records after the checkpoint are cut."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None = None):
        self.path = Path(run_dir) / LOG_NAME
        self.enabled = enabled
        if enabled and resume_step is not None and self.path.is_file():
            keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= resume_step]
            write_text = "".join(ln + "\n" for ln in keep)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(write_text)
            os.replace(tmp, self.path)
        elif enabled and resume_step is None:
            self.path.write_text("")

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def read_log(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / LOG_NAME
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
