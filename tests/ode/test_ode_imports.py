"""Import boundaries (DESIGN.md): ``ode`` never imports ``discrete``; ``osd_theory`` (incl.
verdicts and the claims registry) never imports ``ode`` at import time."""
from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ode_does_not_import_discrete():
    _run("import sys, ode, ode.cli, ode.claims, ode.refinement, ode.plot; assert 'discrete' not in sys.modules")


def test_osd_theory_does_not_import_ode():
    _run("import sys, osd_theory, osd_theory.verdicts, osd_theory.claims, osd_theory.claims.cli, osd_theory.cli; "
         "assert 'ode' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ode'))")
