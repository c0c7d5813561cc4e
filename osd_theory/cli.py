"""The ``osd-theory`` command line: a thin dispatcher.

Each subcommand lives in the package that owns it and is imported only when it is
asked for, so ``osd-theory verify`` never imports the LLaMA trainer and
``osd-theory validate`` never imports sympy. A subcommand module
provides ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code).

User errors (bad names, bad sizes, missing files) are raised as
:class:`osd_theory.errors.UserError` and printed as one line, without a traceback.
``osd-theory --version`` prints the package version.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from osd_theory import __version__
from osd_theory.errors import UserError

# subcommand -> (module implementing it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("ode.cli", "integrate one HD system with one projection rule on one problem"),
    "verify": ("osd_theory.claims.cli", "run the paper's claims as checks and print claim -> evidence -> verdict"),
    "validate": ("discrete.validation.cli", "pretrain a LLaMA model with a subspace optimizer and log theory metrics"),
    "report": ("discrete.validation.report_cli", "compare validation runs: table, plots, --json"),
    "sweep": ("discrete.validation.sweep_cli", "run a grid of validation settings x seeds, one run dir each, resumable"),
    "export": ("discrete.validation.export_cli", "write a validation run's model as a transformers LlamaForCausalLM"),
}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="osd-theory",
        description="Verify and simulate memory-efficient subspace optimizers.",
    )
    lines = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items())
    p.epilog = "subcommands:\n" + lines
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("command", choices=sorted(SUBCOMMANDS), help="what to run")
    p.add_argument("-V", "--version", action="version", version=f"osd-theory {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-V"], ["--version"]):
        print(f"osd-theory {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        _top_parser().parse_args(argv[:1] or ["--help"])  # exits with usage / error
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"osd-theory {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"osd-theory {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"osd-theory {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`osd-theory report ... | head`): stop quietly, as cat does; stdout is
        # pointed at devnull so the interpreter's final flush does not raise a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
