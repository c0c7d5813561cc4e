"""The mutation check: plant each bug of mutants.py, one at a time, and see who catches it.

For every mutant (and an unmutated control, which must pass both) this runs, in fresh
interpreters with the bug planted by ``sitecustomize`` (never written to a file):

* ``osd-theory verify --quick --json`` (``--full-verify``: ``verify --json``, the full claims) — caught when it exits non-zero (a claim's verdict differs
  from its prediction, or a check crashed); the report names the claims that noticed;
* ``pytest -x`` (the whole suite but the test that reads this report, stopping at the first
  failure) — caught when it fails; the report names the first failing test.

    python scripts/mutation/run.py                       # all, writes docs/results/mutation/
    python scripts/mutation/run.py --only adam_delta_half --no-tests
    python scripts/mutation/run.py --full-verify --no-tests   # the full claims against every mutant
    python scripts/mutation/run.py --check-targets       # every patch applies (what CI runs)

Every mutant must be caught by verify *and* by the tests; the exit status is 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "docs" / "results" / "mutation"
sys.path.insert(0, str(HERE))

from mutants import MUTANTS, check_targets  # noqa: E402


def _env(name: str) -> dict:
    path = os.pathsep.join(filter(None, [str(HERE), str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OSD_MUTANT": name, "CI": "1", "MPLBACKEND": "Agg"}


def run_verify(name: str, full: bool = False, claims: str | None = None) -> dict:
    start = time.perf_counter()
    subset = ["--claims", claims, "--jobs", "1"] if claims else []
    proc = subprocess.run([sys.executable, "-m", "osd_theory.cli", "verify", *([] if full else ["--quick"]), "--json",
                           *subset], cwd=ROOT, env=_env(name), capture_output=True, text=True, timeout=3600)
    try:
        claims = json.loads(proc.stdout)
        noticed = [f"{c['claim']} ({c['verdict']}{', ERROR' if 'error' in c else ''})" for c in claims
                   if not c.get("as_expected")]
    except json.JSONDecodeError:
        noticed = [f"no JSON: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'empty'}"]
    return {"caught": proc.returncode != 0, "exit": proc.returncode, "claims": noticed,
            "seconds": round(time.perf_counter() - start, 1)}


# the test that reads this script's own report is left out (the report is what is being written)
SELF_TEST = "tests/theory/test_mutation_targets.py::test_recorded_report_covers_every_mutant_and_all_were_caught"


def run_tests(name: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--deselect", SELF_TEST],
                          cwd=ROOT, env=_env(name), capture_output=True, text=True, timeout=3600)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.M)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return {"caught": proc.returncode != 0, "exit": proc.returncode, "first_failure": failed[0] if failed else None,
            "summary": summary, "seconds": round(time.perf_counter() - start, 1)}


def git_commit() -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def report(rows: list[dict], command: str, full: bool = False, tests: bool = True, claims: str | None = None) -> str:
    verify = "`osd-theory verify --json` (the full claims)" if full else "`osd-theory verify --quick --json`"
    if claims:
        verify = verify[:-1] + f" --claims {claims}` (only these claims)"
    ran = f"{verify} and the whole test suite (`pytest -x`) ran with it" if tests else \
        f"{verify} ran with it (the test suite was not run: `--no-tests`; the column says \"–\")"
    lines = ["# Mutation check", "", f"Recorded at commit `{git_commit()}`.", "",
             "Each bug below was planted at runtime (never committed), one at a time, by",
             f"`scripts/mutation/sitecustomize.py`; then {ran}. \"caught\" means the command failed. The control",
             "row runs with no bug and must pass. Recorded with:", "", f"    {command}", "",
             "| mutant | kind | planted bug | verify | claims that noticed | tests | first failing test |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        v, t = r.get("verify"), r.get("tests")
        vtxt = "–" if v is None else (f"{'**caught**' if v['caught'] else 'passed'} ({v['seconds']:.0f} s)")
        ttxt = "–" if t is None else (f"{'**caught**' if t['caught'] else 'passed'} ({t['seconds']:.0f} s)")
        lines.append(f"| `{r['name']}` | {r['kind']} | {_cell(r['description'])} | {vtxt} | "
                     f"{', '.join(v['claims']) if v else ''} | {ttxt} | "
                     f"{('`' + t['first_failure'] + '`') if t and t['first_failure'] else ''} |")
    mut = [r for r in rows if r["name"] != "none"]
    by_v = sum(1 for r in mut if r.get("verify") and r["verify"]["caught"])
    by_t = sum(1 for r in mut if r.get("tests") and r["tests"]["caught"])
    lines += ["", f"**{by_v}/{len(mut)} caught by verify"
              + (f", {by_t}/{len(mut)} caught by the tests.**" if tests else " (the tests were not run).**")]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=None, help="mutant names, 'none' for the control (default: all, and the control)")
    ap.add_argument("--no-tests", action="store_true", help="run verify only")
    ap.add_argument("--no-verify", action="store_true", help="run the tests only")
    ap.add_argument("--full-verify", action="store_true", help="run the full claims (verify without --quick)")
    ap.add_argument("--claims", default=None, help="only these claims (verify --claims, one worker): when the full "
                                                   "verify of every mutant does not fit, the claims meant to catch them")
    ap.add_argument("--check-targets", action="store_true", help="only check that every patch applies")
    ap.add_argument("--out", default=str(OUT), help="folder for README.md and mutation.json")
    args = ap.parse_args(argv)
    if args.check_targets:
        problems = check_targets()
        print("\n".join(problems) or f"all {len(MUTANTS)} mutants apply")
        return 1 if problems else 0
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    names = (["none"] if args.only is None or "none" in args.only else []) + [m.name for m in chosen]
    meta = {m.name: m for m in MUTANTS}
    rows = []
    for name in names:
        m = meta.get(name)
        row = {"name": name, "kind": m.kind if m else "control", "description": m.description if m else "no bug"}
        if not args.no_verify:
            row["verify"] = run_verify(name, full=args.full_verify, claims=args.claims)
            row["verify"]["claims_run"] = args.claims or "all"
        if not args.no_tests:
            row["tests"] = run_tests(name)
        rows.append(row)
        print(json.dumps(row), flush=True)
    command = "python scripts/mutation/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mutation.json").write_text(json.dumps({"command": command.strip(), "commit": git_commit(),
                                                   "verify": "full" if args.full_verify else "quick",
                                                   "claims": args.claims or "all",
                                                   "tests": not args.no_tests, "rows": rows}, indent=1) + "\n")
    (out / "README.md").write_text(report(rows, command.strip(), full=args.full_verify, tests=not args.no_tests,
                                          claims=args.claims))
    control = next((r for r in rows if r["name"] == "none"), None)
    control_ok = control is None or not any(r and r["caught"] for r in (control.get("verify"), control.get("tests")))
    missed = [r["name"] for r in rows if r["name"] != "none"
              and any(r.get(k) is not None and not r[k]["caught"] for k in ("verify", "tests"))]
    print(f"control {'passes' if control_ok else 'FAILS'}; missed: {missed or 'none'}")
    return 0 if control_ok and not missed else 1


if __name__ == "__main__":
    sys.exit(main())
