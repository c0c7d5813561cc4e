"""``osd-theory report PATH... [--json] [--plots DIR]``: compare finished validation runs.

A PATH is a run directory or a sweep directory (its runs, in the sweep's order). A path that
does not exist is an error; a file or a directory that holds no run (a parent of runs, a stray
file picked up by a shell glob) is skipped with a note on stderr. Runs that differ only in seed
are grouped (mean ± Student-t 95 % interval, see ``report.table``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from osd_theory.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run directories written by `osd-theory validate`, or sweep directories")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per run (strict JSON: null for "
                                                       "missing or non-finite numbers)")
    p.add_argument("--plots", default=None, help="write PNG plots into this directory")


def note(message: str) -> None:
    print(f"osd-theory report: note: {message}", file=sys.stderr)


def run_dirs(paths: list[str]) -> list[Path]:
    """The run directories named by ``paths`` (sweeps expanded); missing paths are errors, others notes."""
    from discrete.validation.rundir import SWEEP_FILE, holds_run

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"{', '.join(missing)}: does not exist" if len(missing) == 1 else
                        f"these paths do not exist: {', '.join(missing)}")
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and (p / SWEEP_FILE).is_file():
            from discrete.validation.sweep import sweep_runs

            out += [d for d in sweep_runs(p) if holds_run(d)]
        elif p.is_dir() and (p / "config.json").is_file() and (p / "log.jsonl").is_file():
            out.append(p)
        elif p.is_dir():
            inside = sum(1 for d in p.iterdir() if d.is_dir() and (d / "log.jsonl").is_file())
            hint = f" (it contains {inside} run directories: pass them, e.g. {p}/*)" if inside else ""
            note(f"skipped {p}: not a run directory{hint}")
        else:
            note(f"skipped {p}: a file, not a run directory")
    if not out:
        raise UserError("no run directories among the arguments")
    seen = set()
    return [d for d in out if not (d.resolve() in seen or seen.add(d.resolve()))]


def run(args: argparse.Namespace) -> int:
    from discrete.validation.report import json_rows, load_run, summarize, table

    runs = []
    for d in run_dirs(args.runs):
        r = load_run(d)
        if r["skipped_lines"]:
            note(f"{d}: skipped {r['skipped_lines']} unparsable line(s) of log.jsonl (a record cut mid-write)")
        runs.append(r)
    rows = [summarize(r) for r in runs]
    print(json.dumps(json_rows(rows), indent=2, allow_nan=False) if args.json else table(rows))
    if args.plots:
        from discrete.validation.plots import plot

        for path in plot(runs, args.plots):
            print(f"wrote {path}") if not args.json else None
    return 0
