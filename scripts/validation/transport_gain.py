"""How much a moment transport after each OSD P step scales m: ‖R‖₂ of the two candidate transports.

Runs ``osd-theory validate`` in this process (its flags pass through) with a spy on
:func:`discrete.projection.transport`, and records for every call (one per projected matrix per step with
``switch=rotate_m`` or ``rotate`` and a smooth rule):

* ``naive``: ‖P_newᵀP_old‖₂, the transport of the 60M ablation runs of 2026-11-26 (code ``6e55401``);
* ``lstsq``: ‖R‖₂ of :func:`discrete.projection.transport`, the least-squares change of basis used since;
* ``gram``: ‖P_oldᵀP_old − I‖₂, how far P is from orthonormal.

With β₁ = 0.9, a per-step gain g on m compounds to a steady factor 0.1 / (1 − 0.9·g): g = 1.02 gives 1.22.

usage: python scripts/validation/transport_gain.py OUT.json --optimizer osd --group-option switch=rotate_m \
           --model tiny --steps 200 ...   (the flags after OUT.json are validate's)
"""
from __future__ import annotations

import json
import statistics
import sys

import torch

import discrete.projection as projection
from discrete.validation import cli


def main(out: str, argv: list[str]) -> None:
    calls: list[tuple[float, float, float]] = []
    transport = projection.transport

    def spy(P_old, P_new, reduce=None):
        R = transport(P_old, P_new, reduce)
        eye = torch.eye(P_old.shape[-1], dtype=P_old.dtype, device=P_old.device)
        naive = P_new.mT @ P_old                       # the old transport, kept here only to measure it
        calls.append(tuple(float(torch.linalg.matrix_norm(x, 2).max()) for x in (naive, R, P_old.mT @ P_old - eye)))
        return R

    # the switch policies look transport up in their module at each call: a spy for this process only
    projection.transport = spy
    try:
        cli.main(argv)
    finally:
        projection.transport = transport
    if not calls:
        raise SystemExit("no transport happened: pass --group-option switch=rotate_m (or rotate) with a smooth rule")
    n = len(calls)
    rows = []
    for name, lo, hi in (("first 10 %", 0, n // 10), ("middle 10 %", n // 2, n // 2 + n // 10), ("last 10 %", n - n // 10, n)):
        seg = calls[lo:max(hi, lo + 1)]
        row = {"calls": name}
        for i, key in enumerate(("naive", "lstsq", "gram")):
            row[f"{key}_median"] = statistics.median(c[i] for c in seg)
            row[f"{key}_max"] = max(c[i] for c in seg)
        rows.append(row)
        print(f"{name:>12}: ‖PnewᵀPold‖₂ median {row['naive_median']:.4f} max {row['naive_max']:.4f} | "
              f"least-squares ‖R‖₂ median {row['lstsq_median']:.4f} max {row['lstsq_max']:.4f} | "
              f"‖PᵀP − I‖₂ median {row['gram_median']:.4f}")
    with open(out, "w") as f:
        json.dump({"argv": argv, "transport_calls": n, "segments": rows}, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
