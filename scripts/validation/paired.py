"""Paired differences of final validation PPL between 8-bit and float32 states (lowbit_quality.sh's runs).

For each optimizer: per seed, PPL(int8) − PPL(float32); the mean with a 95 % t interval (n ≥ 3; with n < 3 no
interval is printed). Writes ``paired.json`` beside the runs and prints a table.

    python3 scripts/validation/paired.py docs/results/validation/lowbit_tiny
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from discrete.validation.stats import mean_ci


def final_ppl(run: Path) -> float:
    evals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()
             if line.strip() and json.loads(line).get("kind") == "eval"]
    return evals[-1]["val_ppl"]


def main(root: str) -> dict:
    root_p = Path(root)
    out = {}
    for opt in ("galore", "osd"):
        seeds = sorted({int(p.name.rsplit("_s", 1)[1]) for p in root_p.glob(f"{opt}_float32_s*") if p.is_dir()})
        pairs = [(s, final_ppl(root_p / f"{opt}_float32_s{s}"), final_ppl(root_p / f"{opt}_int8_s{s}"))
                 for s in seeds if (root_p / f"{opt}_int8_s{s}" / "log.jsonl").is_file()]
        diffs = [b - a for _, a, b in pairs]
        row = {"pairs": [{"seed": s, "float32": a, "int8": b, "int8_minus_float32": b - a} for s, a, b in pairs]}
        mean, half = mean_ci(diffs)                       # Student-t 95 % over seeds; no interval with n < 3
        if mean is not None:
            row["mean_diff"] = mean
        if half is not None:
            row["ci95"] = [mean - half, mean + half]
        out[opt] = row
        ci = row.get("ci95")
        print(f"{opt:7s} n={len(diffs)}  " + "  ".join(f"s{s}: {a:.2f} -> {b:.2f}" for s, a, b in pairs)
              + (f"  mean int8 - float32 = {row['mean_diff']:+.2f} PPL" if diffs else "")
              + (f", 95% CI [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else " (n < 3: no interval)"))
    (root_p / "paired.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main(sys.argv[1])
