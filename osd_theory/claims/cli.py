"""``osd-theory verify [--json] [--quick | --heavy] [--claims C1,C3] [--jobs N]``: run the claims, print a table.

Every claim states the verdict it predicts (``osd_theory.claims.EXPECTED``; C4 predicts
"violated"). Exit status: 0 when every claim ran and gave its predicted verdict; 1 when a
verdict differs from the prediction or a claim raised (a failed run); 2 for bad input.
``--quick`` runs fewer cases per claim (what CI and the docs test run); ``--heavy`` adds the
sweeps too long for the default run (each claim's evidence says what ran). The table's rows are
printed on stdout as their claims finish (with ``--json``, the JSON list at the end); each claim
also reports its progress on stderr. Ctrl-C stops the workers and exits 130 without a traceback.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import textwrap
import time
import traceback

from osd_theory.claims import CLAIMS, EXPECTED, run_claim, title
from osd_theory.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the list of claim results as JSON (at the end)")
    p.add_argument("--quick", action="store_true", help="fewer runs per claim (under a minute on two idle cores)")
    p.add_argument("--heavy", action="store_true",
                   help="add the heavier sweeps (C4: SVD-start table over 3 seeds with rosenbrock; C6: long horizons "
                        "on the 100x100 case over 5 alphas; C7: a fourth step size); each claim's evidence says what ran")
    p.add_argument("--claims", default=None, help=f"comma-separated subset of {sorted(CLAIMS)}")
    p.add_argument("--jobs", type=int, default=None,
                   help="claims run in this many worker processes (default: min(2, CPUs); 1 = in this process)")


# relative cost of the full claims (CPU seconds on an idle core, rounded): the pool starts the longest first
COST = {"C7": 100, "C4": 50, "C6": 40, "C3": 6, "C2": 6, "C5": 6, "C1": 4, "C0": 4}

STATEMENT_WIDTH = 44
EVIDENCE_WIDTH = 100


def _mark(r: dict) -> str:
    if "error" in r:
        return "ERROR"
    return "ok" if r.get("as_expected") else f"UNEXPECTED (predicted {r.get('expected')})"


HEADER = f"{'claim':<6}{'verdict':<13}{'predicted?':<11}{'time':>7}  {'statement':<{STATEMENT_WIDTH}}"


def _row(r: dict) -> str:
    """One claim's row: id, verdict, whether predicted, time, the claim's title (wrapped), then its evidence."""
    ok = "yes" if r.get("as_expected") else "NO"
    st = textwrap.wrap(title(r["claim"], str(r.get("statement", ""))), STATEMENT_WIDTH) or [""]
    lines = [f"{r['claim']:<6}{r['verdict']:<13}{ok:<11}{r.get('seconds', 0):>6.1f}s  {st[0]}"]
    lines.extend(f"{'':<39}{x}" for x in st[1:])
    ev = textwrap.wrap(str(r.get("evidence", "")), EVIDENCE_WIDTH) or [""]
    lines.append(f"{'':<6}evidence: {ev[0]}")
    lines.extend(f"{'':<16}{x}" for x in ev[1:])
    return "\n".join(lines)


def _table(results: list[dict]) -> str:
    return "\n".join([HEADER, *(_row(r) for r in results)])


def _ignore_sigint() -> None:
    """Pool workers ignore Ctrl-C: the parent alone handles it and terminates them (no traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_one(cid: str, quick: bool, heavy: bool = False) -> dict:
    """One claim, timed (wall and this process's CPU); an exception becomes an entry with ``"error"``."""
    import torch
    torch.set_num_threads(1)  # small matrices: one thread per worker is fastest and fair
    start, cpu = time.perf_counter(), time.process_time()
    try:
        res = run_claim(cid, quick=quick, heavy=heavy)
    except Exception as exc:  # a crashed check is a failed run, reported and counted
        res = {"claim": cid, "statement": CLAIMS[cid], "verdict": "inconclusive", "expected": EXPECTED.get(cid),
               "as_expected": False, "evidence": f"ERROR: {type(exc).__name__}: {exc}",
               "error": traceback.format_exc(limit=3)}
    res["seconds"] = round(time.perf_counter() - start, 2)
    res["cpu_seconds"] = round(time.process_time() - cpu, 2)
    res["mode"] = "heavy" if heavy else ("quick" if quick else "full")
    return res


def _progress(res: dict, done: int, total: int, started: float) -> None:
    print(f"[{done}/{total}] {res['claim']} {res['verdict']} ({_mark(res)}) in {res['seconds']:.1f} s; "
          f"{time.perf_counter() - started:.0f} s elapsed", file=sys.stderr, flush=True)


def _results(ids: list[str], jobs: int, quick: bool, heavy: bool):
    """Yield each claim's result as it finishes (in this process, or from a pool of ``jobs`` workers)."""
    if jobs == 1:
        for cid in ids:
            yield _run_one(cid, quick, heavy)
        return
    # independent claims in parallel; "spawn" so workers do not inherit torch's thread pools. A
    # multiprocessing.Pool (not concurrent.futures) so that Ctrl-C can terminate and join its workers:
    # they ignore SIGINT, the parent catches it, and terminate() + join() release the pool's semaphores
    # (an interrupted ProcessPoolExecutor leaves tracebacks from every worker and a leaked-semaphore warning).
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(processes=jobs, initializer=_ignore_sigint)
    try:
        order = sorted(ids, key=lambda c: -COST.get(c, 10))
        for res in pool.imap_unordered(_star_run_one, [(cid, quick, heavy) for cid in order]):
            yield res
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _star_run_one(args: tuple) -> dict:
    return _run_one(*args)


def run(args) -> int:
    ids = list(CLAIMS) if not args.claims else [c.strip() for c in args.claims.split(",") if c.strip()]
    unknown = [c for c in ids if c not in CLAIMS]
    if unknown:
        raise UserError(f"unknown claim(s) {unknown}; expected one of {sorted(CLAIMS)}")
    jobs = args.jobs if args.jobs is not None else min(2, os.cpu_count() or 1, len(ids))
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    heavy = bool(getattr(args, "heavy", False))
    if heavy and args.quick:
        raise UserError("--heavy and --quick exclude each other: --heavy adds sweeps to the full run")
    mode = " (--quick)" if args.quick else (" (--heavy)" if heavy else "")
    started = time.perf_counter()
    print(f"verify: {len(ids)} claim(s) {', '.join(ids)}{mode}, {jobs} worker(s)", file=sys.stderr, flush=True)
    results: dict[str, dict] = {}
    if not args.json:
        print(HEADER, flush=True)
    try:
        for res in _results(ids, jobs, args.quick, heavy):
            results[res["claim"]] = res
            _progress(res, len(results), len(ids), started)
            if not args.json:
                print(_row(res), flush=True)      # each row as its claim finishes
    except KeyboardInterrupt:
        done = ", ".join(f"{c} {r['verdict']}" for c, r in results.items()) or "none"
        print(f"verify: interrupted after {time.perf_counter() - started:.0f} s; finished: {done}",
              file=sys.stderr, flush=True)
        return 130
    ordered = [results[c] for c in ids]
    bad = [r["claim"] for r in ordered if "error" in r or not r.get("as_expected")]
    if args.json:
        print(json.dumps(ordered, default=str))
    else:
        print(f"\n{len(ids) - len(bad)}/{len(ids)} claims gave their predicted verdict"
              + (f"; NOT: {', '.join(bad)}" if bad else "") + f" ({time.perf_counter() - started:.0f} s)")
    return 1 if bad else 0
