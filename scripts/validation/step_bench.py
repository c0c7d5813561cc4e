"""Time one optimizer.step() on the 60M LLaMA's real parameter shapes (GPU), per optimizer.

Usage: PYTHONPATH=. python3 scripts/validation/step_bench.py [--model 60m] [--batch 32]

One bf16 forward/backward fills the gradients; then each optimizer is stepped ``warmup`` times and
``iters`` timed steps (CUDA events, median). GaLore/RSO refresh every 200 steps, so the timed
steps are refresh-free; the SVD refresh is timed separately (gap 1). Prints a table (ms per step).
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch

from discrete.validation.config import RunConfig
from discrete.validation.model import build_model
from discrete.validation.optim import build_optimizer


def time_steps(opt, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        opt.step()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        opt.step()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="60m")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = build_model(args.model, vocab_size=32000, max_seq_len=256).cuda()
    x = torch.randint(0, 32000, (args.batch, 256), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(x, x)[1].backward()
    grads = {p: p.grad.clone() for p in model.parameters()}
    cases = [("adamw (torch foreach)", "adamw", {}), ("galore", "galore", {}), ("galore refresh every step", "galore", {"update_proj_gap": 1}),
             ("osd", "osd", {}), ("rso", "rso", {})]
    state0 = {k: v.clone() for k, v in model.state_dict().items()}
    from discrete.validation.provenance import record

    print("# " + json.dumps(record(torch.device("cuda"))))  # commit, command, device, threads, sharing
    print(f"{'case':<28} ms/step")
    for label, name, kw in cases:
        model.load_state_dict(state0)
        for p in model.parameters():
            p.grad = grads[p].clone()
        cfg = RunConfig(model=args.model, optimizer=name, lr=1e-6, rank=128, **kw)
        opt = build_optimizer(model, cfg).optimizer
        print(f"{label:<28} {time_steps(opt, args.iters, 3):7.2f}", flush=True)


if __name__ == "__main__":
    main()
