"""How many CPU threads torch uses for a run (``--threads``; 0: :func:`auto_threads`).

torch's default is one thread per core of the machine, whatever else runs there. On a small
machine shared with other jobs every extra thread of ours competes with theirs, and its OpenMP
workers spin while they wait: the README's tiny run on a 2-core machine with a load average of
12-15 from other jobs took 118-121 s wall (15-17 s CPU) with 2 threads and 32-34 s (3 s CPU) with
one (docs/results/validation/README.md, "Threads"). Auto takes the cores this process may run on
(``sched_getaffinity``: a container's or taskset's limit) less the cores other processes keep busy
(the 1-minute load average, rounded down), at least 1, at most ``AUTO_MAX`` and torch's default.
The number used is recorded in ``meta.json`` (provenance.py).
"""
from __future__ import annotations

import math
import os

import torch

AUTO_MAX = 8  # beyond this the tiny and 60M CPU runs gain little (their matrices are small)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def busy_cores() -> int:
    """Cores other processes keep busy: the 1-minute load average, rounded down (0 where unknown)."""
    return math.floor(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0


def auto_threads() -> int:
    return max(1, min(usable_cores() - busy_cores(), AUTO_MAX, torch.get_num_threads()))


def apply_threads(requested: int) -> int:
    """Set torch's intra-op threads (``requested``, or auto for 0); returns the number set."""
    n = requested or auto_threads()
    torch.set_num_threads(n)
    return n
