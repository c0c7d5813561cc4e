"""Plot memory per optimizer and state dtype from benchmarks/memory.py rows (issue 22): one panel per model.

Bars: the formula's static bytes (weights + gradients held + pending + state; a lower bound of the peak)
split into weights, gradients and state, per optimizer × state dtype, for one per-layer mode and weight
dtype; a measured peak (``peak_gb`` of an ``ok`` row with the same settings) is drawn as a marker on its bar.

    PYTHONPATH=. python3 benchmarks/memory_plot.py docs/results/benchmarks/analytic/memory.jsonl \\
        docs/results/benchmarks/memory.jsonl --per-layer in_backward --weights bf16 \\
        --out docs/results/benchmarks/analytic/memory_lean.png
"""
from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DTYPES = ("float32", "bf16", "int8")
OPTS = ("adamw", "galore", "osd", "rso")


def load(paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def pick(rows: list[dict], model: str, opt: str, dtype: str, per_layer: str, weights: str, measured: bool,
         proj_dtype: str = "float32") -> dict | None:
    """The last row of these settings (rows without the lean keys are float32 states, weights and P; AdamW has no
    P; OSD with its default Adam P step); ``measured``: a GPU row that ran ("ok"; "any": also one that ran out of memory), else a row with the formula."""
    hit = None
    for r in rows:
        if (r["model"] == model and r["optimizer"] == opt and r.get("state_dtype", "float32") == dtype
                and r["per_layer_mode"] == per_layer and r.get("weights", "float32") == weights
                and (opt == "adamw" or r.get("proj_dtype", "float32") == proj_dtype)
                and (opt != "osd" or r.get("proj_optimizer", "adam") == "adam")     # OSD's default P step
                and r.get("activation_checkpointing", True)
                and (r.get("status") in (("ok", "oom") if measured == "any" else ("ok",)) and r.get("peak_gb") is not None
                     if measured else "analytic" in r)):
            hit = r
    return hit


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows", nargs="+", help="memory.jsonl files (analytic and/or measured rows)")
    ap.add_argument("--models", default="1b,7b")
    ap.add_argument("--per-layer", default="in_backward")
    ap.add_argument("--weights", default="bf16")
    ap.add_argument("--proj-dtype", default="float32", help="the rows' storage of P (benchmarks/memory.py --proj-dtype)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    rows = load(args.rows)
    models = args.models.split(",")
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.2), squeeze=False)
    colours = {"weights": "#9e9e9e", "grads": "#64b5f6", "pending": "#81c784", "state": "#e57373"}
    for ax, model in zip(axes[0], models):
        labels, x = [], 0
        for opt in OPTS:
            for dtype in DTYPES:
                r = pick(rows, model, opt, dtype, args.per_layer, args.weights, measured=False,
                         proj_dtype=args.proj_dtype)
                if r is None:
                    continue
                bottom = 0.0
                for part in ("weights", "grads", "pending", "state"):
                    v = r["analytic"][part]
                    ax.bar(x, v, bottom=bottom, color=colours[part], label=part if x == 0 else None, width=0.8)
                    bottom += v
                m = pick(rows, model, opt, dtype, args.per_layer, args.weights, measured="any",
                         proj_dtype=args.proj_dtype)
                if m is not None:
                    oom = m["status"] == "oom"          # the peak when the allocator refused (at its --cap-gb)
                    label = f"out of memory at a {m.get('cap_gb')} GB cap" if oom else "measured peak"
                    ax.plot(x, m["peak_gb"], "rx" if oom else "kD", markersize=8,
                            label=label if label not in ax.get_legend_handles_labels()[1] else None)
                labels.append(f"{opt}\n{dtype}")
                x += 1
            x += 0.5                                  # a gap between optimizers
        ticks, pos = [], 0.0
        for opt in OPTS:
            n = sum(1 for d in DTYPES if pick(rows, model, opt, d, args.per_layer, args.weights, False, args.proj_dtype)
                    is not None)
            ticks += [pos + i for i in range(n)]
            pos += n + 0.5
        ax.set_xticks(ticks, labels, fontsize=7)
        ax.set_ylabel("GiB")
        ax.set_title(f"LLaMA-{model.upper()}: weights {args.weights}, per-layer {args.per_layer}"
                     + (f", P {args.proj_dtype}" if args.proj_dtype != "float32" else ""))
        ax.axhline(24, color="k", lw=0.6, ls="--")
        ax.text(ticks[-1] if ticks else 0, 24.5, "24 GB", ha="right", fontsize=7)
        ax.legend(fontsize=7, loc="upper center")
    fig.suptitle("Formula static bytes (bars; a lower bound of the peak) and measured peaks (markers)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
