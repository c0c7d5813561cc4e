"""``osd-theory sweep``: a grid of validation settings x seeds, one run directory each, resumable.

Example (CPU; 2 optimizers x 2 lrs x 2 seeds = 8 tiny runs, then the grouped table)::

    osd-theory sweep --model tiny --steps 20 --grid optimizer=galore,osd --grid lr=0.01,0.02 \\
        --seeds 0,1 --out /tmp/sweep
    osd-theory sweep --resume --out /tmp/sweep      # after an interruption: continues where it stopped
    osd-theory report /tmp/sweep --plots /tmp/sweep/plots

Every flag of ``osd-theory validate`` (bar ``--seed``, ``--out``, ``--resume``, ``--overwrite``,
which mean the sweep's own here) sets what all runs share.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from discrete.validation.flags import add_config_arguments, given_settings

OWN = ("seed", "out", "resume", "overwrite")  # flags with the sweep's own meaning


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a setting to vary and its values (any validate flag name, e.g. lr=0.01,0.02 or "
                        "optimizer=galore,osd); repeatable: the runs are the product")
    p.add_argument("--seeds", default=None, help="comma-separated seeds; each setting runs once per seed (default 0)")
    p.add_argument("--out", required=True, help="sweep directory (holds sweep.json and one run directory per run)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the sweep in --out (its runs' files are deleted)")
    add_config_arguments(p, exclude=OWN)


def run(args: argparse.Namespace) -> int:
    from discrete.validation import sweep as S
    from discrete.validation.report import load_run, summarize, table
    from discrete.validation.signals import Interrupted
    from osd_theory.errors import UserError

    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite exclude each other: continue the sweep, or replace it")
    root = Path(args.out)
    common = given_settings(args, exclude=OWN)
    grid = S.parse_grid(args.grid, common)
    seeds = S.parse_seeds(args.seeds) if args.seeds is not None else None
    if args.resume:
        if not (root / S.SWEEP_FILE).is_file():
            raise UserError(f"--resume: {root} holds no sweep (no {S.SWEEP_FILE}); start it without --resume")
        sweep = S.merge_resume(S.load_sweep(root), common, grid, seeds)
    else:
        sweep = S.Sweep(root, common, grid, seeds or [0])
    n = len(sweep.points())
    print(f"sweep: {n} runs ({' x '.join(f'{len(v)} {k}' for k, v in sweep.grid.items()) or '1 setting'} x "
          f"{len(sweep.seeds)} seeds) in {root}")
    try:
        failures = S.run_sweep(sweep, resume=args.resume, overwrite=args.overwrite)
    except Interrupted as stop:
        print(f"osd-theory sweep: {stop}; continue the sweep with osd-theory sweep --resume --out {root}",
              file=sys.stderr)
        return stop.exit_code
    done = [d for d in S.sweep_runs(root) if (d / "log.jsonl").is_file() and (d / "config.json").is_file()]
    if done:
        print(table([summarize(load_run(d)) for d in done]))
    if failures:
        print(f"osd-theory sweep: {len(failures)} of {n} runs failed: " +
              "; ".join(f"{name}: {msg}" for name, msg in failures), file=sys.stderr)
        return 1
    return 0
