"""How much 8-bit storage of Adam's moments costs, per code map and second-moment form (discrete/lowbit.py).

Part 1, static: AdamW (float32 states) trains the validation track's tiny LLaMA on a fixed Markov-chain token
stream for ``--steps`` steps; then every parameter's moments (m, v) are quantised with each scheme and compared
with the float32 moments: relative error of m, of v, and of Adam's direction D = m/(√v + ε) (what the step
uses), and the fraction of entries with v > 0 whose v̂ is 0 (where the step becomes m/ε).

Part 2, dynamic: the same training with the 8-bit state *in* the optimizer (discrete.AdamW with the scheme
registered as a state_dtype), against float32 states: the final loss and the largest relative deviation of
the weights over the run.

Schemes: code map ``dynamic`` or ``linear`` (discrete.lowbit.CODE_MAPS) × v stored as ``v`` or ``sqrt`` (√v),
block 256 (and the dynamic/sqrt scheme at block 2048, bitsandbytes' size). The row written is one JSON file:

    # the recorded run (CPU; ~9 min on a shared 2-core machine)
    PYTHONPATH=. python3 benchmarks/lowbit_error.py --out docs/results/benchmarks/lowbit_error.json
    # a wider model, rows of 512 and 1408 entries (several blocks a row; not run yet: a machine with more cores)
    PYTHONPATH=. python3 benchmarks/lowbit_error.py --dim 512 --out docs/results/benchmarks/lowbit_error_dim512.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from discrete.full_rank import AdamW
from discrete.state import OptimizerInputError
from discrete.lowbit import STATE_DTYPES, Int8, dequantize, quantize_
from discrete.validation.model import build_model

SCHEMES = {  # name -> (code map, v stored as √v, block)
    "dynamic_sqrt_256": ("dynamic", True, 256),
    "dynamic_v_256": ("dynamic", False, 256),
    "linear_sqrt_256": ("linear", True, 256),
    "linear_v_256": ("linear", False, 256),
    "dynamic_sqrt_2048": ("dynamic", True, 2048),
}


def token_stream(vocab: int, n: int, seed: int = 0) -> torch.Tensor:
    """A Markov chain over ``vocab`` tokens, 4 likely successors per token: something a small model can learn."""
    g = torch.Generator().manual_seed(seed)
    succ = torch.randint(0, vocab, (vocab, 4), generator=g)
    toks = torch.empty(n, dtype=torch.long)
    toks[0] = 0
    choice = torch.randint(0, 4, (n,), generator=g)
    for i in range(1, n):
        toks[i] = succ[toks[i - 1], choice[i]]
    return toks


def train(state_dtype: str, steps: int, dim: int = 64, vocab: int = 256, seq: int = 64, batch: int = 8):
    torch.manual_seed(0)
    # the tiny flavour (2 layers, 4 heads), widened: rows of dim and 2.75·dim entries (blocks of 256 matter)
    model = build_model("tiny", vocab_size=vocab, max_seq_len=seq, dim=dim, mlp_dim=int(2.75 * dim) // 8 * 8)
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0, state_dtype=state_dtype)
    data = token_stream(vocab, steps * batch * (seq + 1) + 1)
    losses, traj = [], []
    for t in range(steps):
        xy = data[t * batch * (seq + 1):(t + 1) * batch * (seq + 1)].view(batch, seq + 1)
        _, loss = model(xy[:, :-1], xy[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        try:
            opt.step()
        except OptimizerInputError:                 # a non-finite gradient: diverged, the caller records the step
            break
        losses.append(float(loss.detach()))
        traj.append(torch.cat([p.detach().flatten() for p in model.parameters()]).clone())
    return model, opt, losses, traj


def quantised(x: torch.Tensor, nonneg: bool, kind: str, sqrt: bool, block: int) -> torch.Tensor:
    y = x.sqrt() if nonneg and sqrt else x
    flat = y.reshape(-1, y.shape[-1]) if y.ndim > 1 else y[None]
    codes = torch.empty(flat.shape, dtype=torch.uint8 if nonneg else torch.int8)
    absmax = torch.empty((*flat.shape[:-1], -(-flat.shape[-1] // block)))
    quantize_(codes, absmax, flat, signed=not nonneg, kind=kind, block=block)
    out = dequantize(codes, absmax, signed=not nonneg, kind=kind, block=block).reshape(x.shape)
    return out.square() if nonneg and sqrt else out


def static_errors(opt, eps: float = 1e-8) -> dict:
    ms = [st["exp_avg"] for st in opt.state.values()]
    vs = [st["exp_avg_sq"] for st in opt.state.values()]
    out = {}
    for name, (kind, sqrt, block) in SCHEMES.items():
        num = {"m": 0.0, "v": 0.0, "D": 0.0}
        den = {"m": 0.0, "v": 0.0, "D": 0.0}
        zeroed = total = 0
        for m, v in zip(ms, vs):
            mq, vq = quantised(m, False, kind, sqrt, block), quantised(v, True, kind, sqrt, block)
            D, Dq = m / (v.sqrt() + eps), mq / (vq.sqrt() + eps)
            for k, a, b in (("m", m, mq), ("v", v, vq), ("D", D, Dq)):
                num[k] += float((a - b).norm() ** 2)
                den[k] += float(a.norm() ** 2)
            zeroed += int(((v > 0) & (vq == 0)).sum())
            total += int((v > 0).sum())
        out[name] = {f"rel_err_{k}": (num[k] / den[k]) ** 0.5 for k in num} | {"v_zeroed_fraction": zeroed / total}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dim", type=int, default=64, help="model width (64: the tiny flavour)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    _, opt, ref_losses, ref_traj = train("float32", args.steps, args.dim)
    row = {"command": "python3 " + " ".join(sys.argv), "steps": args.steps, "model": f"tiny, dim {args.dim}",
           "optimizer": "AdamW lr 3e-3",
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "torch": torch.__version__, "device": "cpu", "static": static_errors(opt), "dynamic": {}}
    row["dynamic"]["float32"] = {"final_loss": ref_losses[-1]}
    schemes = {**{n: Int8(n, kind=k, sqrt_nonneg=s, block=b) for n, (k, s, b) in SCHEMES.items()},
               "bf16": STATE_DTYPES.get("bf16")}
    for name, storage in schemes.items():
        if name not in STATE_DTYPES:
            STATE_DTYPES.add(name, storage)          # benchmark-only storages, registered in this process
        _, _, losses, traj = train(name, args.steps, args.dim)
        if len(traj) < args.steps:
            row["dynamic"][name] = {"diverged_at_step": len(traj) + 1, "final_loss": None}
            continue
        dev = max(float((a - b).norm() / (a - ref_traj[0]).norm().clamp_min(1e-12))
                  for a, b in zip(ref_traj[1:], traj[1:]))
        row["dynamic"][name] = {"final_loss": losses[-1], "max_rel_weight_dev": dev,
                                "final_loss_minus_float32": losses[-1] - ref_losses[-1]}
    row["seconds"] = time.time() - t0
    with open(args.out, "w") as f:
        json.dump(row, f, indent=1)
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
