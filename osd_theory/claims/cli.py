"""``osd-theory verify [--json] [--quick] [--claims C1,C3]``: run the claims, print a table.

Exit status 0 when every claim ran (whatever its verdict: "violated" can be the predicted
outcome, as for C4), 1 when a claim raised an exception (a failed run), 2 for bad input.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
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
    p.add_argument("--jobs", type=int, default=None,
                   help="claims run in this many worker processes (default: min(2, CPUs); 1 = in this process)")


def _table(results: list[dict]) -> str:
    rows = [f"{'claim':<6}{'verdict':<14}evidence"]
    for r in results:
        ev = textwrap.wrap(str(r.get("evidence", "")), 96) or [""]
        rows.append(f"{r['claim']:<6}{r['verdict']:<14}{ev[0]}")
        rows.extend(f"{'':<20}{line}" for line in ev[1:])
    return "\n".join(rows)


def _run_one(cid: str, quick: bool) -> dict:
    """One claim, timed; an exception becomes an entry with ``"error"`` (the run failed)."""
    import torch
    torch.set_num_threads(1)  # small matrices: one thread per worker is fastest and fair
    start = time.perf_counter()
    try:
        res = run_claim(cid, quick=quick)
    except Exception as exc:  # a crashed check is a failed run, reported and counted
        res = {"claim": cid, "statement": CLAIMS[cid], "verdict": "inconclusive",
               "evidence": f"ERROR: {type(exc).__name__}: {exc}", "error": traceback.format_exc(limit=3)}
    res["seconds"] = round(time.perf_counter() - start, 2)
    return res


def run(args) -> int:
    ids = sorted(CLAIMS) if not args.claims else [c.strip() for c in args.claims.split(",") if c.strip()]
    unknown = [c for c in ids if c not in CLAIMS]
    if unknown:
        raise UserError(f"unknown claim(s) {unknown}; expected one of {sorted(CLAIMS)}")
    jobs = args.jobs if args.jobs is not None else min(2, os.cpu_count() or 1, len(ids))
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    if jobs == 1:
        results = []
        for cid in ids:
            results.append(_run_one(cid, args.quick))
            if not args.json:
                print(_table([results[-1]]).split("\n", 1)[1] if len(results) > 1 else _table([results[-1]]), flush=True)
    else:
        # independent claims in parallel; "spawn" so workers do not inherit torch's thread pools
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [pool.submit(_run_one, cid, args.quick) for cid in ids]
            results = [f.result() for f in futures]
        if not args.json:
            print(_table(results), flush=True)
    failed = any("error" in r for r in results)
    if args.json:
        print(json.dumps(results, default=str))
    return 1 if failed else 0
