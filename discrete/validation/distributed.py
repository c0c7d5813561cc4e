"""Process-group setup for ``torchrun`` (DDP): NCCL on CUDA, gloo on CPU.

A run is distributed iff ``WORLD_SIZE`` > 1 in the environment (torchrun sets it, with ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


def setup(device_name: str) -> tuple[DistInfo, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, info)
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world)
    return info, device


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def agree(ok: bool, info: DistInfo, device: torch.device) -> bool:
    """True iff ``ok`` on every rank (a MIN all-reduce): one rank's refusal stops all of them,
    instead of leaving the others waiting in the first collective."""
    if not info.enabled:
        return ok
    flag = torch.tensor(1.0 if ok else 0.0, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def teardown(info: DistInfo, finished: bool = False) -> None:
    """Leave the process group. ``finished`` (the run ended normally on this rank): meet the other ranks
    first, so none tears gloo down while a peer is still in it (that can abort the process at exit,
    "terminate called without an active exception"); after an error a peer may be gone, so no barrier."""
    if info.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def exit_process(code: int = 0) -> NoReturn:
    """End this process now, without interpreter finalization: flush stdout and stderr, then ``os._exit(code)``.

    A process that ran gloo collectives (FSDP2 or DDP on the CPU) can abort while the interpreter shuts down,
    after all its work is done ("terminate called without an active exception", SIGABRT: gloo's threads meet the
    interpreter's teardown; seen in CI after both processes had finished, met at a barrier and destroyed the
    group). The validate CLI calls this last in a distributed worker, after :func:`teardown` and with every file
    closed; a script that calls ``train`` under torchrun may do the same.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
