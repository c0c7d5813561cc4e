"""Checkpoints: model + optimizer + data position + RNG state, loadable with ``weights_only=True``.

Written atomically (temporary file in the same directory, then ``os.replace``), so an
interruption leaves either the previous checkpoint or the new one, never half of one; a failed
write (disk full) removes its temporary file and keeps the previous checkpoint. RNG states are
stored as uint8 tensors (``torch.get_rng_state``), which ``weights_only`` accepts.

Each checkpoint carries ``checksum``: SHA-256 over every tensor's dtype, shape and bytes and every
plain value, in a fixed order (:func:`digest`). ``torch.load`` does not check the bytes of a tensor
record, so a flipped bit would otherwise resume silently; :func:`load_checkpoint` verifies it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from osd_theory.errors import UserError

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


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=repr):
            h.update(f"{key!r}=".encode())
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)};".encode())
        for item in obj:
            _feed(h, item)
    else:  # int, float, bool, str, None
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def digest(payload: dict) -> str:
    """SHA-256 (hex) of a checkpoint payload without its ``checksum`` entry."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "checksum"})
    return h.hexdigest()


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
    return write_payload(path, payload, step)


def write_payload(path: Path, payload: dict, step: int) -> Path:
    """Add the checksum and write ``payload`` to ``path`` atomically (UserError on a failed write, nothing lost)."""
    payload["checksum"] = digest(payload)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # disk full, read-only, quota; torch wraps some as RuntimeError
        tmp.unlink(missing_ok=True)  # a half-written file would keep the disk full
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        kept = "the previous checkpoint is kept" if path.is_file() else "no checkpoint was written"
        raise UserError(f"cannot write checkpoint {path} at step {step}: {reason}; {kept}") from None
    return path


def load_checkpoint(run_dir: str | Path, map_location="cpu") -> dict:
    """The checkpoint of ``run_dir``, its checksum verified (UserError if missing, unreadable or corrupt)."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path} (the run stopped before its first checkpoint; "
                        "start it again with --overwrite)")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors have many types; all mean the same to the user
        why = (str(exc).strip().splitlines() or ["empty or truncated file"])[0]  # EOFError of a 0-byte file: no text
        raise UserError(f"--resume: cannot load {path} ({type(exc).__name__}: {why})") from None
    if not isinstance(ck, dict) or "step" not in ck:
        raise UserError(f"--resume: {path} is not a validation checkpoint")
    if "checksum" not in ck:  # every checkpoint this code wrote has one: without it the bytes cannot be trusted
        raise UserError(f"--resume: {path} has no checksum entry, so its contents cannot be verified; "
                        "restart the run with --overwrite")
    if ck["checksum"] != digest(ck):
        raise UserError(f"--resume: {path} is corrupt (its checksum does not match its contents); "
                        "restart the run with --overwrite")
    return ck


def restore(ck: dict, model, optimizer, cfg, data_key: str) -> None:
    """Load a checkpoint into a freshly built model and optimizer, and the RNG state.

    UserError when it belongs elsewhere: another optimizer or model than the run's config says,
    another corpus (``data_key``: tokenizer, train tokens, valid files), or state that does not fit.
    """
    extra = ck.get("extra", {})
    for key, now in (("optimizer", cfg.optimizer), ("model", cfg.model)):
        if extra.get(key, now) != now:
            raise UserError(f"--resume: the checkpoint in {cfg.out} was written by a {extra[key]} run, "
                            f"not {now}; its config.json does not belong to it")
    if extra.get("data_key", data_key) != data_key:
        raise UserError(f"--resume: the corpus differs from the one the run in {cfg.out} trained on "
                        "(other files or other content under --data / --train-files / --valid-files)")
    try:
        if "dcp" in ck:        # an --fsdp run: the shards are in a DCP folder beside checkpoint.pt
            from discrete.validation.checkpoint_dcp import load_shards

            load_shards(Path(cfg.out), ck, model, optimizer)
        else:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--resume: the checkpoint in {cfg.out} does not fit this model/optimizer ({first})") from None
    set_rng_state(ck["rng"])
