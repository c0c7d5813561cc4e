"""``osd-theory verify [--json] [--quick] [--claims C1,C3] [--jobs N]``: run the claims, print a table.

Every claim states the verdict it predicts (``osd_theory.claims.EXPECTED``; C4 predicts
"violated"). Exit status: 0 when every claim ran and gave its predicted verdict; 1 when a
verdict differs from the prediction or a claim raised (a failed run); 2 for bad input.
``--quick`` runs fewer cases per claim (what CI and the docs test run). Each claim reports
its progress on stderr as it finishes, with its time, so stdout stays the table (or JSON).
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

from osd_theory.claims import CLAIMS, EXPECTED, run_claim
from osd_theory.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the list of claim results as JSON")
    p.add_argument("--quick", action="store_true", help="fewer runs per claim (about a minute on two cores)")
    p.add_argument("--claims", default=None, help=f"comma-separated subset of {sorted(CLAIMS)}")
    p.add_argument("--jobs", type=int, default=None,
                   help="claims run in this many worker processes (default: min(2, CPUs); 1 = in this process)")


# relative cost of the full claims (measured on two cores): the pool starts the longest first
COST = {"C4": 8, "C7": 4, "C3": 2, "C0": 1, "C1": 1, "C2": 1, "C5": 1, "C6": 1}


def _mark(r: dict) -> str:
    if "error" in r:
        return "ERROR"
    return "ok" if r.get("as_expected") else f"UNEXPECTED (predicted {r.get('expected')})"


def _table(results: list[dict]) -> str:
    rows = [f"{'claim':<6}{'verdict':<14}{'predicted?':<12}{'time':>8}  evidence"]
    for r in results:
        ev = textwrap.wrap(str(r.get("evidence", "")), 90) or [""]
        ok = "yes" if r.get("as_expected") else "NO"
        rows.append(f"{r['claim']:<6}{r['verdict']:<14}{ok:<12}{r.get('seconds', 0):>7.1f}s  {ev[0]}")
        rows.extend(f"{'':<42}{line}" for line in ev[1:])
    return "\n".join(rows)


def _run_one(cid: str, quick: bool) -> dict:
    """One claim, timed; an exception becomes an entry with ``"error"`` (the run failed)."""
    import torch
    torch.set_num_threads(1)  # small matrices: one thread per worker is fastest and fair
    start = time.perf_counter()
    try:
        res = run_claim(cid, quick=quick)
    except Exception as exc:  # a crashed check is a failed run, reported and counted
        res = {"claim": cid, "statement": CLAIMS[cid], "verdict": "inconclusive", "expected": EXPECTED.get(cid),
               "as_expected": False, "evidence": f"ERROR: {type(exc).__name__}: {exc}",
               "error": traceback.format_exc(limit=3)}
    res["seconds"] = round(time.perf_counter() - start, 2)
    return res


def _progress(res: dict, done: int, total: int, started: float) -> None:
    print(f"[{done}/{total}] {res['claim']} {res['verdict']} ({_mark(res)}) in {res['seconds']:.1f} s; "
          f"{time.perf_counter() - started:.0f} s elapsed", file=sys.stderr, flush=True)


def run(args) -> int:
    ids = list(CLAIMS) if not args.claims else [c.strip() for c in args.claims.split(",") if c.strip()]
    unknown = [c for c in ids if c not in CLAIMS]
    if unknown:
        raise UserError(f"unknown claim(s) {unknown}; expected one of {sorted(CLAIMS)}")
    jobs = args.jobs if args.jobs is not None else min(2, os.cpu_count() or 1, len(ids))
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    started = time.perf_counter()
    print(f"verify: {len(ids)} claim(s) {', '.join(ids)}{' (--quick)' if args.quick else ''}, {jobs} worker(s)",
          file=sys.stderr, flush=True)
    results: dict[str, dict] = {}
    if jobs == 1:
        for cid in ids:
            results[cid] = _run_one(cid, args.quick)
            _progress(results[cid], len(results), len(ids), started)
    else:
        # independent claims in parallel; "spawn" so workers do not inherit torch's thread pools
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            order = sorted(ids, key=lambda c: -COST.get(c, 1))
            futures = {pool.submit(_run_one, cid, args.quick): cid for cid in order}
            for fut in concurrent.futures.as_completed(futures):
                res = fut.result()
                results[res["claim"]] = res
                _progress(res, len(results), len(ids), started)
    ordered = [results[c] for c in ids]
    bad = [r["claim"] for r in ordered if "error" in r or not r.get("as_expected")]
    if args.json:
        print(json.dumps(ordered, default=str))
    else:
        print(_table(ordered), flush=True)
        print(f"\n{len(ids) - len(bad)}/{len(ids)} claims gave their predicted verdict"
              + (f"; NOT: {', '.join(bad)}" if bad else "") + f" ({time.perf_counter() - started:.0f} s)")
    return 1 if bad else 0
