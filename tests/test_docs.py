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


# -- the code on the pages runs ------------------------------------------------------------
# A newcomer copies these blocks; so does this test. ```python title="name.py"``` blocks are
# written to files, the other python blocks of a page run in order as one script, in a fresh
# directory, with the repository importable (as after `pip install -e .`).
import re  # noqa: E402

FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)
PAGES_WITH_CODE = ["optimizers.md", "your-own-rule.md"]


def code_blocks(page: str) -> list[tuple[str, str | None, str]]:
    """(language, file title or None, body) for each fenced block of a docs page."""
    out = []
    for lang, attrs, body in FENCE.findall((ROOT / "docs" / page).read_text()):
        title = re.search(r'title="([^"]+)"', attrs)
        out.append((lang, title.group(1) if title else None, body))
    return out


def _env(tmp_path) -> dict:
    path = os.pathsep.join(filter(None, [str(ROOT), str(tmp_path), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg"}


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_python_blocks_on_page_run(page, tmp_path):
    blocks = code_blocks(page)
    script = []
    for lang, title, body in blocks:
        if lang == "python" and title:
            (tmp_path / title).write_text(body)
        elif lang == "python":
            script.append(body)
    assert script, f"{page} has no python blocks"
    if "ode" in "".join(script):
        pytest.importorskip("ode")
    (tmp_path / "page.py").write_text("\n".join(script))
    proc = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the python blocks of {page} failed:\n{proc.stderr[-4000:]}"
