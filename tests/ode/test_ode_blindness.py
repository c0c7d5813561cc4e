"""The blindness verdict: a run blind to the gradient *at the end* is called a spurious equilibrium only
when it is one (blind, the residual no longer falling, the signal never restored over the second half).

The misdiagnosis it fixes: lion_k + random_jump on rosenbrock ended right before a jump with
||P^T grad L||/||grad L|| = 1e-5 and was reported as "a spurious equilibrium of the projection flow",
while its own output said the residual was still moving and each jump restores the signal.
"""
from __future__ import annotations

import torch

from ode.claims import blind_start
from ode.cli import outcome, summarize
from ode.integrate import SimulationConfig
from ode.spec import RunSpec, run_spec
from osd_theory.problems import make_problem
from osd_theory.verdicts import blindness_verdict


def test_random_jump_blind_between_jumps_is_not_an_equilibrium():
    spec = RunSpec(optimizer="lion_k", projection="random_jump", problem="rosenbrock",
                   config=SimulationConfig(t_end=10.0, rtol=1e-6, atol=1e-9, autodiff=False))
    traj = run_spec(spec)
    ratio = traj.final("proj_grad_norm") / traj.final("grad_norm")
    assert ratio < 1e-2, ratio                  # the case of the misdiagnosis: blind at the end
    bv = blindness_verdict(traj)
    assert bv.blind and bv.restorations > 0 and not bv.equilibrium, bv
    res = summarize(traj)
    assert "spurious equilibrium" not in res["outcome"] and "not an equilibrium" in res["outcome"], res["outcome"]


def test_exact_blind_start_is_a_spurious_equilibrium():
    """C4's exact stall: P^T G = 0 in floating point, W never moves: the verdict must say equilibrium."""
    problem = make_problem("box_quadratic", 4, 4, 0)
    W0, P0 = blind_start(problem, 2)
    spec = RunSpec(optimizer="heavy_ball", hp={"a": 1.0}, projection="online_pca",
                   proj_hp={"alpha": 1.0, "pca_lambda": 0.1}, problem="box_quadratic", dim=(4, 4), rank=2,
                   side="left", config=SimulationConfig(t_end=20.0, rtol=1e-9, atol=1e-12, autodiff=False))
    traj = run_spec(spec, W0=W0, P0=P0)
    bv = blindness_verdict(traj)
    assert bv.equilibrium and bv.restorations == 0 and not bv.still_decreasing, bv
    assert "a spurious equilibrium" in outcome(summarize(traj))


class _Traj:
    """A trajectory-like object: columns and meta, as the verdicts read them."""

    def __init__(self, **cols):
        self.cols = {k: torch.tensor(v, dtype=torch.float64) for k, v in cols.items()}
        self.meta = {}
        self.jumps = {}

    def __getitem__(self, name):
        return self.cols[name]


def test_blind_but_still_decreasing_is_not_an_equilibrium():
    n = 20
    traj = _Traj(t=list(range(n)), grad_norm=[1.0] * n, proj_grad_norm=[1e-4] * n,
                 residual=[10.0 * 0.8 ** k for k in range(n)])
    bv = blindness_verdict(traj)
    assert bv.blind and bv.still_decreasing and not bv.equilibrium
    flat = _Traj(t=list(range(n)), grad_norm=[1.0] * n, proj_grad_norm=[1e-4] * n, residual=[2.0] * n)
    assert blindness_verdict(flat).equilibrium
