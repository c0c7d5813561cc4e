"""``osd-theory validate``: pretrain a LLaMA model with one optimizer and log theory metrics.

Example (CPU, a fresh clone, well under a minute)::

    osd-theory validate --model tiny --optimizer adamw --steps 20 --out /tmp/x

The flags are generated from :class:`~discrete.validation.config.RunConfig` (:mod:`flags`). With
``--resume`` the run's saved ``config.json`` supplies every setting not given on the command line
(:mod:`resume` says which given ones may differ from it).

Under ``torchrun --nproc_per_node N -m discrete.validation.cli ...`` the same flags run DDP.
"""
from __future__ import annotations

import argparse
import os
import sys

from discrete.validation.config import RunConfig
from discrete.validation.flags import add_config_arguments, given_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's config: the given flags, over the saved config of the run when resuming."""
    from dataclasses import replace

    given = given_settings(args)
    if given.get("resume"):
        from discrete.validation.identity import require_named_rule
        from discrete.validation.resolve import resume_or_overwrite
        from discrete.validation.resume import load_saved
        from osd_theory.errors import UserError

        clash = resume_or_overwrite(RunConfig(**given), 1)
        if clash:  # before reading the run: the flags alone are wrong
            raise UserError(clash)

        saved = load_saved(given["out"])
        require_named_rule(saved.projection, given)  # never import a rule file this command line does not name
        return replace(saved, **{"stop_after": None, "overwrite": False, **given})
    return RunConfig(**given)


def run(args: argparse.Namespace) -> int:
    from discrete.validation.signals import Interrupted
    from discrete.validation.trainer import train

    from discrete.validation.distributed import exit_process

    main_rank = os.environ.get("RANK", "0") == "0"
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    try:
        summary = train(config_from_args(args))
    except Interrupted as stop:
        if main_rank:
            print(f"osd-theory validate: {stop}", file=sys.stderr)
        code = stop.exit_code
    else:
        if "val_ppl" in summary and main_rank:
            print(f"done: step {summary['step']}, tokens {summary['tokens']:,}, val ppl {summary['val_ppl']:.3f}")
        code = 0
    if distributed:         # a torchrun worker: leave without interpreter finalization (exit_process says why)
        exit_process(code)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m discrete.validation.cli`` (torchrun); same errors as the dispatcher."""
    from osd_theory.errors import UserError

    parser = argparse.ArgumentParser(prog="osd-theory validate")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"osd-theory validate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
