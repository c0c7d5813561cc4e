"""Two (or more) gloo processes for the distributed tests: start them, and let them leave cleanly.

Why a helper: a worker that returns normally tears gloo down during interpreter finalization, and a gloo
thread that still holds a tensor then aborts the process (SIGABRT, "terminate called without an active
exception"; seen in CI even after a barrier). A worker therefore ends with :func:`leave`, which leaves
together with its peers and exits without finalization (``discrete.validation.distributed.exit_process``, which
the validate CLI's torchrun workers use too). Each process's stdout and stderr go to a file, and a
failure is raised as one line that ends with the tail of the failed process's output (the CI log shows only
that line).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable


def _run(rank: int, worker: Callable, logs: str, *args) -> None:
    fd = os.open(os.path.join(logs, f"process-{rank}.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    worker(rank, *args)


def start(worker: Callable, args: tuple, logs: Path, nprocs: int = 2) -> None:
    """Run ``worker(rank, *args)`` in ``nprocs`` spawned processes (spawn, not fork: a child forked after the
    parent ran OpenMP regions can hang in its first parallel op, seen in CI); their output is kept in ``logs``.

    Raises RuntimeError naming the failed process, how it ended and the last lines it printed."""
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException, ProcessRaisedException

    logs.mkdir(parents=True, exist_ok=True)
    try:
        mp.start_processes(_run, args=(worker, str(logs), *args), nprocs=nprocs, join=True, start_method="spawn")
    except ProcessException as exc:
        log = logs / f"process-{exc.error_index}.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-12:] if log.exists() else ["(no output)"]
        lines = [line for line in str(exc).splitlines() if line.strip()]
        what = lines[-1] if isinstance(exc, ProcessRaisedException) else lines[0]   # the raised exception's line
        raise RuntimeError(f"process {exc.error_index}: {what}; its last output: " + " | ".join(tail)) from exc


def leave() -> None:
    """End a worker: wait for every process, destroy the process group, exit without interpreter finalization
    (see the module docstring). Call it after the results are written."""
    import torch.distributed as dist

    from discrete.validation.distributed import exit_process

    dist.barrier()
    dist.destroy_process_group()
    exit_process(0)

