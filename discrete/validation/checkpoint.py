"""Checkpoints: model + optimizer + data position + RNG state, loadable with ``weights_only=True``.

Written atomically (temporary file in the same directory, then ``os.replace``), so an
interruption leaves either the previous checkpoint or the new one, never half of one. RNG states
are stored as uint8 tensors (``torch.get_rng_state``), which ``weights_only`` accepts.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(run_dir: str | Path, *, model, optimizer, step: int, sequences: int, extra: dict | None = None) -> Path:
    """Write ``run_dir/checkpoint.pt`` for the state after ``step`` steps (``sequences`` consumed)."""
    path = Path(run_dir) / CHECKPOINT_NAME
    payload = {
        "step": step,
        "sequences": sequences,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "extra": extra or {},
    }
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(run_dir: str | Path, map_location="cpu") -> dict:
    from osd_theory.errors import UserError

    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors have many types; all mean the same to the user
        raise UserError(f"--resume: cannot load {path} ({type(exc).__name__}: {exc})") from None
