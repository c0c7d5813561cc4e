"""Sharded checkpoints of ``--fsdp`` runs: torch.distributed.checkpoint (DCP) beside the run's checkpoint.pt.

A one-process checkpoint (:mod:`checkpoint`) holds the whole model and optimizer state; under FSDP2 every
process holds a shard of them, so each writes its own part with DCP into ``run_dir/checkpoint-dcp-<step>/``.
``checkpoint.pt`` (rank 0) holds everything else a resume needs — step, sequences, RNG state, the run's
extra entries — plus the folder's name and the SHA-256 of each of its files, all under the payload's checksum,
so a changed or missing shard is refused as a corrupt checkpoint is.

Order of a save: every process writes its shards; all agree that they did; rank 0 replaces checkpoint.pt
atomically and only then removes the folders of earlier steps. An interruption at any point leaves the
previous checkpoint.pt and the folder it names whole.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from discrete.validation import distributed as D
from discrete.validation.checkpoint import CHECKPOINT_NAME, rng_state, write_payload
from osd_theory.errors import UserError

PREFIX = "checkpoint-dcp-"


def _file_digests(folder: Path) -> dict[str, str]:
    out = {}
    for f in sorted(folder.iterdir()):
        h = hashlib.sha256()
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[f.name] = h.hexdigest()
    return out


def save_shards(run_dir: Path, *, model, optimizer, step: int, sequences: int, extra: dict, info, device) -> Path:
    """Every process: write its shards of ``model`` and ``optimizer``; rank 0 then writes checkpoint.pt."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    folder = run_dir / f"{PREFIX}{step}"
    failed = None
    try:
        msd, osd = get_state_dict(model, optimizer)
        dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(folder))
    except (OSError, RuntimeError) as exc:       # disk full, read-only
        failed = exc
    if not D.agree(failed is None, info, device):
        why = str(failed).splitlines()[0] if failed else "another process failed to write its shards"
        raise UserError(f"cannot write the sharded checkpoint {folder} at step {step}: {why}; the previous "
                        "checkpoint is kept")
    path = run_dir / CHECKPOINT_NAME
    if info.is_main:
        payload = {"step": step, "sequences": sequences, "rng": rng_state(), "extra": extra, "dcp": folder.name,
                   "dcp_files": _file_digests(folder), "world": info.world}
        write_payload(path, payload, step)
        for old in run_dir.glob(f"{PREFIX}*"):
            if old.is_dir() and old.name != folder.name:
                shutil.rmtree(old, ignore_errors=True)
    D.barrier(info)
    return path


def _verified(run_dir: Path, ck: dict, why: str) -> Path:
    """The shard folder checkpoint.pt ``ck`` names, its files checked against the recorded SHA-256s."""
    folder = run_dir / ck["dcp"]
    if not folder.is_dir():
        raise UserError(f"{why}{run_dir / CHECKPOINT_NAME} names the shard folder {folder.name}, which is missing")
    if _file_digests(folder) != ck["dcp_files"]:
        raise UserError(f"{why}the shards in {folder} do not match the checksums in {CHECKPOINT_NAME} "
                        "(a file was changed, added or removed); restart the run with --overwrite")
    return folder


def load_shards(run_dir: Path, ck: dict, model, optimizer) -> None:
    """Load the DCP folder named by checkpoint.pt ``ck`` into the (FSDP2) model and optimizer, its files verified."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if ck.get("world") not in (None, world):
        raise UserError(f"--resume: the sharded checkpoint in {run_dir} was written by {ck['world']} processes, "
                        f"this run has {world}; resume with the same number of processes")
    folder = _verified(run_dir, ck, "--resume: ")
    # get_state_dict creates the optimizer state (a zero-gradient, zero-lr step) so that DCP loads into it
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optimizer": osd}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def load_model_weights(run_dir: Path, ck: dict) -> dict:
    """The whole model state dict of an --fsdp checkpoint, read into one process (``osd-theory export``): each
    tensor allocated at the full shape and dtype the shard metadata records, then filled by DCP."""
    import torch
    import torch.distributed.checkpoint as dcp

    folder = _verified(run_dir, ck, "")
    meta = dcp.FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    model = {key.removeprefix("model."): torch.empty(md.size, dtype=md.properties.dtype)
             for key, md in meta.items() if key.startswith("model.")}
    state = {"model": model}
    dcp.load(state, checkpoint_id=str(folder), no_dist=True)
    return state["model"]
