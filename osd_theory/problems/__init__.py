"""Test objectives with known stationary points (THEORY.md §8).

``PROBLEMS`` is the registry (name -> class); :func:`make_problem` builds one by name,
size and seed.
"""
from __future__ import annotations

import dataclasses

from osd_theory.errors import UserError
from osd_theory.problems.base import Problem
from osd_theory.problems.box_quadratic import BoxQuadratic
from osd_theory.problems.deep_linear import DeepLinear
from osd_theory.problems.logistic import Logistic
from osd_theory.problems.lowrank_regression import LowRankRegression
from osd_theory.problems.quadratic import Quadratic
from osd_theory.problems.rosenbrock import Rosenbrock
from osd_theory.registry import Registry

PROBLEMS: Registry[type[Problem]] = Registry("problem")
for _cls in (Quadratic, Rosenbrock, LowRankRegression, DeepLinear, Logistic, BoxQuadratic):
    PROBLEMS.add(_cls.name, _cls)


def make_problem(name: str, m: int = 8, n: int = 8, seed: int = 0, **kwargs) -> Problem:
    """Build a registered problem of size (m, n) from a seed."""
    cls = PROBLEMS.get(name)
    try:
        return cls(m=m, n=n, seed=seed, **kwargs)
    except TypeError as exc:
        valid = [f.name for f in dataclasses.fields(cls) if f.init]
        raise UserError(f"bad options for problem {name!r}: {exc}; valid ones are {valid}") from None


__all__ = ["PROBLEMS", "make_problem", "Problem", "Quadratic", "Rosenbrock", "LowRankRegression",
           "DeepLinear", "Logistic", "BoxQuadratic"]
