"""TensorBoard events of a run (``validate --tensorboard DIR``): the scalars of ``log.jsonl``, nothing else.

Every record the trainer writes to ``log.jsonl`` (train records: loss, ppl, lr, grad_norm, tokens_per_s,
step_time_s, mfu_tflops, memory and the theory metrics; eval records: val_loss, val_ppl, coverage)
is also written to ``DIR/<run name>`` (the name of ``--out``, so the runs of a sweep, or any runs
given one DIR, show as separate runs of ``tensorboard --logdir DIR``), at the record's ``step``, as
one scalar per number, tagged ``<kind>/<key>`` (``train/loss``, ``eval/val_ppl``; a nested dict's
keys are joined with ``/``). Strings, booleans, lists and None are not scalars and stay in the JSONL
only. ``log.jsonl`` remains the record ``osd-theory report`` reads.

Written through ``torch.utils.tensorboard``, which needs the ``tensorboard`` package: an optional
extra (``pip install 'osd-theory[tensorboard]'``), imported only when the flag is given; without it the
flag is a one-line error before anything runs. A resume opens a new event file with
``purge_step`` = the resume step + 1, so TensorBoard drops the events of the steps that are run again.

    tensorboard --logdir DIR
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from discrete.validation import rules as R
from osd_theory.errors import UserError

INSTALL = "pip install 'osd-theory[tensorboard]' (or pip install tensorboard)"


def require_tensorboard() -> None:
    """UserError when ``torch.utils.tensorboard`` cannot be imported (the tensorboard package is missing)."""
    try:
        import torch.utils.tensorboard  # noqa: F401  (imports the tensorboard package)
    except ImportError as exc:
        raise UserError(f"--tensorboard needs the tensorboard package ({exc}); {INSTALL}") from None


@dataclass(frozen=True)
class TensorBoardDir(R.Text):
    """The flag's rule: a non-empty directory name, and the extra installed."""

    def check(self, flag: str, value: Any, shown: Any = None) -> None:
        super().check(flag, value, shown)
        if value is not None:
            require_tensorboard()


def scalars(record: dict, prefix: str | None = None) -> dict[str, float]:
    """``{tag: value}`` of one log record: its int and float values (finite or not), under ``kind/``."""
    prefix = record.get("kind", "log") if prefix is None else prefix
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in ("kind", "step"):
            continue
        tag = f"{prefix}/{key}"
        if isinstance(value, dict):
            out.update(scalars({str(k): v for k, v in value.items()}, tag))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[tag] = float(value)
    return out


class TensorBoardLog:
    """A log that writes each record to the wrapped ``JsonlLog`` and its scalars to TensorBoard."""

    def __init__(self, log, log_dir: str, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.log = log
        self.log_dir = Path(log_dir) / Path(log.path).parent.name      # DIR/<run name>
        self.writer = SummaryWriter(log_dir=str(self.log_dir),
                                    purge_step=None if resume_step is None else resume_step + 1)

    def __getattr__(self, name: str):            # path, enabled, dropped: the JSONL log's
        return getattr(self.log, name)

    def write(self, record: dict) -> None:
        self.log.write(record)
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])
        self.writer.flush()                      # records come at log steps only: a flush each is cheap

    def close(self) -> None:
        self.writer.close()


@contextlib.contextmanager
def tee(log, log_dir: str | None, resume_step: int | None = None) -> Iterator:
    """``log`` itself when ``log_dir`` is None or ``log`` is disabled (not rank 0), else a TensorBoardLog."""
    if not log_dir or not log.enabled:
        yield log
        return
    require_tensorboard()
    board = TensorBoardLog(log, log_dir, resume_step)
    try:
        yield board
    finally:
        board.close()
