"""Hamiltonian Descent systems: one definition of each optimizer's field, H and Δ.

``HD_SYSTEMS`` is the registry (name -> class); :func:`make_system` builds one with
keyword hyperparameters. See :mod:`osd_theory.hd.base` for the interface.
"""
from __future__ import annotations

from osd_theory.hd.adam import Adam, AdamBiasCorrected
from osd_theory.hd.base import Condition, HDSystem, State
from osd_theory.hd.gd import GradientFlow
from osd_theory.hd.heavy_ball import HeavyBall
from osd_theory.hd.lion_k import LionK, LionKWeightDecay
from osd_theory.hd.signum import Signum
from osd_theory.hd.spectral import Muon, MuonWeightDecay
from osd_theory.errors import UserError
from osd_theory.registry import Registry

HD_SYSTEMS: Registry[type[HDSystem]] = Registry("optimizer")
for _cls in (GradientFlow, HeavyBall, Adam, AdamBiasCorrected, LionK, LionKWeightDecay, Signum, Muon, MuonWeightDecay):
    HD_SYSTEMS.add(_cls.name, _cls)


def make_system(name: str, **hyper) -> HDSystem:
    """Build a registered HD system; unknown names or hyperparameters are a UserError."""
    cls = HD_SYSTEMS.get(name)
    try:
        return cls(**hyper)
    except TypeError as exc:
        import dataclasses
        valid = [f.name for f in dataclasses.fields(cls)]
        raise UserError(f"bad hyperparameters for {name!r}: {exc}; valid ones are {valid}") from None


__all__ = ["HD_SYSTEMS", "make_system", "HDSystem", "Condition", "State", "GradientFlow", "HeavyBall",
           "Adam", "AdamBiasCorrected", "LionK", "LionKWeightDecay", "Signum", "Muon", "MuonWeightDecay"]
