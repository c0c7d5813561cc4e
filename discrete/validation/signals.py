"""SIGTERM and SIGINT end a run cleanly: finish the step, write a checkpoint, exit.

Preemptible clusters send SIGTERM (then SIGKILL after a grace period); Ctrl-C sends SIGINT. While
the training loop runs, :class:`StopSignals` turns either into a request the loop honours at the
end of the current step (it checkpoints, then raises :class:`Interrupted`, which the CLI turns
into exit status 128 + signal number). A second signal aborts at once (KeyboardInterrupt); the
previous checkpoint stays valid because checkpoints are written atomically.

Under DDP every process gets the signal (torchrun forwards it), but not at the same step; the
processes agree on the stop step at log steps, where they already exchange the loss.
"""
from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """The run stopped on a signal after ``step`` (a checkpoint was written unless ``checkpoint`` is None)."""

    def __init__(self, signum: int, step: int, checkpoint):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        where = f"checkpoint written to {checkpoint}; continue with --resume" if checkpoint else \
            "no checkpoint written (--ckpt-every -1)"
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; {where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """Context manager: while active, SIGTERM/SIGINT set ``received`` instead of killing the process."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.received is not None:  # asked twice: the user wants out now
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is signal.SIG_IGN:  # ignored on purpose (nohup, a background job)
                    continue
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
