"""User projection rules: any callable Γ(t, P, G) -> Ṗ, or a ProjectionRule subclass,
loaded from ``path/to/file.py:function`` (the CLI's ``--projection``; the file is imported,
i.e. executed as Python).

A callable is a smooth rule with field = Γ (so Ṗ = α·Γ, α = 1 by default). It trains too: the
optimizers' discrete face takes the Euler step P ← P + αε·Γ(k, P, G) after each weight update
(k the iteration count), one matrix at a time (a user Γ sees one (dim, r) P and its (m, n) G).
The returned value is checked at every call: wrong shape or non-finite values raise a
:class:`UserError` naming the rule, so a broken rule never silently corrupts a run.
"""
from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from osd_theory.errors import UserError
from osd_theory.projections.base import ProjectionRule, SmoothRule


@dataclass
class CallableRule(SmoothRule):
    """Wrap a user function ``gamma(t, P, G) -> Ṗ`` (P (dim, r), G (m, n)) as a smooth rule."""

    fn: Callable = None
    label: str = "user"
    init: str = "random"

    name = "user"
    batchable = False   # a user Γ is written for one matrix

    def __post_init__(self):
        super().__post_init__()
        if not callable(self.fn):
            raise UserError(f"user projection rule {self.label!r} is not callable")

    def field_parts(self, t, P, G, G_hat=None, inv=None):
        return (self.field(t, P, G),)

    def field_from_parts(self, t, P, parts):
        return parts[0]

    def field(self, t, P, G, G_hat=None):
        out = self.fn(t, P, G)
        if not isinstance(out, torch.Tensor):
            raise UserError(f"user projection rule {self.label!r} returned {type(out).__name__}, expected a tensor of shape {tuple(P.shape)}")
        if not out.is_floating_point():
            raise UserError(f"user projection rule {self.label!r} returned dtype {out.dtype}, expected a floating dtype")
        if out.shape != P.shape:
            raise UserError(f"user projection rule {self.label!r} returned shape {tuple(out.shape)}, expected {tuple(P.shape)} (the shape of P)")
        if not bool(torch.isfinite(out).all()):
            raise UserError(f"user projection rule {self.label!r} returned non-finite values at t={float(t):.6g}")
        return out.to(P.dtype, copy=True)   # a fresh tensor: the optimizer negates it in place

    def describe(self):
        return f"user:{self.label}(rank={self.rank}, side={self.side}, init={self.init})"


def load_user_object(spec: str):
    """Import ``path/to/file.py:name`` and return the object ``name``."""
    if ":" not in spec:
        raise UserError(f"a user projection is given as path/to/file.py:function, got {spec!r}")
    path_s, _, attr = spec.rpartition(":")
    path = Path(path_s)
    if not path.is_file():
        raise UserError(f"user projection file not found: {path_s!r}")
    modspec = importlib.util.spec_from_file_location(f"osd_user_rule_{abs(hash(str(path.resolve())))}", path)
    module = importlib.util.module_from_spec(modspec)
    try:
        modspec.loader.exec_module(module)
    except Exception as exc:  # the user's file failed to import: say so in one line
        raise UserError(f"could not import {path_s!r}: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, attr):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise UserError(f"{path_s!r} has no function {attr!r}; callables there: {names}")
    return getattr(module, attr)


def rule_from_object(obj, label: str, **kw) -> ProjectionRule:
    """A ProjectionRule subclass is instantiated with ``kw``; a plain callable is wrapped."""
    if inspect.isclass(obj) and issubclass(obj, ProjectionRule):
        return obj(**kw)
    if isinstance(obj, ProjectionRule):
        return obj
    return CallableRule(fn=obj, label=label, **kw)
