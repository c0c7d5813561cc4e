"""A small core with lazy extras (STYLE.md §2.12, DESIGN.md).

Each check runs in a fresh interpreter, so modules imported by other tests cannot hide a
heavy import. Each can fail: it names the offending module.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["sympy", "torchdiffeq", "matplotlib", "tokenizers", "scipy", "discrete.validation", "ode", "hypothesis"]


def imported_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("stmt", [
    "import osd_theory",
    "import osd_theory.hd, osd_theory.problems, osd_theory.projections, osd_theory.kernels",
])
def test_core_imports_only_torch(stmt):
    mods = imported_after(stmt)
    leaked = [h for h in HEAVY if h in mods]
    assert not leaked, f"{stmt!r} imported {leaked}"


def test_discrete_does_not_import_validation_or_theory_extras():
    mods = imported_after("import discrete")
    leaked = [h for h in ("sympy", "torchdiffeq", "tokenizers", "discrete.validation", "ode") if h in mods]
    assert not leaked, f"'import discrete' imported {leaked}"


def test_ode_does_not_import_discrete():
    mods = imported_after("import ode")
    assert "discrete" not in mods, "'import ode' imported discrete"
