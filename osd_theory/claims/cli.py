"""``osd-theory verify [--json] [--quick] [--claims C1,C3]``: run the claims, print a table.

Exit status 0 when every claim ran (whatever its verdict: "violated" can be the predicted
outcome, as for C4), 1 when a claim raised an exception (a failed run), 2 for bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
import traceback

from osd_theory.claims import CLAIMS, run_claim
from osd_theory.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the list of claim results as JSON")
    p.add_argument("--quick", action="store_true", help="fewer runs per claim (a smoke check)")
    p.add_argument("--claims", default=None, help=f"comma-separated subset of {sorted(CLAIMS)}")


def _table(results: list[dict]) -> str:
    rows = [f"{'claim':<6}{'verdict':<14}evidence"]
    for r in results:
        ev = textwrap.wrap(str(r.get("evidence", "")), 96) or [""]
        rows.append(f"{r['claim']:<6}{r['verdict']:<14}{ev[0]}")
        rows.extend(f"{'':<20}{line}" for line in ev[1:])
    return "\n".join(rows)


def run(args) -> int:
    ids = sorted(CLAIMS) if not args.claims else [c.strip() for c in args.claims.split(",") if c.strip()]
    unknown = [c for c in ids if c not in CLAIMS]
    if unknown:
        raise UserError(f"unknown claim(s) {unknown}; expected one of {sorted(CLAIMS)}")
    results, failed = [], False
    for cid in ids:
        start = time.perf_counter()
        try:
            res = run_claim(cid, quick=args.quick)
        except Exception as exc:  # a crashed check is a failed run, reported and counted
            failed = True
            res = {"claim": cid, "statement": CLAIMS[cid], "verdict": "inconclusive",
                   "evidence": f"ERROR: {type(exc).__name__}: {exc}", "error": traceback.format_exc(limit=3)}
        res["seconds"] = round(time.perf_counter() - start, 2)
        results.append(res)
        if not args.json:
            print(_table([res]).split("\n", 1)[1] if len(results) > 1 else _table([res]), flush=True)
    if args.json:
        print(json.dumps(results, default=str))
    return 1 if failed else 0
