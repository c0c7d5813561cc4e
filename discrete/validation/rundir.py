"""Directory rules: one run per directory, never two at once, nothing lost by accident.

* A directory *holds a run* when it has any of ``RUN_MARKERS``. A new run refuses to start there
  unless ``--resume`` (continue it) or ``--overwrite`` (delete its files, ``RUN_FILES``, first).
* While a run is live its directory is locked (``flock`` on the directory itself, so the lock
  creates no file and the kernel drops it when the process dies, even by SIGKILL). A second run
  into a locked directory is refused.
* All checks that only read happen before the run writes anything (:func:`check_fresh`,
  :func:`check_writable`); :func:`claim` then takes the lock, checks again under it and creates
  the directory.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from osd_theory.errors import UserError

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

RUN_MARKERS = ("config.json", "log.jsonl", "checkpoint.pt")  # any of these: the directory holds a run
RUN_FILES = (*RUN_MARKERS, "meta.json", "events.jsonl")      # what --overwrite deletes
TEMP_GLOBS = ("checkpoint.tmp*", "*.json.tmp*", "log.tmp*")  # leftovers of a killed writer
SWEEP_FILE = "sweep.json"


def holds_run(d: Path) -> bool:
    return any((Path(d) / name).exists() for name in RUN_MARKERS)


def _existing_ancestor(d: Path) -> Path:
    d = Path(d).absolute()
    while not d.exists() and d != d.parent:
        d = d.parent
    return d


def check_writable(d: Path, flag: str = "--out") -> None:
    """Refuse a directory that cannot be created or written, before any work is done."""
    d = Path(d)
    if d.exists() and not d.is_dir():
        raise UserError(f"{flag} {d}: exists and is not a directory")
    base = _existing_ancestor(d)
    if not base.is_dir():
        raise UserError(f"{flag} {d}: cannot be created, {base} is not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {d}: {base} is not writable")


def check_fresh(d: Path, overwrite: bool) -> None:
    """A new run may start in ``d`` (read-only check; :func:`claim` repeats it under the lock)."""
    d = Path(d)
    if (d / SWEEP_FILE).exists():
        raise UserError(f"--out {d}: holds a sweep; give one of its run directories, or another --out")
    if holds_run(d) and not overwrite:
        found = ", ".join(n for n in RUN_MARKERS if (d / n).exists())
        raise UserError(f"--out {d}: already holds a run ({found}); pass --resume to continue it, --overwrite "
                        "to replace it, or choose another --out")


def clear_run(d: Path) -> None:
    """Delete a run's files (``--overwrite``); other files in the directory are left alone."""
    for name in RUN_FILES:
        (Path(d) / name).unlink(missing_ok=True)
    for pattern in TEMP_GLOBS:
        for p in Path(d).glob(pattern):
            p.unlink(missing_ok=True)


class DirLock:
    """An exclusive, non-blocking ``flock`` on a directory, held until :meth:`release`."""

    def __init__(self, d: Path):
        self.path, self.fd = Path(d), None

    def acquire(self) -> "DirLock":
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"--out {self.path}: another live run is using this directory (it is locked); "
                            "wait for it to end, or choose another --out") from None
        except OSError:  # a file system without flock: run unlocked rather than not at all
            os.close(fd)
            return self
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def check_not_live(d: Path) -> None:
    """Refuse early (before data and model are built) a directory a live run holds; claim() locks for real."""
    if Path(d).is_dir():
        DirLock(d).acquire().release()


def make_dir(d: Path) -> None:
    try:
        Path(d).mkdir(parents=True, exist_ok=True)
        probe = Path(d) / f".write-test{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--out {d}: cannot write there ({exc.strerror or exc})") from None


@contextlib.contextmanager
def claim(d: Path, *, fresh: bool, overwrite: bool, enabled: bool = True):
    """Create and lock ``d`` for a live run; a fresh run re-checks (and with --overwrite clears) it."""
    if not enabled:  # DDP ranks other than 0 write nothing
        yield None
        return
    make_dir(d)
    lock = DirLock(d).acquire()
    try:
        if fresh:
            check_fresh(d, overwrite)
            if overwrite:
                clear_run(d)
        yield lock
    finally:
        lock.release()

