"""ode: simulate the coupled subspace Hamiltonian-Descent system (THEORY.md §1.2, §7).

.. math::
    \\dot W = \\mathcal P(D(S, ĝ)) - λW,\\qquad \\dot S = ρ(τ(ĝ) - S),\\qquad \\dot P = Γ(P, ∇L(W)),
    \\qquad ĝ = \\mathcal P^*(∇L(W))

integrated with torchdiffeq (adaptive Runge–Kutta, float64) or with the fixed-step
reference integrators of :mod:`ode.reference` (explicit Euler, implicit midpoint),
piecewise between the jump times of the projection rule. Diagnostics are recorded at the
solver's *accepted* steps only (THEORY.md §7.2) into a :class:`~ode.trajectory.Trajectory`.

``import ode`` needs osd_theory, torch and torchdiffeq; never ``discrete``. matplotlib and
tqdm are imported where they are used.
"""
from __future__ import annotations

from ode.integrate import SimulationConfig, simulate
from ode.spec import RunSpec, build_run, run_spec
from ode.system import CoupledField
from ode.trajectory import Trajectory

__all__ = ["CoupledField", "SimulationConfig", "simulate", "Trajectory", "RunSpec", "build_run", "run_spec"]
