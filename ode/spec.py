"""A run described by names (what the CLI, the claims and the refinement test re-run).

``RunSpec`` holds registry names and hyperparameter dicts; :func:`build_run` turns it into
fresh ``(system, rule, problem)`` objects, so a spec can be re-simulated with another
:class:`~ode.integrate.SimulationConfig` (the refinement test) and give the same run.
Its defaults are the defaults of ``osd-theory simulate`` (the CLI reads them from here).

A projection given as ``path/to/file.py:function`` is a user rule: the file is **imported and
executed as Python**. Whatever goes wrong there — the import raises or calls ``sys.exit``, the
object is not a rule — becomes a one-line :class:`~osd_theory.errors.UserError` naming the rule.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace

from osd_theory.errors import UserError
from osd_theory.hd import make_system
from osd_theory.problems import make_problem
from osd_theory.projections import PROJECTIONS, make_rule

from ode.integrate import SimulationConfig, simulate
from ode.trajectory import Trajectory


@dataclass
class RunSpec:
    """One simulation by names: optimizer × projection rule × problem, with their options.

    Example:
        >>> from ode import RunSpec, SimulationConfig, run_spec
        >>> traj = run_spec(RunSpec(optimizer="heavy_ball", projection="constant",
        ...                         config=SimulationConfig(t_end=1.0)))
        >>> traj.meta["status"]
        'completed'
    """

    optimizer: str = "adam"
    """HD system, a name in ``osd_theory.hd.HD_SYSTEMS`` (gd, heavy_ball, adam, adam_bc, lion_k, lion_k_wd, signum)."""
    projection: str = "online_pca"
    """Projection rule Γ: a name in ``osd_theory.projections.PROJECTIONS``, or ``path/to/file.py:function``."""
    problem: str = "quadratic"
    """Objective L(W), a name in ``osd_theory.problems.PROBLEMS``."""
    dim: tuple[int, int] = (4, 4)
    """(m, n), the shape of W. 4×4 keeps the default run to a few seconds (it converges by t ≈ 40)."""
    rank: int = 2
    """Subspace rank r, 1 ≤ r ≤ min(m, n) (ignored by ``identity``, which is full rank)."""
    seed: int = 0
    """Problem seed (W₀ and the problem's data); the rule's own seed is ``proj_hp["seed"]``."""
    side: str = "auto"
    """Projected side: ``auto``/``std`` (the smaller dimension; a square W projects the right side), ``left``, ``right``."""
    hp: dict = field(default_factory=dict)
    """Optimizer hyperparameters, e.g. ``{"a": 1, "b": 2, "e": 0.01}``; missing ones take the system's defaults."""
    proj_hp: dict = field(default_factory=dict)
    """Projection options, e.g. ``{"alpha": 5, "pca_lambda": 0.1, "tau": 1, "init": "svd"}``."""
    problem_hp: dict = field(default_factory=dict)
    """Problem options, e.g. ``{"condition": 10}`` for the quadratic."""
    config: SimulationConfig = field(default_factory=SimulationConfig)
    """How to integrate (horizon, method, tolerances, early stops)."""

    def with_config(self, **changes) -> "RunSpec":
        return replace(self, config=replace(self.config, **changes))

    def label(self) -> str:
        m, n = self.dim
        return f"{self.optimizer}+{rule_label(self.projection)} on {self.problem} {m}x{n} r={self.rank}"


def is_user_rule(projection) -> bool:
    """A ``file.py:function`` spec (or any callable) rather than a registered rule name."""
    return callable(projection) or (isinstance(projection, str) and ":" in projection and projection not in PROJECTIONS)


def rule_label(projection) -> str:
    """A short name for titles: ``myrule.py:gamma`` for ``/long/path/myrule.py:gamma``."""
    if callable(projection):
        return getattr(projection, "__name__", "user rule")
    if is_user_rule(projection):
        path, _, fn = projection.rpartition(":")
        base = path.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{base}:{fn}"
    return str(projection)


def make_user_rule(projection, **kw):
    """:func:`osd_theory.projections.make_rule` for a user rule, with every failure as one UserError.

    The file is imported and executed as Python: an exception, a ``sys.exit`` or a constructor
    that rejects the options are reported with the rule's name, never as a traceback or a
    silent exit.
    """
    name = rule_label(projection)
    try:
        return make_rule(projection, **kw)
    except UserError as exc:
        raise UserError(f"user projection rule {name!r}: {exc}") from None
    except SystemExit as exc:
        raise UserError(f"user projection rule {name!r}: importing it called sys.exit({exc.code!r})") from None
    except Exception as exc:
        raise UserError(f"user projection rule {name!r}: {type(exc).__name__}: {exc}") from None


def build_run(spec: RunSpec):
    """Fresh ``(system, rule, problem)`` for a spec (unknown names raise UserError listing valid ones)."""
    system = make_system(spec.optimizer, **spec.hp)
    m, n = spec.dim
    problem = make_problem(spec.problem, m, n, spec.seed, **spec.problem_hp)
    kw = dict(rank=spec.rank, side=spec.side, **spec.proj_hp)
    if is_user_rule(spec.projection):
        rule = make_user_rule(spec.projection, **kw)
        rule.osd_user_label = spec.projection if isinstance(spec.projection, str) else rule_label(spec.projection)
    else:
        rule = make_rule(spec.projection, **kw)
    rule.bind(problem.shape)
    return system, rule, problem


def options(obj, skip: tuple[str, ...] = ()) -> dict:
    """The dataclass init fields of ``obj`` that a user can set, with their values (for headers)."""
    out = {}
    for f in dataclasses.fields(obj):
        if not f.init or f.name in skip or f.name.startswith("_"):
            continue
        v = getattr(obj, f.name)
        out[f.name] = getattr(v, "__name__", v) if callable(v) else v
    return out


def describe_resolved(system, rule, problem, config: SimulationConfig) -> dict:
    """Every hyperparameter the run actually uses, after defaults and the side rule are applied."""
    from osd_theory.kernels import LEFT
    r = options(rule, skip=("fn", "label"))
    r["side"] = f"{rule.side} -> {'left' if rule.side_ == LEFT else 'right'}"
    return {"optimizer": {"name": system.name, **options(system)},
            "projection": {"name": rule_label(rule.label) if rule.name == "user" else rule.name, **r},
            "problem": {"name": problem.name, **options(problem, skip=("dtype",))},
            "integration": {k: getattr(config, k) for k in ("method", "rtol", "atol", "t_end", "stop_residual",
                                                           "max_seconds")}
            | ({"step_size": config.step_size} if config.method in ("euler", "rk4", "implicit_midpoint") else {})}


def run_spec(spec: RunSpec, **state) -> Trajectory:
    """Simulate a spec; ``state`` may give W0, P0, S0."""
    return run_built(spec, *build_run(spec), **state)


def run_built(spec: RunSpec, system, rule, problem, **state) -> Trajectory:
    """Simulate objects already built from ``spec`` (:func:`build_run`) and record the spec in ``meta``."""
    traj = simulate(system, rule, problem, spec.config, **state)
    traj.meta["spec"] = {"optimizer": spec.optimizer, "projection": rule_label(spec.projection) if callable(spec.projection)
                         else spec.projection, "problem": spec.problem,
                         "dim": list(spec.dim), "rank": spec.rank, "seed": spec.seed, "side": spec.side,
                         "hp": dict(spec.hp), "proj_hp": dict(spec.proj_hp), "problem_hp": dict(spec.problem_hp)}
    traj.meta["resolved"] = describe_resolved(system, rule, problem, spec.config)
    return traj
