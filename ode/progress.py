"""A readable t-progress line for long integrations: ``t = 12.3 / 100 (12 %), 430 steps, 2.1 s, ETA 15 s``.

On a terminal the line is rewritten in place at most every 0.25 s; elsewhere (a log, a pipe, CI)
a new line is printed at most every 10 s, so short runs print nothing and long ones say what
they are doing. The ETA assumes the current rate of ODE time per wall-clock second holds; a run
can end earlier (it stops once stationary) or slow down (stiffness), so it is an estimate.
"""
from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Receives ``update(t, h, n_steps)`` from the recorder at every accepted step."""

    def __init__(self, t0: float, t_end: float, stream=None, label: str = "simulate"):
        self.t0, self.t_end, self.label = t0, t_end, label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 0.25 if self.tty else 10.0
        self.started = self.last = time.perf_counter()
        self.printed = False

    def line(self, t: float, n_steps: int, now: float) -> str:
        elapsed = now - self.started
        frac = (t - self.t0) / (self.t_end - self.t0) if self.t_end > self.t0 else 1.0
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("inf")
        eta_s = _duration(eta) if eta != float("inf") else "?"
        return (f"{self.label}: t = {t:.4g} / {self.t_end:g} ({100 * frac:.0f} %), {n_steps} steps, "
                f"{_duration(elapsed)}, ETA {eta_s}")

    def update(self, t: float, h: float = 0.0, n_steps: int = 0) -> None:
        now = time.perf_counter()
        if now - self.last < self.every:
            return
        self.last = now
        text = self.line(t + h, n_steps, now)
        if self.tty:
            self.stream.write("\r" + text.ljust(78))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.printed = True

    def close(self) -> None:
        if self.printed and self.tty:
            self.stream.write("\n")
            self.stream.flush()
