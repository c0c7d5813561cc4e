"""Error types shared by every package of the toolkit."""
from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user asked for (a name, a size, a file).

    The CLI prints it as one line without a traceback and exits with status 2.
    It subclasses :class:`ValueError` so library callers can catch either.
    """


class IntegrationError(RuntimeError):
    """An integration stopped early (non-finite state, solver failure).

    ``t_reached`` is the last time at which the state was finite; ``cause`` says why. When raised by
    :func:`ode.simulate`, ``trajectory`` is the partial run up to the failure (an ``ode.Trajectory``:
    every accepted step, ``trajectory.final_y`` the last finite state); None otherwise.
    """

    trajectory = None

    def __init__(self, message: str, *, t_reached: float, cause: str):
        super().__init__(f"{message} (stopped at t={t_reached:.6g}: {cause})")
        self.t_reached = t_reached
        self.cause = cause
