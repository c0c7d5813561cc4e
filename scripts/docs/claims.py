"""Regenerate ``docs/generated/claims.json`` from ``osd-theory verify --json``.

The claims page of the docs is rendered from that file by ``scripts/docs/hooks.py``; the file
is the command's output, parsed and pretty-printed, nothing added. ``tests/test_docs.py``
re-runs the command and checks the committed file still matches (claim, statement, verdict).

usage: python scripts/docs/claims.py [--check] [extra verify flags...]
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "generated" / "claims.json"


def run_verify(extra: list[str] | None = None) -> object:
    """The parsed stdout of ``osd-theory verify --json`` (run as ``python -m osd_theory.cli``)."""
    cmd = [sys.executable, "-m", "osd_theory.cli", "verify", "--json", *(extra or [])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    # verify exits non-zero when a claim is refuted; the JSON is still the answer
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"`{' '.join(cmd[1:])}` printed no JSON (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def claims_of(data) -> list[dict]:
    return data["claims"] if isinstance(data, dict) else data


def key(data) -> list[tuple]:
    """What must not drift: each claim's name, statement and verdict."""
    return [(c.get("claim"), c.get("statement"), c.get("verdict")) for c in claims_of(data)]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    extra = [a for a in argv if a != "--check"]
    data = run_verify(extra)
    if check:
        old = json.loads(OUT.read_text()) if OUT.is_file() else None
        if old is None or key(old) != key(data):
            print(f"{OUT.relative_to(ROOT)} is out of date: run `python scripts/docs/claims.py`", file=sys.stderr)
            return 1
        print(f"{OUT.relative_to(ROOT)} is current ({len(claims_of(data))} claims)")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(claims_of(data))} claims)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
