"""What a setting accepts: one rule object per kind of value, shared by every entry point.

A rule turns the text of a flag (or a sweep grid value) into a value (``parse``), says whether a
value is allowed (``ok``), and describes what is allowed in words (``str(rule)``), so every bad
value gets the same one-line message, ``--batch-size 0: must be an integer >= 1``, whether it came
from ``osd-theory validate``, ``osd-theory sweep``, a saved ``config.json`` or a library call.
``None`` is always allowed: it means "the default that depends on other settings" (the resolver
fills it).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

from osd_theory.errors import UserError


class Rule:
    """Base: text -> value, value -> allowed?, and a description ("an integer >= 1")."""

    nargs: str | int | None = None  # argparse nargs of the flag (None: one value)

    def parse(self, text: Any) -> Any:
        return text

    def ok(self, value: Any) -> bool:
        return True

    def check(self, flag: str, value: Any, shown: Any = None) -> None:
        """Raise the one-line UserError for a value this rule does not allow (``shown``: as the user typed it)."""
        if value is not None and not self.ok(value):
            raise UserError(f"{flag} {_show(value if shown is None else shown)}: must be {self}")

    def parse_checked(self, flag: str, text: Any) -> Any:
        try:
            value = self.parse(text)
        except (TypeError, ValueError):
            raise UserError(f"{flag} {_show(text)}: must be {self}") from None
        self.check(flag, value, shown=text)
        return value


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _bound(lo, hi, lo_open=False, hi_open=False) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {_num(lo)}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {_num(hi)}")
    return " and ".join(parts)


@dataclass(frozen=True)
class Int(Rule):
    lo: int | None = None
    hi: int | None = None

    def parse(self, text):
        if isinstance(text, bool):
            raise ValueError(text)
        if isinstance(text, float) and not text.is_integer():
            raise ValueError(text)
        return int(text) if not isinstance(text, str) else int(text.strip(), 10)

    def ok(self, value):
        return (isinstance(value, int) and not isinstance(value, bool)
                and (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi))

    def __str__(self):
        bound = _bound(self.lo, self.hi)
        return f"an integer {bound}" if bound else "an integer"


@dataclass(frozen=True)
class Real(Rule):
    """A finite float within bounds (NaN and infinity are never allowed)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def parse(self, text):
        if isinstance(text, bool):
            raise ValueError(text)
        return float(text)

    def ok(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))

    def __str__(self):
        bound = _bound(self.lo, self.hi, self.lo_open, self.hi_open)
        return f"a finite number {bound}" if bound else "a finite number"


@dataclass(frozen=True)
class Pair(Rule):
    """Two values of one rule (Adam's betas)."""

    each: Rule = Real(0.0, 1.0, hi_open=True)
    nargs = 2

    def parse(self, text):
        if isinstance(text, str):
            text = text.replace(",", " ").split()
        values = tuple(self.each.parse(t) for t in text)
        if len(values) != 2:
            raise ValueError(text)
        return values

    def ok(self, value):
        return isinstance(value, (tuple, list)) and len(value) == 2 and all(self.each.ok(v) for v in value)

    def __str__(self):
        return f"two values, each {self.each}"


@dataclass(frozen=True)
class Choice(Rule):
    choices: tuple[str, ...] = ()

    def ok(self, value):
        return value in self.choices

    def __str__(self):
        return f"one of {list(self.choices)}"


@dataclass(frozen=True)
class Name(Rule):
    """A name in a registry, found lazily (the registry's module may import this one)."""

    registry: Callable[[], Any] = None  # () -> osd_theory.registry.Registry

    def check(self, flag, value, shown=None):
        if value is not None:
            self.registry().get(value)  # the registry's own message: "unknown model 'x'; expected one of [...]"

    def __str__(self):
        return f"one of {self.registry().names()}"


@dataclass(frozen=True)
class Text(Rule):
    empty_ok: bool = False

    def ok(self, value):
        return isinstance(value, str) and (self.empty_ok or value.strip() != "")

    def __str__(self):
        return "a text" if self.empty_ok else "a non-empty text"


@dataclass(frozen=True)
class Paths(Rule):
    """One or more file paths (``--train-files a.txt b.txt``)."""

    nargs = "+"

    def parse(self, text):
        return [text] if isinstance(text, str) else list(text)

    def ok(self, value):
        return isinstance(value, list) and all(isinstance(p, str) and p for p in value)

    def __str__(self):
        return "a list of file paths"


@dataclass(frozen=True)
class Switch(Rule):
    """A boolean set by a bare flag (``--compile``) or by ``true``/``false`` in a sweep grid."""

    def parse(self, text):
        return parse_bool(text) if isinstance(text, str) else bool(text)

    def ok(self, value):
        return isinstance(value, bool)

    def __str__(self):
        return "true or false"


BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def parse_bool(text: str) -> bool:
    try:
        return BOOLS[text.strip().lower()]
    except KeyError:
        raise ValueError(text) from None


def parse_scalar(text: str):
    """``"2"`` -> 2, ``"0.5"`` -> 0.5, ``"true"`` -> True, anything else stays text."""
    for convert in (lambda t: int(t, 10), float, parse_bool):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Options(Rule):
    """``key=value`` pairs (``--proj-option alpha=2 --proj-option side=left``) -> a dict."""

    nargs = None

    def parse(self, text):
        if isinstance(text, dict):
            return dict(text)
        items = [text] if isinstance(text, str) else list(text)
        out = {}
        for item in items:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise ValueError(item)
            out[key.strip()] = parse_scalar(value.strip())
        return out

    def ok(self, value):
        return isinstance(value, dict) and all(isinstance(k, str) and k for k in value)

    def __str__(self):
        return "key=value (values parsed as int, float, true/false or text)"


@dataclass(frozen=True)
class Projection(Rule):
    """A projection-rule name (``oja``) or a user rule ``path/to/file.py:function``."""

    def ok(self, value):
        return isinstance(value, str) and value.strip() != ""

    def check(self, flag, value, shown=None):
        super().check(flag, value)
        if value is None:
            return
        if ":" not in value:  # a name: the registry's message lists the valid ones
            from osd_theory.projections import PROJECTIONS

            if value not in PROJECTIONS:
                import difflib

                close = difflib.get_close_matches(value, PROJECTIONS.names(), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise UserError(f"{flag} {value}: unknown projection rule{hint}; expected one of "
                                f"{PROJECTIONS.names()} or path/to/file.py:function")
            return
        path, _, func = value.rpartition(":")
        if not path.endswith(".py") or not func.isidentifier():
            raise UserError(f"{flag} {value}: must be a rule name or path/to/file.py:function")
        if not os.path.isfile(path):
            raise UserError(f"{flag} {value}: file {path} does not exist")

    def __str__(self):
        return "a projection-rule name or path/to/file.py:function"


@dataclass(frozen=True)
class Device(Rule):
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; a GPU must be present to be asked for."""

    def check(self, flag, value, shown=None):
        if value is None:
            return
        import torch

        if value == "auto":
            return
        try:
            dev = torch.device(value)
        except (RuntimeError, TypeError):
            raise UserError(f"{flag} {value}: must be {self}") from None
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise UserError(f"{flag} {value}: no CUDA device is available here; use --device cpu or auto")
            if dev.index is not None and dev.index >= count:
                raise UserError(f"{flag} {value}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})")
        elif dev.type == "mps":
            if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
                raise UserError(f"{flag} {value}: no MPS device is available here; use --device cpu or auto")
        elif dev.type != "cpu":
            raise UserError(f"{flag} {value}: must be {self}")

    def __str__(self):
        return "auto, cpu, cuda, cuda:N or mps"
