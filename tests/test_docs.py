"""The documentation site builds with ``mkdocs build --strict`` (docs/, mkdocs.yml).

Strict mode turns every warning into a failure: a broken link between pages, a
cross-reference to a function that no longer exists (mkdocstrings/autorefs), a page
missing from the nav, a generated page (claims, results) whose source is malformed.
The build goes to a temporary directory, never to ``site/``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    assert (tmp_path / "site" / "index.html").is_file()
    for page in ("claims", "your-own-rule", "theory", "optimizers", "results-validation"):
        assert (tmp_path / "site" / page / "index.html").is_file(), f"page {page!r} missing from the build"
