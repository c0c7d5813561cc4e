"""Command-line flags generated from :class:`~discrete.validation.config.RunConfig`.

Field ``batch_size`` becomes ``--batch-size`` (or the field's ``flag`` metadata), with its help,
its default and its rule. argparse only collects the text (every flag defaults to "not given"),
and the rule parses and checks it, so a bad value is the same one-line error (exit 2) everywhere
and the caller knows which flags were given: a resume compares exactly those with the saved run.
"""
from __future__ import annotations

import argparse

from discrete.validation import rules as R
from discrete.validation.config import FIELDS, RunConfig, flag_of

_DEFAULTS = RunConfig()


def _default_text(name: str) -> str:
    value = getattr(_DEFAULTS, name)
    if FIELDS[name].metadata["required"] or value is None or value == [] or value == {}:
        return ""
    if isinstance(value, bool):
        return ""
    if isinstance(value, tuple):
        value = " ".join(map(str, value))
    return f" (default {value})"


# argparse's placeholder per kind of value; names show their choices, as argparse's own choices= would
METAVARS = {R.Int: "N", R.Real: "X", R.Paths: "FILE", R.Device: "DEVICE", R.Projection: "RULE"}


def _metavar(name: str, rule: R.Rule):
    if isinstance(rule, R.Pair):
        return ("B1", "B2")
    if isinstance(rule, R.Choice):
        return "{" + ",".join(rule.choices) + "}"
    if isinstance(rule, R.Name):
        return "{" + ",".join(rule.registry().names()) + "}"
    return METAVARS.get(type(rule), "DIR" if name in ("out", "data", "cache_dir", "tensorboard") else name.upper())


def add_config_arguments(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One flag per CLI field of RunConfig (bar ``exclude``), each defaulting to "not given"."""
    for name, f in FIELDS.items():
        meta = f.metadata
        if not meta["cli"] or name in exclude:
            continue
        rule, flag = meta["rule"], flag_of(name)
        kw = dict(dest=name, default=argparse.SUPPRESS, help=meta["help"] + _default_text(name))
        if isinstance(rule, R.Switch):
            # a bare flag; "--no-x" flags store False into field x
            kw.update(action="store_const", const=not flag.startswith("--no-"))
        elif isinstance(rule, R.Options):
            kw.update(action="append", metavar="KEY=VALUE")
        else:
            kw.update(nargs=rule.nargs, metavar=_metavar(name, rule))
        if meta["required"]:
            kw.update(required=True)
            kw.pop("default")
        p.add_argument(flag, **kw)


def given_settings(args: argparse.Namespace, exclude: tuple[str, ...] = ()) -> dict:
    """{field: value} for the flags given on the command line, parsed and checked by their rules."""
    out = {}
    for name, text in vars(args).items():
        if name in FIELDS and name not in exclude:
            out[name] = FIELDS[name].metadata["rule"].parse_checked(flag_of(name), text)
    return out


def parse_setting(name: str, text: str):
    """One value of field ``name`` from text (sweep grids), with the flag's rule and message."""
    return FIELDS[name].metadata["rule"].parse_checked(flag_of(name), text)
