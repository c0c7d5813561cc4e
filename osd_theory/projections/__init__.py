"""Projection dynamics: the registry of rules Γ for P (THEORY.md §1.2).

``PROJECTIONS`` maps names to rule classes; :func:`make_rule` accepts a registered
name or ``path/to/file.py:function`` for a user rule.
"""
from __future__ import annotations

import dataclasses

from osd_theory.errors import UserError
from osd_theory.projections.base import ProjectionRule
from osd_theory.projections.rules import (BUILTIN_RULES, Adversarial, Constant, Identity, Oja, OnlinePCA,
                                          OnlinePCARefresh, PeriodicSVD, RandomJump, RandomSmooth)
from osd_theory.projections.user import CallableRule, load_user_object, rule_from_object
from osd_theory.registry import Registry

PROJECTIONS: Registry[type[ProjectionRule]] = Registry("projection")
for _cls in BUILTIN_RULES:
    PROJECTIONS.add(_cls.name, _cls)


def make_rule(name_or_spec, **kw) -> ProjectionRule:
    """Build a rule from a registered name, a ``file.py:function`` spec, or a callable."""
    if callable(name_or_spec) and not isinstance(name_or_spec, str):
        return rule_from_object(name_or_spec, getattr(name_or_spec, "__name__", "user"), **kw)
    if isinstance(name_or_spec, str) and ":" in name_or_spec and name_or_spec not in PROJECTIONS:
        obj = load_user_object(name_or_spec)
        return rule_from_object(obj, name_or_spec, **kw)
    cls = PROJECTIONS.get(name_or_spec)
    try:
        return cls(**kw)
    except TypeError as exc:
        valid = [f.name for f in dataclasses.fields(cls) if f.init]
        raise UserError(f"bad options for projection {name_or_spec!r}: {exc}; valid ones are {valid}") from None


__all__ = ["PROJECTIONS", "make_rule", "ProjectionRule", "CallableRule", "Constant", "Identity", "RandomJump",
           "PeriodicSVD", "OnlinePCA", "OnlinePCARefresh", "Oja", "Adversarial", "RandomSmooth"]
