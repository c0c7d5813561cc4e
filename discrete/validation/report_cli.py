"""``osd-theory report PATH... [--json] [--plots DIR]``: compare finished validation runs.

A PATH is a run directory or a sweep directory (its runs, in the sweep's order). A path that
does not exist is an error; a file or a directory that holds no run (a parent of runs, a stray
file picked up by a shell glob) is skipped with a note on stderr. Runs that differ only in seed
are grouped (mean ± Student-t 95 % interval, see ``report.table``).
"""
from __future__ import annotations

import argparse
import json
import os
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
            from discrete.validation.sweep import expected_runs

            # the runs of its grid (not sweep.json's list, which may be edited); sweep_lines names the missing
            out += [p / name for name, _ in expected_runs(p)[0] if holds_run(p / name)]
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


def _summarize(run: dict) -> dict:
    """report.summarize, with a malformed config.json or log field as a one-line error naming the run."""
    from discrete.validation.report import summarize

    try:
        if not isinstance(run["config"], dict):
            raise TypeError("config.json is not a JSON object")
        return summarize(run)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{run['dir']}: malformed config.json or log.jsonl ({type(exc).__name__}: {exc}); "
                        "fix or remove the run") from None


def sweep_lines(paths: list[str]) -> list[str]:
    """For each sweep among ``paths``: the runs it expects, and which are missing or unfinished."""
    from discrete.validation.rundir import SWEEP_FILE
    from discrete.validation.sweep import expected_runs

    lines = []
    for p in map(Path, paths):
        if not (p.is_dir() and (p / SWEEP_FILE).is_file()):
            continue
        runs, notes = expected_runs(p)
        for n in notes:
            note(n)
        missing = [name for name, state in runs if state == "new"]
        unfinished = [f"{name} ({state})" for name, state in runs if state not in ("new", "done")]
        line = f"sweep {p}: {len(runs)} runs expected, {len(runs) - len(missing) - len(unfinished)} finished"
        line += f"; missing: {', '.join(missing)}" if missing else ""
        line += f"; unfinished: {', '.join(unfinished)}" if unfinished else ""
        lines.append(line)
    return lines


def _plots_dir(paths: list[str], dirs: list[Path]) -> Path:
    """Where plots would go: a sweep's ``plots``, else ``plots`` beside the runs."""
    from discrete.validation.rundir import SWEEP_FILE

    sweeps = [Path(p) for p in paths if (Path(p) / SWEEP_FILE).is_file()]
    if len(sweeps) == 1:
        return sweeps[0] / "plots"
    return Path(os.path.commonpath([str(d.absolute().parent) for d in dirs])) / "plots"


def run(args: argparse.Namespace) -> int:
    from discrete.validation.report import json_rows, load_run, table
    from discrete.validation.rundir import check_writable

    if args.plots:  # before any work: a file or an unwritable place is a one-line error
        check_writable(Path(args.plots), "--plots")
    dirs = run_dirs(args.runs)
    runs = []
    for d in dirs:
        r = load_run(d)
        if r["skipped_lines"]:
            note(f"{d}: skipped {r['skipped_lines']} unparsable line(s) of log.jsonl (a record cut mid-write)")
        runs.append(r)
    rows = [_summarize(r) for r in runs]
    out = print if not args.json else note  # stdout holds only the JSON under --json
    print(json.dumps(json_rows(rows), indent=2, allow_nan=False) if args.json else table(rows))
    for line in sweep_lines(args.runs):
        out(line)
    if args.plots:
        from discrete.validation.plots import plot

        try:
            paths = plot(runs, args.plots)
        except OSError as exc:
            raise UserError(f"--plots {args.plots}: cannot write there ({exc.strerror or exc})") from None
        for path in paths:
            print(f"wrote {path}") if not args.json else None
    else:
        out(f"plots: none drawn; pass --plots DIR to draw them (e.g. --plots {_plots_dir(args.runs, dirs)})")
    return 0
