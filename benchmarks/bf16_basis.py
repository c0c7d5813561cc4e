"""What keeping P in bf16 costs (group key ``proj_dtype="bf16"``, issue 22): final loss against a float32 P.

A 3-layer tanh MLP (32 → 48 → 48 → 1) regresses tanh(x₀ − x₁) on 256 fixed Gaussian inputs, full batch,
200 steps, lr 1e-2; its two matrices of min side ≥ 4 are projected at rank 4 with T = 10. Each optimizer runs
twice from the same initialisation, with P in float32 and in bf16 (round to nearest); the row records both final
losses and their relative difference. tests/discrete/test_bf16_basis.py runs the same problem (it imports these
functions) and bounds the difference.

    PYTHONPATH=. python3 benchmarks/bf16_basis.py --out docs/results/benchmarks/bf16_basis.jsonl   # CPU, ~5 s
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from discrete import RSO, GaLore, OnlineSubspaceDescent

CLASSES = {"osd": OnlineSubspaceDescent, "osd_gd": OnlineSubspaceDescent, "galore": GaLore, "rso": RSO}
EXTRA = {"osd_gd": {"proj_optimizer": "gd"}}
STEPS = 200


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.Tanh(), torch.nn.Linear(48, 48), torch.nn.Tanh(),
                               torch.nn.Linear(48, 1))


def optimizer(net: torch.nn.Module, name: str, proj_dtype: str = "bf16", **kw) -> torch.optim.Optimizer:
    mats = [p for p in net.parameters() if p.ndim == 2 and min(p.shape) >= 4]
    rest = [p for p in net.parameters() if not any(p is q for q in mats)]
    group = {"params": mats, "rank": 4, "proj_dtype": proj_dtype, "update_proj_gap": 10, **EXTRA.get(name, {})}
    return CLASSES[name]([{"params": rest}, group], lr=1e-2, **kw)


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(256, 32, generator=g)
    return X, torch.tanh(X[:, :1] - X[:, 1:2])


def train(net: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, start: int = 0) -> list[float]:
    """Full-batch steps; the loss before each step."""
    X, Y = data()
    losses = []
    for _ in range(start, start + steps):
        loss = ((net(X) - Y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return losses


def row(name: str) -> dict:
    """Final losses with P in float32 and in bf16, and (bf16 − float32)/float32."""
    final = {}
    for proj_dtype in ("float32", "bf16"):
        net = model()
        final[proj_dtype] = train(net, optimizer(net, name, proj_dtype), STEPS)[-1]
    return {"name": name, "steps": STEPS, "loss_float32": final["float32"], "loss_bf16": final["bf16"],
            "rel_diff": (final["bf16"] - final["float32"]) / final["float32"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON-lines file the rows are appended to")
    args = ap.parse_args(argv)
    from discrete.validation.provenance import record

    meta = record("cpu")
    torch.set_num_threads(1)
    with open(args.out, "a") as f:
        for name in CLASSES:
            r = {**row(name), **meta}
            print(f"{name:8s} float32 P {r['loss_float32']:.6f}  bf16 P {r['loss_bf16']:.6f}  {100 * r['rel_diff']:+.1f} %")
            f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
