"""Failures inside a training step, as one-line messages that say the step and what failed.

* ``--nonfinite raise``: the optimizer's :class:`~discrete.state.OptimizerInputError` (a NaN/Inf
  gradient) becomes "training diverged at step N: ...".
* A user projection rule (``--projection path/to/file.py:function``) that raises, runs out of
  memory or calls ``sys.exit`` becomes "user projection rule ... failed at step N: ..." (exit 2),
  instead of a traceback or a silent exit 3/4.
* :func:`check_gradient_alive`: a gradient norm of exactly 0 at a log step means the model's output
  no longer depends on its weights (a collapse after a too-large step: the loss sits at ln(vocab),
  uniform prediction); the run fails there instead of ending "done".

The trainer's caller records the failure in ``events.jsonl``; nothing already written is removed.
"""
from __future__ import annotations

import contextlib

from osd_theory.errors import UserError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def _is_user_rule(projection: str | None) -> bool:
    return bool(projection) and ":" in projection


@contextlib.contextmanager
def step_guard(cfg, step: int, what: str = "step"):
    """Turn a failure of ``what`` in step ``step`` into a UserError naming the step."""
    from discrete.state import OptimizerInputError

    try:
        yield
    except OptimizerInputError as exc:  # before UserError: both are ValueErrors
        raise UserError(f"training diverged at step {step}: {_first_line(exc)}; lower --lr (now {cfg.lr:g})") from None
    except UserError as exc:
        from discrete.step.checks import StepRejected   # the optimizer refused the step (nothing changed)

        if isinstance(exc, StepRejected) and _is_user_rule(cfg.projection):
            raise UserError(f"user projection rule {cfg.projection} failed at step {step}: {_first_line(exc)}") from None
        raise
    except (Exception, SystemExit) as exc:  # SystemExit: a user rule calling sys.exit
        if not _is_user_rule(cfg.projection):
            raise
        kind = "called sys.exit" if isinstance(exc, SystemExit) else type(exc).__name__
        where = f"at step {step}" if step else f"while the optimizer was built ({what})"
        raise UserError(f"user projection rule {cfg.projection} failed {where}: {kind}: {_first_line(exc)}") from None


def check_gradient_alive(grad_norm: float, loss: float, step: int, cfg, vocab_size: int | None = None) -> None:
    """Fail at a log step whose global gradient norm is exactly 0 (the model has collapsed)."""
    if grad_norm == 0.0:
        import math

        uniform = f"; ln(vocab {vocab_size}) = {math.log(vocab_size):.4f} is uniform prediction" if vocab_size else ""
        raise UserError(f"training diverged by step {step}: the gradient is exactly 0 (the model's output no longer "
                        f"depends on its weights; loss {loss:.4f}{uniform}); lower --lr (now {cfg.lr:g})")
