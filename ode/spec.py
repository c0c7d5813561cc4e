"""A run described by names (what the CLI, the claims and the refinement test re-run).

``RunSpec`` holds registry names and hyperparameter dicts; :func:`build_run` turns it into
fresh ``(system, rule, problem)`` objects, so a spec can be re-simulated with another
:class:`~ode.integrate.SimulationConfig` (the refinement test) and give the same run.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from osd_theory.hd import make_system
from osd_theory.problems import make_problem
from osd_theory.projections import make_rule

from ode.integrate import SimulationConfig, simulate
from ode.trajectory import Trajectory


@dataclass
class RunSpec:
    optimizer: str = "adam"            # name in osd_theory.hd.HD_SYSTEMS
    projection: str = "online_pca"     # name in PROJECTIONS, or path/to/file.py:function
    problem: str = "quadratic"         # name in osd_theory.problems.PROBLEMS
    dim: tuple[int, int] = (8, 8)      # (m, n) of W
    rank: int = 2
    seed: int = 0                      # problem seed (W₀, data); the rule's seed is in proj_hp
    side: str = "auto"
    hp: dict = field(default_factory=dict)          # optimizer hyperparameters (a, b, e, ...)
    proj_hp: dict = field(default_factory=dict)     # projection options (alpha, tau, coef_seed, init, seed, ...)
    problem_hp: dict = field(default_factory=dict)  # problem options (condition, samples, ...)
    config: SimulationConfig = field(default_factory=SimulationConfig)

    def with_config(self, **changes) -> "RunSpec":
        return replace(self, config=replace(self.config, **changes))

    def label(self) -> str:
        m, n = self.dim
        return f"{self.optimizer}+{self.projection} on {self.problem} {m}x{n} r={self.rank}"


def build_run(spec: RunSpec):
    """Fresh ``(system, rule, problem)`` for a spec (unknown names raise UserError listing valid ones)."""
    system = make_system(spec.optimizer, **spec.hp)
    m, n = spec.dim
    problem = make_problem(spec.problem, m, n, spec.seed, **spec.problem_hp)
    rule = make_rule(spec.projection, rank=spec.rank, side=spec.side, **spec.proj_hp)
    rule.bind(problem.shape)
    return system, rule, problem


def run_spec(spec: RunSpec, **state) -> Trajectory:
    """Simulate a spec; ``state`` may give W0, P0, S0."""
    system, rule, problem = build_run(spec)
    traj = simulate(system, rule, problem, spec.config, **state)
    traj.meta["spec"] = {"optimizer": spec.optimizer, "projection": spec.projection, "problem": spec.problem,
                         "dim": list(spec.dim), "rank": spec.rank, "seed": spec.seed, "side": spec.side,
                         "hp": dict(spec.hp), "proj_hp": dict(spec.proj_hp), "problem_hp": dict(spec.problem_hp)}
    return traj
