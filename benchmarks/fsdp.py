"""Tokens/s and peak memory per GPU of LLaMA training on several GPUs: FSDP2 against DDP.

For each (mode, optimizer) a fresh ``torchrun --standalone --nproc_per_node G`` runs this file as a worker:
the validation track's LLaMA (float32 weights, bf16 autocast, global-norm clipping at 1.0, random tokens),
``fully_shard`` on every block and the root (``fsdp``; state sharded as docs/scaling.md says) or
``DistributedDataParallel`` (``ddp``: every GPU holds the whole model, gradients and optimizer state and runs
the same optimizer step), the optimizers of benchmarks/scaling_common.py (AdamW: torch's fused AdamW; GaLore,
OSD, RSO: P₀ random, no refresh inside the timed steps). Each GPU takes ``--batch`` sequences per step;
``tokens_per_s`` counts all GPUs' tokens over ``--steps`` timed steps after ``--warmup`` steps;
``peak_gb_per_gpu`` is the largest ``max_memory_allocated`` over the GPUs during the timed steps (GB = 2³⁰).

One JSON object per run is appended to ``OUT/fsdp.jsonl`` (model, optimizer, mode, gpus, tokens_per_s,
peak_gb_per_gpu, device, batch_per_gpu, seq_len, loss, ...; status ok / error / timeout).

    # on a 2-GPU machine (~5 min), then on a 4-GPU machine with --gpus 4
    PYTHONPATH=. python3 benchmarks/fsdp.py --gpus 2 --out $OUT
    # CPU: 2 gloo processes, tiny model
    PYTHONPATH=. python3 benchmarks/fsdp.py --smoke --optimizers galore,osd --out /tmp/f
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scaling_common as C  # noqa: E402

GB = 2 ** 30
MODES = ("fsdp", "ddp")


def worker(spec: dict) -> dict | None:
    """One run under torchrun; rank 0 returns the row."""
    import torch.distributed as dist

    cuda = torch.cuda.is_available() and not spec["smoke"]
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(1)
    dist.init_process_group("nccl" if cuda else "gloo")
    name, vocab = C.model_and_vocab(spec)
    rank_r = C.rank_for(name, spec["rank"])
    model = C.llama(name, vocab, spec["seq_len"], device, spec["activation_checkpointing"])
    if spec["mode"] == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.layers:
            fully_shard(block)
        fully_shard(model)
        fwd = model
    else:
        fwd = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if cuda else None)
    opt, _ = C.make_optimizer(model, spec["optimizer"], "off", rank_r, fused=cuda)
    x, y = C.random_batch(spec["batch"], spec["seq_len"], vocab, device, seed=rank)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)

    def step() -> torch.Tensor:
        with amp:
            _, loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(spec["warmup"]):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(spec["steps"]):
        loss = step()
    sync()
    elapsed = time.perf_counter() - t0
    stats = torch.tensor([torch.cuda.max_memory_allocated(device) / GB if cuda else 0.0, elapsed, float(loss)],
                         dtype=torch.float64, device=device)
    dist.all_reduce(stats[:2], op=dist.ReduceOp.MAX)          # the largest peak, the slowest process
    dist.all_reduce(stats[2:], op=dist.ReduceOp.SUM)          # mean of the processes' last losses
    dist.barrier()
    dist.destroy_process_group()
    if rank != 0:
        return None
    peak, elapsed, loss = stats.tolist()
    return {"model": name, "optimizer": spec["optimizer"], "mode": spec["mode"], "gpus": world,
            "tokens_per_s": spec["steps"] * world * spec["batch"] * spec["seq_len"] / elapsed,
            "peak_gb_per_gpu": peak if cuda else None, "step_s": elapsed / spec["steps"], "loss": loss / world,
            "batch_per_gpu": spec["batch"], "seq_len": spec["seq_len"], "steps": spec["steps"], "rank": rank_r,
            "activation_checkpointing": spec["activation_checkpointing"], "status": "ok",
            "device": torch.cuda.get_device_name(device) if cuda else "cpu", "torch": torch.__version__}


def launch(spec: dict, gpus: int, timeout: float) -> dict:
    """torchrun this file as a worker; the last JSON line of its stdout is the row."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
           os.path.abspath(__file__), "--worker", json.dumps(spec)]
    # torchrun sets OMP_NUM_THREADS=1 unless told otherwise; the first step draws every P on the CPU (float64 QR)
    threads = 1 if spec["smoke"] else max(1, (os.cpu_count() or 1) // gpus)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    base = {"model": spec["model"], "optimizer": spec["optimizer"], "mode": spec["mode"], "gpus": gpus,
            "tokens_per_s": None, "peak_gb_per_gpu": None,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not spec["smoke"] else "cpu"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**base, "status": "timeout", "timeout_s": timeout}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {**base, "status": "error", "returncode": proc.returncode, "error": _root_cause(proc.stderr)}
    # rank 0 prints its row after the last collective; a crash after it (gloo's teardown on CPU has been seen to
    # abort: "terminate called without an active exception") does not change the measurement: keep the row
    return {**json.loads(lines[-1]), **({"returncode": proc.returncode} if proc.returncode else {})}


