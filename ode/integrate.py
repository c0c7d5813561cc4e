"""Integrate the coupled (W, S, P) system, piecewise between projection jumps.

Defaults (THEORY.md §7 "Defaults"): ``dopri5`` (torchdiffeq), float64, rtol = 1e-8,
atol = 1e-10. Samples are taken only at the solver's **accepted** steps (torchdiffeq calls
``func.callback_accept_step(t0, y0, dt)`` with the start of each accepted step; the
segment end is forced onto a step with ``step_t`` so it is an endpoint, not an
interpolant). At each jump time τ of the rule the integration stops at τ, P ← rule.jump(τ,
P, ∇L) is applied, and H is logged on both sides (THEORY.md §1.2: H cannot jump unless
the state is transformed, and we never transform it).

A non-finite state or a solver failure stops the run with an
:class:`~osd_theory.errors.IntegrationError` carrying the time reached and the cause;
the partial trajectory is attached as ``exc.trajectory`` (also to a :class:`~osd_theory.errors.UserError`
raised mid-run by a user rule returning a bad Ṗ).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from osd_theory.errors import IntegrationError, UserError
from osd_theory.hd.base import HDSystem
from osd_theory.kernels import project
from osd_theory.problems.base import Problem
from osd_theory.projections.base import ProjectionRule
from osd_theory.registry import Registry

from ode.diagnostics import Recorder, StopIntegration
from ode.system import CoupledField
from ode.trajectory import JUMP_COLUMNS, Trajectory

# Integrators: name -> object with .integrate(field, y, a, b, config) -> y(b), .adaptive, .order
INTEGRATORS: Registry = Registry("integration method")

NON_AUTONOMOUS_T0 = 1e-3  # start time for non-autonomous systems (adam_bc is singular at t = 0)


@dataclass
class SimulationConfig:
    """How to integrate: horizon, method, tolerances, when to stop early, what to record.

    The same defaults serve ``osd-theory simulate`` and the Python API (the CLI flags are these
    fields). A run ends at ``t_end``, or earlier when it is stationary (``stop_residual``), when it
    has used ``max_seconds`` of wall-clock time, or when it fails (non-finite state).
    """

    t_end: float = 100.0
    """Final time, in ODE time (learning-rate units: one discrete step of size η advances t by η)."""
    t0: float | None = None
    """Start time; None is 0, or ``NON_AUTONOMOUS_T0`` for non-autonomous systems (singular at 0)."""
    method: str = "dopri5"
    """A name in ``INTEGRATORS``: adaptive ``dopri5``, ``dopri8``, ``bosh3``, ``adaptive_heun``; fixed-step
    ``euler``, ``rk4``, ``implicit_midpoint``."""
    rtol: float = 1e-8
    """Adaptive methods: relative tolerance per component (THEORY.md §7: ≤ 1e-8 to certify)."""
    atol: float = 1e-10
    """Adaptive methods: absolute tolerance per component (Adam's v gets a purely relative one)."""
    step_size: float = 1e-2
    """Fixed-step methods: h."""
    stop_residual: float | str | None = "auto"
    """Stop at the first accepted step whose stationarity residual is ≤ this. ``"auto"``: the
    stationarity verdict's own tolerance max(1e-6, 1e-6·r₀), so a run stops as soon as the verdict
    would say "stationary" (never on a problem without stationary points); None: never stop early."""
    max_steps: int = 1_000_000
    """Accepted steps per segment (between projection jumps) before the solver gives up."""
    autodiff: bool | int = True
    """Record dH/dt by autodiff: True at every sample, k at every k-th, False never."""
    progress: bool = False
    """Print t-progress with an ETA on stderr while integrating (the CLI turns it on for a terminal)."""
    max_seconds: float | None = None
    """Wall-clock cap: stop (status "stopped: max_seconds …", not a failure) after this many seconds."""

    def stop_threshold(self, problem: Problem, r0: float) -> float | None:
        """The residual at which to stop, resolved for a problem whose initial residual is r₀."""
        if self.stop_residual is None:
            return None
        if self.stop_residual == "auto":
            from osd_theory.verdicts import STATIONARY_ATOL, STATIONARY_RTOL
            return max(STATIONARY_ATOL, STATIONARY_RTOL * r0) if problem.has_stationary_points else None
        return float(self.stop_residual)

    def start(self, system: HDSystem) -> float:
        if self.t0 is not None:
            return float(self.t0)
        return 0.0 if system.autonomous else NON_AUTONOMOUS_T0

    def validate(self, system: HDSystem) -> None:
        t0 = self.start(system)
        for name, v in (("t_end", self.t_end), ("rtol", self.rtol), ("atol", self.atol), ("step_size", self.step_size)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise UserError(f"{name} must be a finite number, got {v!r}")
        if not self.t_end > t0:
            raise UserError(f"t_end must be > t0 = {t0:g}, got {self.t_end!r}")
        if not (self.rtol > 0 and self.atol > 0 and self.step_size > 0):
            raise UserError(f"rtol, atol and step_size must be > 0, got {self.rtol}, {self.atol}, {self.step_size}")
        if not system.autonomous and not t0 > 0:
            raise UserError(f"{system.name} is non-autonomous and singular at t = 0: start at t0 > 0")
        sr = self.stop_residual
        if not (sr is None or sr == "auto" or (isinstance(sr, (int, float)) and not isinstance(sr, bool)
                                                and math.isfinite(sr) and sr >= 0)):
            raise UserError(f"stop_residual must be a number >= 0, 'auto' or None, got {sr!r}")
        if self.max_seconds is not None and not (isinstance(self.max_seconds, (int, float)) and self.max_seconds > 0):
            raise UserError(f"max_seconds must be > 0 or None, got {self.max_seconds!r}")
        INTEGRATORS.get(self.method)


class _TorchDiffEq:
    """An adaptive Runge–Kutta method of torchdiffeq (accept-step callbacks supported)."""

    adaptive = True

    def __init__(self, method: str, order: int):
        self.method, self.order = method, order

    def integrate(self, field: CoupledField, y: tuple, a: float, b: float, config: SimulationConfig) -> tuple:
        from torchdiffeq import odeint
        ts = torch.tensor([a, b], dtype=torch.float64)
        opts = {"step_t": torch.tensor([b], dtype=torch.float64), "max_num_steps": config.max_steps}
        try:
            out = odeint(field, y, ts, method=self.method, rtol=config.rtol,
                         atol=field.atol_blocks(config.atol), options=opts)
        except AssertionError as exc:  # torchdiffeq reports failures by assert
            raise IntegrationError(f"{self.method} failed", t_reached=field.recorder.last_t if len(field.recorder) else a,
                                   cause=str(exc).split(":")[0]) from None
        return tuple(o[-1] for o in out)


for _name, _order in (("dopri5", 5), ("dopri8", 8), ("bosh3", 3), ("adaptive_heun", 2)):
    INTEGRATORS.add(_name, _TorchDiffEq(_name, _order))


def initial_state(system: HDSystem, rule: ProjectionRule, problem: Problem, *, W0: Tensor | None = None,
                  P0: Tensor | None = None, S0: tuple | None = None) -> tuple:
    """(W₀, S₀, P₀, E₀ = 0) with the rule bound to the problem's shape."""
    rule.bind(problem.shape)
    W0 = problem.initial_point() if W0 is None else W0.to(torch.float64)
    G0 = problem.grad(W0)
    if P0 is None:
        P0 = _initial(rule, G0)
    else:
        rule.reset()
        expected = (rule.dim, rule.rank)
        if tuple(P0.shape) != expected:
            raise UserError(f"P0 has shape {tuple(P0.shape)}, expected {expected}")
    S0 = system.init_state(project(P0, G0, rule.side_)) if S0 is None else tuple(S0)
    return (W0, *S0, P0, torch.zeros((), dtype=torch.float64))


def _initial(rule: ProjectionRule, G0: Tensor) -> Tensor:
    """P₀ from the rule; a user rule's failure here is one UserError naming it (as in the field)."""
    from ode.system import user_rule_label
    label = user_rule_label(rule)
    if label is None:
        return rule.initial(G0)
    try:
        P0 = rule.initial(G0)
    except UserError:
        raise
    except (Exception, SystemExit) as exc:
        raise UserError(f"user projection rule {label!r}: initial() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(P0, Tensor) or P0.ndim != 2 or P0.shape[0] != rule.dim:
        raise UserError(f"user projection rule {label!r}: initial() returned "
                        f"{tuple(P0.shape) if isinstance(P0, Tensor) else type(P0).__name__}, expected ({rule.dim}, r)")
    return P0


def describe_run(system, rule, problem, config, t0) -> dict:
    cond = system.condition()
    return {
        "optimizer": system.name, "system": system.describe(), "projection": rule.describe(),
        "rank": rule.rank, "side": "left" if rule.side_ == 0 else "right",
        "problem": problem.name, "dim": list(problem.shape), "seed": problem.seed,
        "has_stationary_points": bool(problem.has_stationary_points),
        "condition_holds": bool(cond.holds), "condition": cond.statement,
        "autonomous": bool(system.autonomous), "stationarity_name": system.stationarity_name,
        "t0": t0, "config": asdict(config), "order": INTEGRATORS.get(config.method).order,
        "adaptive": INTEGRATORS.get(config.method).adaptive,
    }


def simulate(system: HDSystem, rule: ProjectionRule, problem: Problem, config: SimulationConfig | None = None,
             *, W0: Tensor | None = None, P0: Tensor | None = None, S0: tuple | None = None) -> Trajectory:
    """Integrate from t0 to ``config.t_end`` (or until the residual stop); return the trajectory."""
    config = config or SimulationConfig()
    config.validate(system)
    integrator = INTEGRATORS.get(config.method)
    y = initial_state(system, rule, problem, W0=W0, P0=P0, S0=S0)
    t0 = config.start(system)
    field = CoupledField(system, rule, problem)
    bar = _progress(config, t0)
    stop_at = config.stop_threshold(problem, float(system.stationarity(y[0], problem.grad(y[0]))))
    rec = field.recorder = Recorder(field, autodiff=config.autodiff, stop_residual=stop_at, progress=bar,
                                    max_seconds=config.max_seconds)
    jumps = {k: [] for k in JUMP_COLUMNS}
    times = [t0, *(rule.jump_times(t0, config.t_end) if rule.jumps else []), float(config.t_end)]
    status, started = "completed", time.perf_counter()
    try:
        for a, b in zip(times[:-1], times[1:]):
            y = integrator.integrate(field, y, a, b, config)
            if b < times[-1]:
                y = _apply_jump(field, y, b, jumps)
        rec(float(times[-1]), y, 0.0)
    except StopIntegration as stop:
        status = (f"stopped: max_seconds = {config.max_seconds:g} s of wall-clock time used"
                  if stop.reason == "max_seconds" else f"stopped: {system.stationarity_name} <= {stop_at:.3g}")
        rec.set_last_h(0.0)
    except (IntegrationError, UserError) as exc:
        # a failed run (non-finite state, solver failure, or a user rule returning a bad Ṗ mid-run) keeps
        # what it computed: ``exc.trajectory`` is the run up to the failure
        exc.trajectory = _finish(rec, jumps, system, rule, problem, config, t0, f"failed: {exc}", field, started, stop_at)
        raise
    finally:
        if bar is not None:
            bar.close()
    return _finish(rec, jumps, system, rule, problem, config, t0, status, field, started, stop_at)


def _apply_jump(field: CoupledField, y: tuple, t: float, jumps: dict) -> tuple:
    """P ← rule.jump(t, P, G); log H and ‖ĝ‖ on both sides (W and S are never transformed)."""
    W, S, P, E = field.layout.unpack(y)
    G = field.problem.grad(W)
    H = float(field.system.hamiltonian(t, field.problem.loss(W), S, W))
    P_new = field.rule_call("jump", t, P, G)
    if tuple(P_new.shape) != tuple(P.shape) or not bool(torch.isfinite(P_new).all()):
        raise UserError(f"projection {field.rule.describe()} jumped to a bad P (shape {tuple(P_new.shape)}, "
                        f"expected {tuple(P.shape)}, finite: {bool(torch.isfinite(P_new).all())})")
    H_after = float(field.system.hamiltonian(t, field.problem.loss(W), S, W))
    for k, v in (("t", t), ("H_before", H), ("H_after", H_after),
                 ("proj_grad_before", float(torch.linalg.vector_norm(project(P, G, field.side)))),
                 ("proj_grad_after", float(torch.linalg.vector_norm(project(P_new, G, field.side))))):
        jumps[k].append(v)
    return field.layout.pack(W, S, P_new, E)


def _progress(config: SimulationConfig, t0: float):
    if not config.progress:
        return None
    from ode.progress import Progress
    return Progress(t0, config.t_end)


def _finish(rec, jumps, system, rule, problem, config, t0, status, field, started, stop_at) -> Trajectory:
    meta = describe_run(system, rule, problem, config, t0)
    meta.update(status=status, nfev=field.nfev, n_samples=len(rec), wall_s=time.perf_counter() - started,
                stop_residual_resolved=stop_at)
    if rec.last_y is not None:
        W, S, P, _ = field.layout.unpack(rec.last_y)
        meta["final_state"] = {"W_shape": list(W.shape), "P_shape": list(P.shape)}
    traj = Trajectory(rec.columns(), {k: torch.tensor(v, dtype=torch.float64) for k, v in jumps.items()}, meta)
    traj.final_y = rec.last_y  # the last recorded state (not saved; for continuation and tests)
    return traj


# the fixed-step reference integrators register themselves in INTEGRATORS
from ode import reference as _reference  # noqa: E402,F401
