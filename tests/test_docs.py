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
    for page in ("claims", "your-own-rule", "theory", "THEORY", "optimizers", "results-validation", "scaling"):
        assert (tmp_path / "site" / page / "index.html").is_file(), f"page {page!r} missing from the build"


# -- the code on the pages runs ------------------------------------------------------------
# A newcomer copies these blocks; so does this test. ```python title="name.py"``` blocks are
# written to files, the other python blocks of a page run in order as one script, in a fresh
# directory, with the repository importable (as after `pip install -e .`).
import re  # noqa: E402

FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)
PAGES_WITH_CODE = ["optimizers.md", "your-own-rule.md", "scaling.md"]


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


# -- the generated claims page is current ----------------------------------------------------
def _claims_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("docs_claims", ROOT / "scripts" / "docs" / "claims.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_claims_json_covers_the_registry():
    import json

    from osd_theory.claims import CLAIMS, EXPECTED, VERDICTS
    data = json.loads((ROOT / "docs" / "generated" / "claims.json").read_text())
    assert [c["claim"] for c in data["claims"]] == list(CLAIMS), "claims.json does not list the registry's claims"
    for c in data["claims"]:
        assert {"claim", "statement", "verdict", "expected", "evidence"} <= set(c), c
        assert c["verdict"] in VERDICTS and c["expected"] == EXPECTED[c["claim"]], c


@pytest.fixture(scope="module")
def quick_verify():
    """``osd-theory verify --quick --json``, run once: (exit code, claims). No time limit: a correctness test
    asserts no wall time (a loaded machine is slow, not wrong); verify's timings are recorded by verify itself."""
    import json
    proc = subprocess.run([sys.executable, "-m", "osd_theory.cli", "verify", "--quick", "--json"], cwd=ROOT,
                          capture_output=True, text=True)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"verify --quick printed no JSON (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def test_quick_verify_gives_every_predicted_verdict(quick_verify):
    code, claims = quick_verify
    wrong = [(c["claim"], c["verdict"], c.get("expected"), c["evidence"][:300]) for c in claims if not c.get("as_expected")]
    assert code == 0 and not wrong, wrong


def test_claims_page_is_what_verify_says_now(quick_verify):
    """What the claims page says: the committed claims.json agrees with a fresh (quick) verify run on
    every claim's id, statement, prediction and verdict. Regenerate with `python scripts/docs/claims.py`."""
    import json
    mod = _claims_module()
    committed = json.loads((ROOT / "docs" / "generated" / "claims.json").read_text())["claims"]
    now = quick_verify[1]
    diff = [(a, b) for a, b in zip(mod.key(committed), mod.key(now)) if a != b]
    assert len(committed) == len(now) and not diff, f"docs/generated/claims.json is stale: {diff}"


def test_your_own_rule_command_line(tmp_path):
    """The page's `osd-theory simulate --projection myrule.py:gamma --plot ...` works as written."""
    pytest.importorskip("ode.cli")
    blocks = code_blocks("your-own-rule.md")
    for lang, title, body in blocks:
        if lang == "python" and title:
            (tmp_path / title).write_text(body)
    commands = [line.split() for lang, _, body in blocks if lang == "bash"
                for line in body.splitlines() if line.startswith("osd-theory simulate")]
    assert commands, "your-own-rule.md shows no `osd-theory simulate` command"
    for cmd in commands:
        proc = subprocess.run([sys.executable, "-m", "osd_theory.cli", *cmd[1:]], cwd=tmp_path, env=_env(tmp_path),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        plot = cmd[cmd.index("--plot") + 1] if "--plot" in cmd else None
        if plot:
            assert (tmp_path / plot).stat().st_size > 0, f"{plot} was not written"
