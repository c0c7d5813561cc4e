"""``osd-theory report DIR... [--json] [--plots DIR]``: compare finished validation runs."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run directories written by `osd-theory validate`")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per run")
    p.add_argument("--plots", default=None, help="write PNG plots into this directory")


def run(args: argparse.Namespace) -> int:
    from discrete.validation.report import load_run, plot, summarize, table

    runs = [load_run(d) for d in args.runs]
    rows = [summarize(r) for r in runs]
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    if args.plots:
        for path in plot(runs, args.plots):
            print(f"wrote {path}") if not args.json else None
    return 0
