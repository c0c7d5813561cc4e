"""Peak GPU memory of real LLaMA training steps: AdamW, GaLore, OSD, RSO; ordinary and per-layer.

Each row — (model, optimizer, per-layer mode, activation checkpointing, batch) — runs in a fresh subprocess
(an OOM or a crash costs that row only): the validation track's LLaMA built on the GPU (float32 weights),
the optimizer as in benchmarks/scaling_common.py, ``--steps`` training steps on random tokens under bf16
autocast with global-norm clipping at 1.0 (none for ``in_backward``), as ``osd-theory validate`` trains.
Memory is ``torch.cuda.max_memory_allocated``; GB = 2³⁰ bytes, as the trainer.

One JSON object per row is appended to ``OUT/memory.jsonl`` as soon as the row ends:

* ``peak_gb``: peak allocated over steps 2.. (the steady state); ``peak_first_step_gb``: step 1 (state created);
* the split: ``weights_gb``, ``grads_gb`` (full-size gradients held after backward), ``pending_gb``
  (per-layer deferred: Ĝ and OSD's P field held until ``step()``), ``optimizer_state_gb``,
  ``activations_gb`` (allocated after the forward minus before it: what backward starts from);
  activations and gradients are not at their peaks together, so the parts do not sum to the peak;
* ``analytic``: the same parts from the formula of :func:`scaling_common.analytic` (``static`` = their sum);
* ``loss_chunk``: tokens per piece of the output head + loss (0: unchunked; discrete/validation/loss.py);
  ``autocast_cache``: False with checkpointing (the cache would hold a bf16 copy of every weight through the
  forward, and checkpointing recomputes the casts in backward anyway);
* ``status``: ok, oom (``peak_gb`` then is the peak when it failed), error, timeout, or exceeds_cap (not run:
  the formula's static bytes alone, a lower bound of the peak, exceed ``--cap-gb``); ``cap_gb`` when
  ``--cap-gb`` limited the allocator (79 on an H200 checks "fits an 80 GB H100", whose 80 GB are 79.2 GiB).

    # one H100/H200 (~5 min): 1B at batch 16 x 256, every optimizer and mode, checkpointing off and on
    PYTHONPATH=. python3 benchmarks/memory.py --models 1b --batch 16 --ac off,on --out $OUT
    # 1B with checkpointing and the head + loss in chunks of 1024 tokens (the rows of docs/scaling.md, ~4 min)
    PYTHONPATH=. python3 benchmarks/memory.py --models 1b --batch 16 --ac on --loss-chunk 1024 --out $OUT
    # 7B at batch 4 x 256 with checkpointing, the allocator capped at an H100's 79 GiB (~70 s a row)
    PYTHONPATH=. python3 benchmarks/memory.py --models 7b --batch 4 --ac on --loss-chunk 1024 --cap-gb 79 \\
        --optimizers galore,osd --per-layer in_backward --out $OUT
    # CPU, tiny model, in one process: byte counts against the formula (peak_gb null)
    PYTHONPATH=. python3 benchmarks/memory.py --smoke --out /tmp/m

Lean state (issue 22): ``--state-dtypes float32,bf16,int8`` (discrete.lowbit; AdamW then is discrete.AdamW with
that state, the 8-bit baseline), ``--weights bf16`` (bf16 weights created in bf16, no float32 master) and
``--stochastic-rounding``, ``--proj-dtype bf16`` (P kept in bf16); rows carry ``state_dtype``, ``proj_state_dtype``,
``proj_optimizer``, ``proj_dtype``, ``weights``, ``stochastic_rounding``.
``--analytic`` writes the formula's rows from a meta-device model (CPU, seconds; status "analytic"):

    # the analytic rows of docs/scaling.md (CPU, ~1 min)
    PYTHONPATH=. python3 benchmarks/memory.py --analytic --models 1b,7b --batch 4 --ac on --loss-chunk 1024 \
        --state-dtypes float32,bf16,int8 --weights float32 --out docs/results/benchmarks/analytic   (and --weights bf16)
    # GPU, 1B: every optimizer x state dtype x per-layer mode, checkpointing (~10 min)
    PYTHONPATH=. python3 benchmarks/memory.py --models 1b --batch 16 --ac on --loss-chunk 1024 \
        --state-dtypes float32,bf16,int8 --out $OUT
    # GPU, 7B target: batch 4 x 256, bf16 weights, 8-bit states, per-layer in backward, checkpointing, cap 24 GB
    PYTHONPATH=. python3 benchmarks/memory.py --models 7b --batch 4 --ac on --loss-chunk 1024 --weights bf16 \
        --stochastic-rounding --state-dtypes int8 --optimizers galore,osd --per-layer in_backward --cap-gb 24 --out $OUT
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

from discrete.lowbit import STATE_DTYPES  # noqa: E402

GB = 2 ** 30
WEIGHT_DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}
# the lean-state settings of a row (issue 22): state storage (discrete.lowbit), weights, their rounding
LEAN_KEYS = ("state_dtype", "proj_state_dtype", "proj_optimizer", "proj_dtype", "weights", "stochastic_rounding")


def plan(args) -> list[dict]:
    """The rows: every model × optimizer × mode × checkpointing asked for (AdamW: off and in_backward only)."""
    rows = []
    for model in args.models:
        for ac in args.ac:
            for opt in args.optimizers:
                for state_dtype in args.state_dtypes:
                    for mode in args.per_layer:
                        if opt == "adamw" and mode == "deferred":
                            continue                  # nothing is projected: deferred would be the ordinary mode
                        rows.append({"model": model, "optimizer": opt, "per_layer_mode": mode,
                                     "activation_checkpointing": ac, "batch": args.batch, "seq_len": args.seq_len,
                                     "steps": args.steps, "rank": args.rank, "loss_chunk": args.loss_chunk,
                                     "cap_gb": args.cap_gb, "smoke": args.smoke, "state_dtype": state_dtype,
                                     "proj_state_dtype": args.proj_state_dtype or state_dtype,
                                     "proj_optimizer": args.proj_optimizer, "proj_dtype": args.proj_dtype,
                                     "weights": args.weights, "stochastic_rounding": args.stochastic_rounding})
    return rows


def measure(spec: dict) -> dict:
    """Train ``spec['steps']`` steps of one row and return its JSON row (CUDA, or CPU byte counts in smoke mode)."""
    cuda = torch.cuda.is_available() and not spec["smoke"]
    device = torch.device("cuda" if cuda else "cpu")
    name, vocab = C.model_and_vocab(spec)
    rank = C.rank_for(name, spec["rank"])
    row = {k: spec[k] for k in ("model", "optimizer", "batch", "seq_len", "steps", "activation_checkpointing", "cap_gb",
                                "loss_chunk", *LEAN_KEYS)}
    row["model"] = name
    row.update(per_layer=spec["per_layer_mode"] != "off", per_layer_mode=spec["per_layer_mode"], rank=rank,
               device=torch.cuda.get_device_name(device) if cuda else "cpu", torch=torch.__version__,
               clip=spec["per_layer_mode"] != "in_backward", status="ok")
    if cuda and spec["cap_gb"]:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, spec["cap_gb"] * GB / total), torch.cuda.current_device())
    alloc = (lambda: torch.cuda.memory_allocated(device)) if cuda else (lambda: 0)
    peak = (lambda: torch.cuda.max_memory_allocated(device)) if cuda else (lambda: 0)
    # With checkpointing the autocast weight cache would keep a bf16 copy of every weight (2 bytes/param) alive
    # until the forward ends, and the recompute in backward casts again anyway: off with checkpointing.
    cache = not spec["activation_checkpointing"]
    row["autocast_cache"] = cache
    amp = (torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache) if cuda
           else torch.autocast("cpu", enabled=False))
    act = grads = pending = 0
    try:
        model = C.llama(name, vocab, spec["seq_len"], device, spec["activation_checkpointing"], spec["loss_chunk"],
                        dtype=WEIGHT_DTYPES[spec["weights"]])
        row["n_params"] = sum(p.numel() for p in model.parameters())
        row["weights_gb"] = alloc() / GB if cuda else sum(p.numel() * p.element_size() for p in model.parameters()) / GB
        opt, layers = C.make_optimizer(model, spec["optimizer"], spec["per_layer_mode"], rank, fused=cuda,
                                       state_dtype=spec["state_dtype"], stochastic_rounding=spec["stochastic_rounding"])
        for group in opt.param_groups:
            if "rank" in group:
                group.update(proj_dtype=spec["proj_dtype"])
            if "rank" in group and spec["optimizer"] == "osd":
                group.update(proj_state_dtype=spec["proj_state_dtype"], proj_optimizer=spec["proj_optimizer"])
        row["analytic"] = C.analytic(model, spec["optimizer"], spec["per_layer_mode"], rank, spec["state_dtype"],
                                     spec["proj_state_dtype"], spec["proj_optimizer"], spec["proj_dtype"]).gb()
        x, y = C.random_batch(spec["batch"], spec["seq_len"], vocab, device)
        t0 = time.perf_counter()
        for step in range(1, spec["steps"] + 1):
            if step == 2:                               # steady state from here: state exists, warm-ups done
                if cuda:
                    torch.cuda.synchronize(device)
                row["peak_first_step_gb"] = peak() / GB
                if cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                t0 = time.perf_counter()
            before = alloc()
            with amp:
                _, loss = model(x, y)
            act = max(act, alloc() - before)
            loss.backward()
            grads = max(grads, C.grad_bytes(model))
            pending = max(pending, layers.pending_bytes() if layers is not None and step > 1 else 0)
            norm = C.clip_(model, layers)
            opt.step()
            opt.zero_grad(set_to_none=True)
            print(f"  step {step}: loss {float(loss.detach()):.3f} |g| {float(norm):.3f} allocated {alloc() / GB:.2f} GB "
                  f"peak {peak() / GB:.2f} GB", file=sys.stderr, flush=True)
        if cuda:
            torch.cuda.synchronize(device)
        dt = (time.perf_counter() - t0) / max(1, spec["steps"] - 1)
        row.update(peak_gb=peak() / GB if cuda else None, step_s=dt,
                   tokens_per_s=spec["batch"] * spec["seq_len"] / dt, grads_gb=grads / GB, pending_gb=pending / GB,
                   optimizer_state_gb=C.state_bytes(opt) / GB, activations_gb=act / GB if cuda else None,
                   peak_reserved_gb=torch.cuda.max_memory_reserved(device) / GB if cuda else None)
    except torch.cuda.OutOfMemoryError as exc:
        row.update(status="oom", peak_gb=peak() / GB, error=str(exc).split("\n")[0][:300])
    return row


def base_row(spec: dict) -> dict:
    """The keys of a row that did not produce its own (timeout, crash, skipped)."""
    base = {k: spec[k] for k in ("model", "optimizer", "batch", "seq_len", "activation_checkpointing", "loss_chunk",
                                 *LEAN_KEYS)}
    base.update(per_layer=spec["per_layer_mode"] != "off", per_layer_mode=spec["per_layer_mode"], peak_gb=None,
                device=torch.cuda.get_device_name(0) if torch.cuda.is_available() and not spec["smoke"] else "cpu")
    return base


def formula_gb(spec: dict) -> dict:
    """The formula's parts (GB) for the row's model, built on the meta device (no memory, no time). Their sum
    ``static`` (weights, gradients held, pending, state) all coexist at the end of a step, so it is a lower
    bound of the peak: a row whose ``static`` exceeds ``--cap-gb`` cannot fit and is not run."""
    name, vocab = C.model_and_vocab(spec)
    model = C.llama(name, vocab, spec["seq_len"], torch.device("meta"), False, dtype=WEIGHT_DTYPES[spec["weights"]])
    return C.analytic(model, spec["optimizer"], spec["per_layer_mode"], C.rank_for(name, spec["rank"]),
                      spec["state_dtype"], spec["proj_state_dtype"], spec["proj_optimizer"], spec["proj_dtype"]).gb()


def run_row(spec: dict, timeout: float) -> dict:
    """One row in a fresh interpreter; its last stdout line is the JSON row."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    base = base_row(spec)
    # a row that hangs dumps its Python stack a few seconds before it is killed, so a timeout says where
    env["OSD_BENCH_STACK_AFTER_S"] = str(max(1.0, timeout - 5))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        sys.stderr.write(err[-4000:])
        return {**base, "status": "timeout", "timeout_s": timeout, "error": err.strip()[-1500:]}
    sys.stderr.write(proc.stderr[-3000:])
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {**base, "status": "error", "returncode": proc.returncode, "error": proc.stderr.strip()[-500:]}
    return json.loads(lines[-1])


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    return out.stdout.strip() or "unknown"


