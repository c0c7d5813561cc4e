"""``osd-theory validate``: pretrain a LLaMA model with one optimizer and log theory metrics.

Example (CPU, a fresh clone, well under a minute)::

    osd-theory validate --model tiny --optimizer adamw --steps 20 --out /tmp/x

Under ``torchrun --nproc_per_node N -m discrete.validation.cli ...`` the same flags run DDP.
"""
from __future__ import annotations

import argparse
import sys

from discrete.validation.config import RunConfig

_DEFAULTS = RunConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    from discrete.validation.model import FLAVOURS
    from discrete.validation.optim import OPTIMIZER_BUILDERS

    d = _DEFAULTS
    p.add_argument("--model", default=d.model, help=f"model size, one of {FLAVOURS.names()} (default {d.model})")
    p.add_argument("--optimizer", default=d.optimizer, help=f"one of {OPTIMIZER_BUILDERS.names()} (default {d.optimizer})")
    p.add_argument("--rank", type=int, default=None, help="subspace rank (default: the paper's, 128 at 60M)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=None, help="global sequences per step (default 512; 8 for tiny)")
    p.add_argument("--micro-batch-size", type=int, default=None, help="sequences per forward per process")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default 256; 64 for tiny)")
    p.add_argument("--lr", type=float, default=None, help="peak lr (default: 1e-3 AdamW, 1e-2 GaLore/OSD/RSO)")
    p.add_argument("--warmup-frac", type=float, default=d.warmup_frac)
    p.add_argument("--min-lr-frac", type=float, default=d.min_lr_frac)
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="0 disables")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--update-proj-gap", type=int, default=d.update_proj_gap, help="GaLore T / RSO resample period")
    p.add_argument("--scale", type=float, default=d.scale, help="GaLore/OSD update scale (default 0.25)")
    p.add_argument("--alpha", type=float, default=d.alpha, help=f"OSD: P lr = alpha * weight lr (default {d.alpha})")
    p.add_argument("--pca-lambda", type=float, default=d.pca_lambda, help="OSD orthogonality weight (default 0.1)")
    p.add_argument("--nonfinite", default=d.nonfinite, choices=["ignore", "raise", "skip"],
                   help="subspace optimizers' NaN/Inf-gradient check; 'raise'/'skip' cost a host sync per step "
                        f"(default {d.nonfinite}: no check, the run stops at a non-finite logged loss)")
    p.add_argument("--data", default=d.data, help="corpus dir with train.* and valid.* (default ../shared/data/corpus)")
    p.add_argument("--train-files", nargs="+", default=[], help="explicit train files (.txt/.jsonl[.xz/.gz/.bz2])")
    p.add_argument("--valid-files", nargs="+", default=[], help="explicit valid files")
    p.add_argument("--vocab-size", type=int, default=None, help="BPE vocab (default 32000; 4096 for tiny)")
    p.add_argument("--max-train-chars", type=int, default=None,
                   help="use only this prefix of the train text, for tokenizer and train tokens (default all; 4M for tiny; 0 = all)")
    p.add_argument("--val-tokens", type=int, default=None,
                   help="evaluate the first N valid tokens (default the whole valid split; 65536 for tiny; 0 = all)")
    p.add_argument("--cache-dir", default=d.cache_dir, help="tokenizer / token-array cache (default .cache/validation)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="0: evaluate at the end only")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="0: checkpoint at the end only; -1: never")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--per-layer", action="store_true", help="per-layer mode: projected gradients freed in backward (docs/scaling.md)")
    p.add_argument("--fsdp", action="store_true", help="FSDP2 (fully_shard) instead of DDP under torchrun (docs/scaling.md)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--out", required=True, help="run directory")


# sizes for the tiny CPU flavour when the user gives none (stated in config.json)
TINY_SHAPE = {"batch_size": 8, "seq_len": 64}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    shape = TINY_SHAPE if args.model == "tiny" else {"batch_size": _DEFAULTS.batch_size, "seq_len": _DEFAULTS.seq_len}
    zero_is_all = lambda v: None if v == 0 else v  # noqa: E731
    cfg = RunConfig(
        model=args.model, optimizer=args.optimizer, rank=args.rank, steps=args.steps,
        batch_size=args.batch_size or shape["batch_size"], micro_batch_size=args.micro_batch_size,
        seq_len=args.seq_len or shape["seq_len"], lr=args.lr, warmup_frac=args.warmup_frac,
        min_lr_frac=args.min_lr_frac, grad_clip=args.grad_clip, weight_decay=args.weight_decay,
        update_proj_gap=args.update_proj_gap, scale=args.scale, alpha=args.alpha, pca_lambda=args.pca_lambda,
        nonfinite=args.nonfinite,
        data=args.data, train_files=args.train_files, valid_files=args.valid_files, vocab_size=args.vocab_size,
        max_train_chars=args.max_train_chars, val_tokens=args.val_tokens, cache_dir=args.cache_dir, seed=args.seed,
        out=args.out, log_every=args.log_every, eval_every=args.eval_every, ckpt_every=args.ckpt_every,
        resume=args.resume, device=args.device, compile=args.compile, progress=not args.no_progress,
        per_layer=args.per_layer, fsdp=args.fsdp,
    )
    from discrete.validation.config import resolve_data_defaults

    resolve_data_defaults(cfg)
    cfg.max_train_chars, cfg.val_tokens = zero_is_all(cfg.max_train_chars), zero_is_all(cfg.val_tokens)
    return cfg


def run(args: argparse.Namespace) -> int:
    from discrete.validation.trainer import train

    import os

    summary = train(config_from_args(args))
    if "val_ppl" in summary and os.environ.get("RANK", "0") == "0":
        print(f"done: step {summary['step']}, tokens {summary['tokens']:,}, val ppl {summary['val_ppl']:.3f}")
    return 0


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
