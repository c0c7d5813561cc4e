"""How far a round-off-sized change moves each optimizer's weights (docs/optimizers.md, "Round-off").

On the validation track's tiny LLaMA (2 layers, dim 64, vocabulary 256; projected: attention and MLP
linears at rank 16, discrete.groups.param_groups), a fixed batch of 8 x 32 random tokens, float32, CPU:

* ``perturbed``: two runs whose first gradients differ by a relative 1e-6 (G₁ → G₁·(1 + 10⁻⁶));
  max |ΔW| over all weights after ``--steps`` steps;
* ``ddp``: 2 ranks (gloo, each on half of the batch, DDP averaging the gradients) against one
  process on the whole batch (same mean loss); max |ΔW| after ``--steps`` steps.

For scale: the weights start at N(0, 0.02²) and move by about lr per step.

    python benchmarks/roundoff.py                 # the recorded run (about a minute on 2 cores)
    python benchmarks/roundoff.py --steps 20 --only osd galore
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from discrete import OPTIMIZERS  # noqa: E402
from discrete.groups import param_groups  # noqa: E402
from discrete.validation.model import build_model  # noqa: E402

VOCAB, SEQ, BATCH, RANK = 256, 32, 8, 16
# name -> (registry optimizer, lr, extra projected-group keys); GaLore's lrs (validation track)
RUNS = {
    "adamw": ("adamw", 1e-3, None),
    "galore": ("galore", 1e-2, {"scale": 0.25}),
    "osd": ("osd", 1e-2, {}),                                   # default: Adam on P, alpha = 5
    "osd_gd_p": ("osd", 1e-2, {"proj_optimizer": "gd"}),       # the Euler step of the flow on P
    "rso": ("rso", 1e-2, {}),
}


def setup(name: str):
    torch.manual_seed(0)
    model = build_model("tiny", vocab_size=VOCAB, max_seq_len=SEQ)
    opt_name, lr, keys = RUNS[name]
    cls = OPTIMIZERS.get(opt_name)
    groups = param_groups(model, rank=RANK, **keys) if keys is not None else model.parameters()
    return model, cls(groups, lr=lr)


def batch() -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(1))


def train(model, opt, tokens: torch.Tensor, steps: int, perturb: float = 0.0) -> torch.Tensor:
    """The weights after ``steps`` steps, and the loss after them as the last entry."""
    for k in range(steps):
        opt.zero_grad()
        _, loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        if k == 0 and perturb:
            for p in model.parameters():
                p.grad.mul_(1.0 + perturb)
        opt.step()
    with torch.no_grad():
        loss = model(tokens[:, :-1], tokens[:, 1:])[1]
    return torch.cat([*(p.detach().flatten() for p in model.parameters()), loss.reshape(1)])


def _ddp_worker(rank: int, name: str, steps: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    model, opt = setup(name)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    tokens = batch().chunk(2)[rank]
    for _ in range(steps):
        opt.zero_grad()
        _, loss = ddp(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        opt.step()
    if rank == 0:
        torch.save(torch.cat([p.detach().flatten() for p in model.parameters()]), out)
    dist.destroy_process_group()


def ddp_weights(name: str, steps: int) -> torch.Tensor:
    with tempfile.TemporaryDirectory() as tmp:
        init_file, out = os.path.join(tmp, "init"), os.path.join(tmp, "w.pt")
        mp.spawn(_ddp_worker, args=(name, steps, init_file, out), nprocs=2, join=True)
        return torch.load(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--only", nargs="*", default=list(RUNS), choices=list(RUNS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    n = args.steps
    print(f"| optimizer | weights moved, max abs(W_{n} - W_0) | loss after {n} steps | 1e-6 gradient change: max "
          f"abs dW after 1 step | ... after {n} steps (loss change) | DDP (2 ranks) vs one process after {n} steps |")
    print("|---|---|---|---|---|---|")
    for name in args.only:
        w0 = torch.cat([p.detach().flatten() for p in setup(name)[0].parameters()])
        ref1, pert1 = train(*setup(name), batch(), 1)[:-1], train(*setup(name), batch(), 1, perturb=1e-6)[:-1]
        ref, loss = train(*setup(name), batch(), n).split([w0.numel(), 1])
        pert, pert_loss = train(*setup(name), batch(), n, perturb=1e-6).split([w0.numel(), 1])
        ddp = ddp_weights(name, n)
        moved, dw1 = float((ref - w0).abs().max()), float((pert1 - ref1).abs().max())
        dw, dloss, ddw = float((pert - ref).abs().max()), float((pert_loss - loss).abs()), float((ddp - ref).abs().max())
        print(f"| {name} | {moved:.1e} | {float(loss):.3f} | {dw1:.1e} | {dw:.1e} ({dloss:.0e}) | {ddw:.1e} |", flush=True)


if __name__ == "__main__":
    main()
