"""Check your own projection rule Γ(t, P, G) → Ṗ: the Lyapunov property along real runs, the
blind-set property (Assumption 4.4(ii)), and blow-ups reported with the partial trajectory.

:func:`check_rule` runs one :class:`RuleCase` (an HD system, your rule, a problem, a short horizon)
through the simulator and raises an ``AssertionError`` subclass when a property fails, so it is the
body of a hypothesis test (:func:`rule_cases` draws the cases; see docs/property-tests.md):

* **Lyapunov** — H(t) = c_L·L(W) + K(S) never rises between accepted solver steps beyond the
  solver's tolerance (:func:`osd_theory.verdicts.lyapunov_verdict`); a flagged rise is re-run at
  100× tighter tolerances and fails only if it does not shrink (:class:`RuleCheckFailed`).
* **Blind set** — with ``blind_set="leaves"`` (your rule claims Assumption 4.4(ii)) or
  ``"invariant"`` (it is built from P and G by products, like online PCA), :func:`ode.blind.blind_set_check`
  starts exactly on {PᵀG = 0} with G held fixed and asserts that PᵀG moves, or stays 0; the default
  ``"report"`` skips it.
* **Blow-up** — a non-finite state, a non-finite Ṗ, or the run exceeding its step budget
  (``max_steps`` accepted steps: deterministic, so hypothesis can shrink it; a rule with a cubic term
  that blows up in finite time lands here) raises :class:`RuleBlewUp`, whose ``trajectory``
  attribute holds the run up to the failure (an :class:`ode.Trajectory`) and ``t_reached`` the last
  finite time.

The default budget (t_end = 2, ≤ 2000 accepted steps, W at most 5×5) keeps one example well under
a second, so a failing rule shrinks in seconds. Needs the ``ode`` simulator (torchdiffeq).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from hypothesis import strategies as st

from osd_theory.errors import IntegrationError, UserError
from osd_theory.hd import HDSystem
from osd_theory.problems import Problem
from osd_theory.projections.base import ProjectionRule

from osd_theory.testing.strategies import dims, fit_dims, hyperparameters

BLIND_SET_MODES = ("report", "leaves", "invariant")
DEFAULT_SYSTEMS = ("gd", "heavy_ball", "adam")
DEFAULT_PROBLEMS = ("quadratic", "lowrank_regression", "box_quadratic")


class RuleCheckFailed(AssertionError):
    """A property of the rule failed. ``trajectory``: the run that showed it (or None); ``case``: the case."""

    def __init__(self, message: str, *, trajectory=None, case: "RuleCase | None" = None):
        super().__init__(message)
        self.trajectory = trajectory
        self.case = case


class RuleBlewUp(RuleCheckFailed):
    """The run did not finish: non-finite state or Ṗ, or the step budget ran out (stiff or blowing up).

    ``trajectory`` holds every accepted step up to the failure (columns ``t``, ``H``, ``grad_norm``,
    ``proj_grad_norm``, ...; ``trajectory.final_y`` the last finite state (W, *S, P, E)), ``t_reached``
    the last time at which the state was finite, ``cause`` why it stopped.
    """

    def __init__(self, message: str, *, trajectory=None, case=None, t_reached: float = float("nan"), cause: str = ""):
        super().__init__(message, trajectory=trajectory, case=case)
        self.t_reached = t_reached
        self.cause = cause


@dataclass
class RuleCase:
    """One run to check: ``system`` + ``rule`` on ``problem`` for t ∈ [0, t_end]."""

    system: HDSystem
    rule: ProjectionRule
    problem: Problem
    t_end: float = 2.0
    label: str = field(default="")

    def describe(self) -> str:
        return (f"{self.system.name} + {self.rule.describe()} on {self.problem.name} "
                f"{self.problem.m}x{self.problem.n}, t_end={self.t_end:g}")


@dataclass(frozen=True)
class RuleReport:
    """What :func:`check_rule` saw (returned when every asserted property held)."""

    case: str
    max_rel_rise: float
    accepted_steps: int
    final_H: float
    blind_set: dict | None
    trajectory: object = field(repr=False, default=None)


def make_case(gamma, system: HDSystem | str = "heavy_ball", problem: Problem | str = "quadratic", *,
              dim: tuple[int, int] = (4, 4), rank: int = 2, side: str = "auto", seed: int = 0, t_end: float = 2.0,
              alpha: float = 1.0) -> RuleCase:
    """A single case from names (what ``check_rule(gamma)`` uses when given a bare callable)."""
    from osd_theory.hd import make_system
    from osd_theory.problems import make_problem
    sys_ = make_system(system) if isinstance(system, str) else system
    prob = make_problem(problem, m=dim[0], n=dim[1], seed=seed) if isinstance(problem, str) else problem
    rule = _rule(gamma, rank=rank, side=side, seed=seed, alpha=alpha)
    return RuleCase(sys_, rule, prob, t_end)


def _rule(gamma, **kw) -> ProjectionRule:
    from osd_theory.projections.user import rule_from_object
    label = getattr(gamma, "__name__", "user")
    if isinstance(gamma, ProjectionRule):
        return gamma
    alpha = kw.pop("alpha", 1.0)
    rule = rule_from_object(gamma, label, init="random", **kw)
    if hasattr(rule, "alpha"):
        rule.alpha = alpha
    return rule


@st.composite
def rule_cases(draw, gamma: Callable, systems: tuple[str, ...] = DEFAULT_SYSTEMS,
               problems: tuple[str, ...] = DEFAULT_PROBLEMS, max_dim: int = 5, t_end: float = 2.0,
               alpha: float = 1.0) -> RuleCase:
    """Your Γ(t, P, G) (a callable, or a :class:`ProjectionRule` subclass) in a drawn run: one of ``systems``
    with hyperparameters where its condition holds, one of ``problems`` of a drawn (m, n) ≤ ``max_dim``, a
    drawn rank, side and seed (P₀ random). Ṗ = α·Γ (α = ``alpha``)."""
    from osd_theory.hd import make_system
    from osd_theory.problems import make_problem
    name = draw(st.sampled_from(list(systems)))
    system = make_system(name, **draw(hyperparameters(name, True)))
    pname = draw(st.sampled_from(list(problems)))
    m, n = fit_dims(pname, *draw(dims(max_dim, 2)))
    seed = draw(st.integers(0, 1000))
    problem = make_problem(pname, m=m, n=n, seed=seed)
    side = draw(st.sampled_from(["left", "right"]))
    rank = draw(st.integers(1, min(m, n)))
    if isinstance(gamma, type):
        rule = gamma(rank=rank, side=side, seed=seed)
    else:
        rule = _rule(gamma, rank=rank, side=side, seed=seed, alpha=alpha)
    return RuleCase(system, rule, problem, t_end)


class _Diverged(UserError):
    """‖P‖ passed check_rule's blow-up bound (raised inside the rate, so the run stops at once)."""


