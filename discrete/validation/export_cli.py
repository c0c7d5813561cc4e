"""``osd-theory export RUN_DIR OUT_DIR``: a validation run's checkpoint as a transformers model.

Writes ``OUT_DIR/config.json`` and ``OUT_DIR/model.safetensors`` (transformers' ``save_pretrained``;
float32, as trained), loadable with ``transformers.LlamaForCausalLM.from_pretrained(OUT_DIR)``, and
``OUT_DIR/osd_theory_export.json`` saying which run and step it came from. The model is the run's
flavour (its ``config.json``) with the checkpoint's vocabulary; the tokenizer is not exported (it
lives in the run's ``--cache-dir``). Needs the ``export`` extra (transformers, safetensors).

Example::

    osd-theory export runs/tiny exported/tiny
    python -c "from transformers import LlamaForCausalLM; LlamaForCausalLM.from_pretrained('exported/tiny')"
"""
from __future__ import annotations

import argparse
from pathlib import Path

from osd_theory.errors import UserError

EXPORT_NOTE = "osd_theory_export.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a validation run directory (with checkpoint.pt and config.json)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where to write config.json and model.safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace the files of a non-empty OUT_DIR")


def export(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the run's checkpointed model to ``out_dir`` in transformers' format; returns ``out_dir``."""
    from discrete.validation import checkpoint, hf
    from discrete.validation.config import from_json
    from discrete.validation.model import build_model
    from discrete.validation.runlog import read_json, write_json

    hf.require_transformers()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / checkpoint.CHECKPOINT_NAME).is_file() or not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir} is not a validation run with a checkpoint (needs config.json and "
                        f"{checkpoint.CHECKPOINT_NAME}; runs with --ckpt-every -1 write none)")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not overwrite)):
        raise UserError(f"{out_dir} exists and is {'not a directory' if not out_dir.is_dir() else 'not empty'}; "
                        "pass --overwrite to replace its files, or another OUT_DIR")
    cfg = from_json(read_json(run_dir / "config.json"))
    try:
        ck = checkpoint.load_checkpoint(run_dir)
    except UserError as exc:
        raise UserError(str(exc).removeprefix("--resume: ")) from None
    state = ck.get("model", {})
    if "dcp" in ck:                        # an --fsdp run: the whole model from its shards, in this one process
        from discrete.validation.checkpoint_dcp import load_model_weights

        state = load_model_weights(run_dir, ck)
    if "embed_tokens.weight" not in state:
        raise UserError(f"the checkpoint of {run_dir} holds no LLaMA weights (no embed_tokens.weight)")
    model = build_model(cfg.model, vocab_size=state["embed_tokens.weight"].shape[0], max_seq_len=cfg.seq_len)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"the checkpoint of {run_dir} does not fit the {cfg.model} model "
                        f"({str(exc).strip().splitlines()[0]})") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.to_hf(model).save_pretrained(str(out_dir))
    if not (out_dir / "model.safetensors").is_file():
        raise UserError(f"transformers wrote no model.safetensors to {out_dir} (an old transformers? {hf.INSTALL})")
    write_json(out_dir / EXPORT_NOTE, {"run_dir": str(run_dir.resolve()), "step": ck["step"], "model": cfg.model,
                                       "optimizer": cfg.optimizer, "seed": cfg.seed})
    return out_dir


def run(args: argparse.Namespace) -> int:
    out = export(args.run_dir, args.out_dir, args.overwrite)
    print(f"exported {args.run_dir} to {out} (config.json, model.safetensors); "
          "load with transformers.LlamaForCausalLM.from_pretrained")
    return 0