def summary(row: dict) -> str:
    a = row.get("analytic", {})
    peak = "—" if row.get("peak_gb") is None else f"{row['peak_gb']:.2f} GB"
    return (f"{row['model']} {row['optimizer']:6s} state={row.get('state_dtype', 'float32'):7s} "
            f"weights={row.get('weights', 'float32'):7s} per_layer={row['per_layer_mode']:11s} "
            f"ac={row['activation_checkpointing']!s:5s} chunk={row.get('loss_chunk', 0)} "
            f"batch {row['batch']}x{row['seq_len']}: {row['status']}, peak {peak}, state "
            f"{row.get('optimizer_state_gb', float('nan')):.3f} GB (formula {a.get('state', float('nan')):.3f})"
            + (f"; formula static {a['static']:.2f} GB > cap {row['cap_gb']:g} GB" if row["status"] == "exceeds_cap"
               else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="folder; rows are appended to OUT/memory.jsonl")
    ap.add_argument("--models", type=lambda s: s.split(","), default=["1b"], help="comma-separated flavours (1b,7b)")
    ap.add_argument("--optimizers", type=lambda s: s.split(","), default=list(C.OPTIMIZER_NAMES))
    ap.add_argument("--per-layer", type=lambda s: s.split(","), default=["off", "deferred", "in_backward"],
                    help=f"modes among {C.PER_LAYER_MODES}; AdamW skips deferred")
    ap.add_argument("--ac", type=lambda s: [v == "on" for v in s.split(",")], default=[False],
                    help="activation checkpointing: off, on or off,on")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--loss-chunk", type=int, default=0,
                    help="tokens per piece of the output head + loss (0: unchunked; discrete/validation/loss.py)")
    ap.add_argument("--rank", type=int, default=None, help="default: 512 at 1B, 1024 at 7B (GaLore's)")
    ap.add_argument("--cap-gb", type=float, default=None, help="limit the CUDA allocator to this many GB")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per row")
    ap.add_argument("--state-dtypes", type=lambda s: s.split(","), default=["float32"],
                    help="comma-separated optimizer state dtypes (float32,bf16,int8; discrete.lowbit)")
    ap.add_argument("--proj-state-dtype", default=None,
                    help="OSD's P-optimizer state dtype (default: the row's state dtype)")
    ap.add_argument("--proj-optimizer", default="adam", choices=["adam", "gd", "lion", "sgd"],
                    help="OSD's P-optimizer (discrete.inner.PROJ_OPTIMIZERS; gd keeps no state: OSD's state = GaLore's)")
    ap.add_argument("--proj-dtype", choices=["float32", "bf16"], default="float32",
                    help="storage of P (the group key proj_dtype; bf16 halves P, the step works on a float32 copy)")
    ap.add_argument("--weights", choices=sorted(WEIGHT_DTYPES), default="float32",
                    help="weight dtype; bf16 weights have no float32 master copy")
    ap.add_argument("--stochastic-rounding", action="store_true", help="bf16 weights: stochastic rounding of updates")
    ap.add_argument("--analytic", action="store_true",
                    help="only the formula, from a meta-device model (CPU, seconds): rows with status 'analytic'")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model, all rows in this process")
    ap.add_argument("--subprocess", action="store_true", help="with --smoke: still one subprocess per row")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if os.environ.get("OSD_BENCH_STACK_AFTER_S"):
            import faulthandler
            faulthandler.dump_traceback_later(float(os.environ["OSD_BENCH_STACK_AFTER_S"]), exit=False)
        print(json.dumps(measure(json.loads(args.worker))), flush=True)
        return 0
    if not args.out:
        ap.error("--out is required")
    bad = sorted(set(args.optimizers) - set(C.OPTIMIZER_NAMES)) + sorted(set(args.per_layer) - set(C.PER_LAYER_MODES))
    if bad:
        ap.error(f"unknown optimizer or mode {bad}; expected {C.OPTIMIZER_NAMES} and {C.PER_LAYER_MODES}")
    bad = sorted(set(args.state_dtypes + [args.proj_state_dtype or "float32"]) - set(STATE_DTYPES.names()))
    if bad:
        ap.error(f"unknown state dtype {bad}; expected {STATE_DTYPES.names()}")
    if args.loss_chunk < 0:
        ap.error(f"--loss-chunk must be >= 0 tokens (0 = unchunked), got {args.loss_chunk}")
    if args.smoke:
        args.batch, args.seq_len, args.steps = 2, 16, 3
    os.makedirs(args.out, exist_ok=True)
    rows = plan(args)
    path = os.path.join(args.out, "memory.jsonl")
    for i, spec in enumerate(rows, 1):
        print(f"[{i}/{len(rows)}] {spec['model']} {spec['optimizer']} per_layer={spec['per_layer_mode']} "
              f"ac={spec['activation_checkpointing']}", flush=True)
        formula = formula_gb(spec) if spec["cap_gb"] or args.analytic else None
        if args.analytic:
            row = {**base_row(spec), "status": "analytic", "device": "meta", "analytic": formula,
                   "rank": C.rank_for(C.model_and_vocab(spec)[0], spec["rank"]),
                   "commit": _commit(), "torch": torch.__version__}
        elif formula is not None and formula["static"] > spec["cap_gb"]:
            row = {**base_row(spec), "status": "exceeds_cap", "cap_gb": spec["cap_gb"], "analytic": formula}
        else:
            row = measure(spec) if (args.smoke and not args.subprocess) else run_row(spec, args.timeout)
        row = {**C.provenance("cuda" if row.get("device", "cpu") != "cpu" else "cpu", row.get("device")), **row}
        row["command"] = "python3 benchmarks/memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print("   " + summary(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