def _root_cause(stderr: str) -> str:
    """The workers' own traceback lines, not torchrun's summary that follows them."""
    lines = [ln for ln in stderr.splitlines() if "Error" in ln or "error:" in ln]
    return (" | ".join(lines[-4:]) or stderr.strip())[-800:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="folder; rows are appended to OUT/fsdp.jsonl")
    ap.add_argument("--gpus", type=int, default=None, help="processes (default: all visible GPUs; 2 with --smoke)")
    ap.add_argument("--model", default="1b")
    ap.add_argument("--optimizers", type=lambda s: s.split(","), default=["adamw", "galore", "osd"])
    ap.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    ap.add_argument("--batch", type=int, default=16, help="sequences per GPU per step")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--ac", action="store_true", help="activation checkpointing")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per run")
    ap.add_argument("--smoke", action="store_true", help="CPU, gloo, tiny model")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        from discrete.validation.distributed import exit_process

        row = worker(json.loads(args.worker))
        if row is not None:
            print(json.dumps(row), flush=True)
        exit_process(0)          # a torchrun worker: no interpreter finalization after gloo (exit_process says why)
    if not args.out:
        ap.error("--out is required")
    bad = sorted(set(args.optimizers) - set(C.OPTIMIZER_NAMES)) + sorted(set(args.modes) - set(MODES))
    if bad:
        ap.error(f"unknown optimizer or mode {bad}; expected {C.OPTIMIZER_NAMES} and {MODES}")
    if args.smoke:
        args.batch, args.seq_len, args.steps, args.warmup = 2, 16, 2, 1
    gpus = args.gpus or (2 if args.smoke else torch.cuda.device_count())
    if gpus < 1:
        ap.error("no GPU visible: pass --smoke for the CPU check")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "fsdp.jsonl")
    runs = [(mode, opt) for opt in args.optimizers for mode in args.modes]
    for i, (mode, opt) in enumerate(runs, 1):
        spec = {"model": args.model, "optimizer": opt, "mode": mode, "batch": args.batch, "seq_len": args.seq_len,
                "steps": args.steps, "warmup": args.warmup, "rank": args.rank, "activation_checkpointing": args.ac,
                "smoke": args.smoke}
        print(f"[{i}/{len(runs)}] {args.model} {opt} {mode} on {gpus} processes", flush=True)
        t = time.perf_counter()
        row = launch(spec, gpus, args.timeout)
        row = {**C.provenance("cuda" if row.get("device", "cpu") != "cpu" else "cpu", row.get("device")), **row}
        row["command"] = "python3 benchmarks/fsdp.py " + " ".join(sys.argv[1:] if argv is None else argv)
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
        tok = "—" if row.get("tokens_per_s") is None else f"{row['tokens_per_s']:.0f} tok/s"
        mem = "—" if row.get("peak_gb_per_gpu") is None else f"{row['peak_gb_per_gpu']:.2f} GB/GPU"
        print(f"   {row['status']}: {tok}, peak {mem}, loss {row.get('loss', float('nan')):.4f} "
              f"({time.perf_counter() - t:.0f} s){'  ' + row.get('error', '')[-300:] if row['status'] != 'ok' else ''}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