def _guarded(rate, bound: float):
    """``rate`` that stops the run once ‖P‖ > bound: a finite-time blow-up is caught while the state is
    still finite, long before the solver's step size collapses (which is what makes shrinking slow)."""
    import torch

    def guarded(t, P, G):
        norm = float(torch.linalg.matrix_norm(P))
        if not norm <= bound:
            raise _Diverged(f"||P|| = {norm:.3g} passed the blow-up bound {bound:g} at t={float(t):.6g}")
        return rate(t, P, G)
    return guarded


def check_rule(case, *, blind_set: str = "report", max_steps: int = 2000, max_seconds: float | None = None,
               rtol: float = 1e-7, atol: float = 1e-10, blowup_norm: float = 1e4) -> RuleReport:
    """Assert the Lyapunov property of ``case`` (a :class:`RuleCase`, or a bare Γ run by :func:`make_case`'s
    defaults) and, if asked, its blind-set property; raise :class:`RuleBlewUp` when the run cannot finish.

    ``max_steps`` accepted solver steps per segment is the per-example budget (deterministic);
    ``blowup_norm``: a run whose ‖P‖ (Frobenius) passes it is stopped as a blow-up (P starts with norm
    √r for the random orthonormal P₀); ``max_seconds`` adds a wall-clock cap (a run stopped by it raises :class:`RuleBlewUp` too, but
    wall time varies with load: hypothesis may then call the test flaky).
    """
    if blind_set not in BLIND_SET_MODES:
        raise UserError(f"blind_set must be one of {BLIND_SET_MODES}, got {blind_set!r}")
    if not isinstance(case, RuleCase):
        case = make_case(case)
    from ode.integrate import SimulationConfig, simulate
    from osd_theory.verdicts import lyapunov_verdict

    def run(rt, at):
        case.rule.reset() if hasattr(case.rule, "reset") else None
        if case.rule.smooth and "rate" not in vars(case.rule):
            case.rule.rate = _guarded(case.rule.rate, blowup_norm)
        cfg = SimulationConfig(t_end=case.t_end, rtol=rt, atol=at, max_steps=max_steps, max_seconds=max_seconds,
                               stop_residual="auto", autodiff=False)
        try:
            traj = simulate(case.system, case.rule, case.problem, cfg)
        except (IntegrationError, UserError) as exc:
            if isinstance(exc, UserError) and getattr(exc, "trajectory", None) is None:
                raise                  # bad input (a rank, a name), refused before the run started
            raise RuleBlewUp(f"{case.describe()}: the run did not finish: {exc}", trajectory=getattr(exc, "trajectory", None),
                             case=case, t_reached=getattr(exc, "t_reached", None) or _last_t(exc),
                             cause=getattr(exc, "cause", str(exc))) from None
        if str(traj.meta.get("status", "")).startswith("stopped: max_seconds"):
            raise RuleBlewUp(f"{case.describe()}: out of its {max_seconds:g} s budget at t={traj.final('t'):.4g}",
                             trajectory=traj, case=case, t_reached=traj.final("t"), cause="max_seconds")
        return traj

    traj = run(rtol, atol)
    v = lyapunov_verdict(traj)
    if not v.holds:
        tight = run(rtol / 100, atol / 100)
        v2 = lyapunov_verdict(tight)
        if not v2.holds and v2.max_rel_rise > 0.5 * v.max_rel_rise:
            raise RuleCheckFailed(f"{case.describe()}: H rose by {v2.max_rel_rise:.3g} (relative) at rtol "
                                  f"{rtol / 100:g}, {v.max_rel_rise:.3g} at rtol {rtol:g}: not solver error",
                                  trajectory=tight, case=case)
        traj, v = tight, v2
    blind = None
    if blind_set != "report":
        blind = _blind_set(case)
        if blind_set == "leaves" and not blind["leaves"]:
            raise RuleCheckFailed(f"{case.rule.describe()}: started exactly on {{P^T G = 0}} with G fixed, P^T G stayed "
                                  f"at {blind['max_rel']:.1g}: the rule keeps the blind set invariant (Assumption 4.4(ii) "
                                  f"fails)", trajectory=traj, case=case)
        if blind_set == "invariant" and blind["leaves"]:
            raise RuleCheckFailed(f"{case.rule.describe()}: started exactly on {{P^T G = 0}} with G fixed, P^T G reached "
                                  f"{blind['max_rel']:.2g}: the rule leaves the blind set", trajectory=traj, case=case)
    return RuleReport(case.describe(), v.max_rel_rise, len(traj), traj.final("H"), blind, traj)


def _last_t(exc) -> float:
    traj = getattr(exc, "trajectory", None)
    return traj.final("t") if traj is not None and len(traj) else float("nan")


def _blind_set(case: RuleCase) -> dict:
    """:func:`ode.blind.blind_set_check` on a copy of the case's rule bound to a (6, 3) matrix, rank 2, left side."""
    import copy

    from ode.blind import blind_set_check
    rule = copy.copy(case.rule)
    vars(rule).pop("rate", None)          # check_rule's guard is bound to the original rule
    rule.rank, rule.side = 2, "left"
    try:
        return blind_set_check(rule)
    except (IntegrationError, UserError) as exc:
        raise RuleBlewUp(f"{rule.describe()}: the blind-set check (G fixed) did not finish: {exc}", case=case,
                         cause=str(exc)) from None
