"""Regenerate ``docs/generated/claims.json`` from ``osd-theory verify --json``.

The claims page of the docs is rendered from that file by ``scripts/docs/hooks.py``. The file
holds the command's output verbatim under ``"claims"``, plus provenance: the command, the git
commit it ran at, and the SHA-256 of the files that define the claims (``SOURCES``).
``tests/test_docs.py`` re-runs ``osd-theory verify --quick --json`` (about a minute on two
cores) and fails if any claim's id, statement, predicted verdict or verdict differs from this
file (``key``), so the page cannot drift from the code. ``--quick`` runs fewer cases per claim;
the statements and verdicts are the same as the full run's, the evidence is not.

    python scripts/docs/claims.py                  # regenerate (full verify, a few minutes)
    python scripts/docs/claims.py --check          # re-run the full verify and compare
    python scripts/docs/claims.py --check --quick  # what the test does
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "generated" / "claims.json"
COMMAND = ["verify", "--json"]
# the files that define the claims' statements, methods and verdict rules (the CLI that runs
# them in parallel is orchestration and not listed)
SOURCES = ["osd_theory/claims/__init__.py", "osd_theory/claims/symbolic.py", "osd_theory/claims/discrete_ode.py",
           "osd_theory/claims/stochastic.py", "osd_theory/verdicts.py", "ode/claims.py", "ode/blind.py", "ode/stall.py",
           "discrete/validation/claims.py", "discrete/validation/sharpness.py",
           "osd_theory/claims/spectral.py"]


def sources_digest() -> dict[str, str]:
    return {p: hashlib.sha256((ROOT / p).read_bytes()).hexdigest() if (ROOT / p).is_file() else "missing"
            for p in SOURCES}


def git_commit() -> str | None:
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or None


def run_verify(quick: bool = False) -> list:
    """The parsed stdout of ``osd-theory verify --json [--quick]`` (run as ``python -m osd_theory.cli``)."""
    cmd = [sys.executable, "-m", "osd_theory.cli", *COMMAND, *(["--quick"] if quick else [])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    try:  # verify exits 1 when a verdict differs from its prediction; the JSON is still the answer
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"`osd-theory {' '.join(COMMAND)}` printed no JSON (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}") from None


def key(claims: list) -> list[tuple]:
    """What must not drift: each claim's id, statement, predicted verdict and verdict."""
    return [(c.get("claim"), c.get("statement"), c.get("expected"), c.get("verdict")) for c in claims]


def main(argv: list[str]) -> int:
    claims = run_verify(quick="--quick" in argv)
    if "--check" in argv:
        old = json.loads(OUT.read_text())["claims"] if OUT.is_file() else None
        if old is None or key(old) != key(claims):
            print(f"{OUT.relative_to(ROOT)} is out of date: run `python scripts/docs/claims.py`", file=sys.stderr)
            return 1
        print(f"{OUT.relative_to(ROOT)} is current ({len(claims)} claims)")
        return 0
    if "--quick" in argv:
        raise SystemExit("the committed file holds the full verify: run without --quick to regenerate")
    commit = git_commit()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", *SOURCES],
                           capture_output=True, text=True).stdout.strip()
    data = {"command": "osd-theory " + " ".join(COMMAND), "generated_by": "python scripts/docs/claims.py",
            "git_commit": commit, "claim_sources_modified": bool(dirty), "sources_sha256": sources_digest(),
            "claims": claims}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(claims)} claims: "
          f"{', '.join(str(c.get('claim')) + '=' + str(c.get('verdict')) for c in claims)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
