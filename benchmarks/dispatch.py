"""Top-level ``aten::`` ops dispatched by one optimizer ``step()`` on the CPU (issue 20, "Numbers to record").

The set: ``--layers`` (24) LLaMA-shaped layers, each with 7 projected matrices (q, k, v, o: hidden×hidden;
gate, up: intermediate×hidden; down: hidden×intermediate) and 2 norm-weight vectors (hidden,), i.e. 168
matrices and 48 vectors at 24 layers. The dimensions are small (hidden 64, intermediate 172, rank 8,
``update_proj_gap`` 200, scale 0.25) so a step takes milliseconds: the number of ops depends only on the number
and kinds of tensors, not on their sizes. Weights ~ N(0, 0.02²), gradients ~ N(0, 1e-6), seed 0.

Method: torch.profiler with CPU activity around one ``opt.step()`` after ``--warmup`` steps (the first step
builds the state and takes the SVDs); an op is counted when its event name starts with ``aten::`` and no
ancestor event (walking ``cpu_parent`` up to the root) does, i.e. the ops Python issued, not what they call
inside. On 6eb1c62 this gives torch AdamW(foreach=True) 445 ops on the 24-layer set, the issue's count.

Rows: torch AdamW foreach (the baseline, same process), torch AdamW default, and ours (GaLore, OSD, RSO,
AdamW) with defaults (projected group keys rank / update_proj_gap / scale / proj_type "std" only, as
discrete.validation builds them) and with ``foreach=True``. Each row also counts every step 1 … 2T′+1 of a
second optimizer built with ``update_proj_gap`` T′ = ``--refresh-gap`` (3), so a refresh step is counted too
(``refresh_ops``: the largest count after step 1; ``ops_by_step``: all of them).

    PYTHONPATH=. python benchmarks/dispatch.py                               # 24 layers, minutes on 2 cores
    PYTHONPATH=. python benchmarks/dispatch.py --profile-top 25             # + dispatch_breakdown.txt
    PYTHONPATH=. python benchmarks/dispatch.py --host-time                  # + each step's host milliseconds

Appends one JSON object per row to ``--out`` (default docs/results/benchmarks/dispatch.jsonl).
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import discrete

ROOT = Path(__file__).resolve().parents[1]
HIDDEN, INTERMEDIATE, RANK, GAP, SCALE, LR = 64, 172, 8, 200, 0.25, 1e-3
TARGETS = {"OSD": 3.0, "GaLore": 2.0}          # × torch AdamW foreach's count, with defaults
BASELINE = "torch AdamW foreach"


def llama_set(layers: int, seed: int = 0, hidden: int = HIDDEN,
              intermediate: int = INTERMEDIATE) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(matrices, vectors) of ``layers`` LLaMA layers, each with a random ``.grad``; 7 and 2 per layer."""
    g = torch.Generator().manual_seed(seed)
    h, i = hidden, intermediate
    mats, vecs = [], []
    for _ in range(layers):
        for shape in [(h, h)] * 4 + [(i, h), (i, h), (h, i)]:
            mats.append(torch.nn.Parameter(torch.randn(shape, generator=g) * 0.02))
        vecs += [torch.nn.Parameter(torch.ones(h)) for _ in range(2)]
    for p in mats + vecs:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    return mats, vecs


def _groups(mats, vecs, gap: int) -> list[dict]:
    return [{"params": vecs}, {"params": mats, "rank": RANK, "update_proj_gap": gap, "scale": SCALE,
                               "proj_type": "std"}]


# name -> (built with defaults?, builder(mats, vecs, gap) -> optimizer)
Builder = Callable[[list, list, int], torch.optim.Optimizer]
ROWS: dict[str, tuple[bool, Builder]] = {
    BASELINE: (False, lambda m, v, gap: torch.optim.AdamW(m + v, lr=LR, foreach=True)),
    "torch AdamW default": (True, lambda m, v, gap: torch.optim.AdamW(m + v, lr=LR)),
    "GaLore": (True, lambda m, v, gap: discrete.GaLore(_groups(m, v, gap), lr=LR)),
    "OSD": (True, lambda m, v, gap: discrete.OnlineSubspaceDescent(_groups(m, v, gap), lr=LR)),
    "RSO": (True, lambda m, v, gap: discrete.RSO(_groups(m, v, gap), lr=LR)),
    "discrete.AdamW": (True, lambda m, v, gap: discrete.AdamW(m + v, lr=LR)),
    "GaLore foreach=True": (False, lambda m, v, gap: discrete.GaLore(_groups(m, v, gap), lr=LR, foreach=True)),
    "OSD foreach=True": (False, lambda m, v, gap: discrete.OnlineSubspaceDescent(_groups(m, v, gap), lr=LR,
                                                                                  foreach=True)),
    "RSO foreach=True": (False, lambda m, v, gap: discrete.RSO(_groups(m, v, gap), lr=LR, foreach=True)),
    "discrete.AdamW foreach=True": (False, lambda m, v, gap: discrete.AdamW(m + v, lr=LR, foreach=True)),
}


def _has_aten_ancestor(event) -> bool:
    p = event.cpu_parent
    while p is not None:
        if p.name.startswith("aten::"):
            return True
        p = p.cpu_parent
    return False


_FRAME = re.compile(r"^(?P<file>[^<].*?\.py)\(\d+\): ")


def _source(event) -> str:
    """The innermost Python frame above ``event`` outside torch (needs ``with_stack=True``), else "?"."""
    p = event.cpu_parent
    while p is not None:
        m = _FRAME.match(p.name)
        if m and "torch/" not in m.group("file"):
            return p.name
        p = p.cpu_parent
    return "?"


def top_level_ops(fn: Callable[[], object], with_stack: bool = False) -> tuple[collections.Counter, collections.Counter]:
    """Run ``fn`` under the profiler: (top-level aten op name -> count, source frame -> count)."""
    return _per_call_ops(fn, 1, with_stack)[0]


_MARK = "dispatch.py call "


def _per_call_ops(fn: Callable[[], object], calls: int, with_stack: bool = False) -> list[tuple[collections.Counter,
                                                                                                collections.Counter]]:
    """``top_level_ops`` of ``calls`` successive calls of ``fn`` under one profiler session (starting one costs
    about 0.5 s); each call runs inside a ``record_function`` mark that its events are attributed to."""
    with profile(activities=[ProfilerActivity.CPU], with_stack=with_stack) as prof:
        for i in range(calls):
            with record_function(f"{_MARK}{i}"):
                fn()
    out = [(collections.Counter(), collections.Counter()) for _ in range(calls)]
    for e in prof.events():
        if not e.name.startswith("aten::") or _has_aten_ancestor(e):
            continue
        mark = e.cpu_parent
        while mark is not None and not mark.name.startswith(_MARK):
            mark = mark.cpu_parent
        if mark is None:                               # an op of the profiler's own start, outside every call
            continue
        ops, src = out[int(mark.name[len(_MARK):])]
        ops[e.name] += 1
        if with_stack:
            src[_source(e)] += 1
    return out


def measure(name: str, layers: int, warmup: int, refresh_gap: int) -> dict:
    """One row: ops of a regular step after ``warmup`` steps, and ops of each step with a short gap."""
    defaults, make = ROWS[name]
    mats, vecs = llama_set(layers)
    opt = make(mats, vecs, GAP)
    for _ in range(warmup):
        opt.step()
    ops = sum(top_level_ops(opt.step)[0].values())
    mats, vecs = llama_set(layers)
    opt = make(mats, vecs, refresh_gap)
    by_step = [sum(c.values()) for c, _ in _per_call_ops(opt.step, 2 * refresh_gap + 1)]
    return {"name": name, "ops": ops, "defaults": defaults, "first_step_ops": by_step[0],
            "refresh_ops": max(by_step[1:]), "ops_by_step": by_step, "refresh_gap": refresh_gap,
            "matrices": len(mats), "vectors": len(vecs)}


# --host-time: the set at these dimensions (rank 8 = hidden) makes the arithmetic negligible, so a step's wall
# time is its host work: Python, dispatch and the per-op overhead of the CPU backend
HOST_DIMS = (8, 12)


def host_ms(name: str, layers: int, warmup: int, repeats: int = 9, steps: int = 10) -> tuple[float, float]:
    """(row, baseline) wall milliseconds of one regular step on the HOST_DIMS set: each the least over ``repeats``
    of the mean over ``steps`` steps, the row's and torch AdamW foreach's batches interleaved so that both see
    the same moments of a shared machine (the least is the batch least disturbed by other work)."""
    import time

    opts = []
    for row in (name, BASELINE):
        mats, vecs = llama_set(layers, hidden=HOST_DIMS[0], intermediate=HOST_DIMS[1])
        opts.append(ROWS[row][1](mats, vecs, GAP))
        for _ in range(warmup):
            opts[-1].step()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for i, opt in enumerate(opts):
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            best[i] = min(best[i], (time.perf_counter() - t0) / steps)
    return 1e3 * best[0], 1e3 * best[1]


def breakdown(name: str, layers: int, warmup: int, k: int) -> str:
    """The ``k`` most frequent top-level ops of one regular step of row ``name``, and the lines issuing them."""
    mats, vecs = llama_set(layers)
    opt = ROWS[name][1](mats, vecs, GAP)
    for _ in range(warmup):
        opt.step()
    ops, src = top_level_ops(opt.step, with_stack=True)
    total, n = sum(ops.values()), len(mats)
    out = [f"## {name}: {total} top-level aten ops per step ({total / n:.1f} per projected matrix, {n} matrices)",
           f"{'count':>7} {'/matrix':>8}  op"]
    out += [f"{c:7d} {c / n:8.2f}  {op}" for op, c in ops.most_common(k)]
    out += ["", f"{'count':>7} {'/matrix':>8}  innermost frame outside torch"]
    out += [f"{c:7d} {c / n:8.2f}  {s}" for s, c in src.most_common(k)]
    return "\n".join(out) + "\n"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs/results/benchmarks/dispatch.jsonl"),
                    help="JSON-lines file the rows are appended to")
    ap.add_argument("--layers", type=int, default=24, help="LLaMA layers in the set (7 matrices, 2 vectors each)")
    ap.add_argument("--warmup", type=int, default=3, help="steps before the counted one (the first builds state)")
    ap.add_argument("--refresh-gap", type=int, default=3, help="update_proj_gap of the optimizer whose every "
                                                                "step is counted (refresh_ops)")
    ap.add_argument("--only", default=None, help=f"comma-separated row names (always with {BASELINE!r})")
    ap.add_argument("--profile-top", type=int, default=0, metavar="K",
                    help="also write the K most frequent ops of OSD, GaLore, RSO to dispatch_breakdown.txt "
                         "next to --out")
    ap.add_argument("--host-time", action="store_true",
                    help=f"also time each row's regular step on the set at hidden/intermediate {HOST_DIMS} (host work: "
                         "Python and dispatch), the least of 9 means of 10 steps, interleaved with torch AdamW foreach's")
    ap.add_argument("--large-layout", action="store_true",
                    help="count with every matrix in the layout of large ones (discrete.step.layout.PER_MATRIX_ELEMS): "
                         "what a LLaMA-1B-sized set dispatches, where each big product is its own launch")
    args = ap.parse_args(argv)
    if args.large_layout:
        from discrete.step import layout
        layout.PER_MATRIX_ELEMS = 1
    for flag in ("layers", "warmup", "refresh_gap"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    names = list(ROWS)
    if args.only:
        wanted = [s.strip() for s in args.only.split(",")]
        unknown = [s for s in wanted if s not in ROWS]
        if unknown:
            ap.error(f"--only: unknown rows {unknown}; known: {names}")
        names = [BASELINE] + [s for s in wanted if s != BASELINE]

    meta = {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "command": "PYTHONPATH=. python " + " ".join(shlex.quote(a) for a in
                                                         ["benchmarks/dispatch.py", *(sys.argv[1:] if argv is None
                                                                                      else argv)]),
            "torch": torch.__version__, "device": "cpu", "threads": torch.get_num_threads(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "layers": args.layers, "hidden": HIDDEN, "intermediate": INTERMEDIATE, "rank": RANK, "update_proj_gap": GAP,
            "scale": SCALE, "warmup": args.warmup, "layout": "large" if args.large_layout else "by size",
            "method": "torch.profiler CPU, aten:: events with no aten:: ancestor"}
    rows, base = [], None
    print(f"{'row':<30} {'ops':>7} {'x foreach':>9} {'refresh':>8} {'first':>7}  target")
    for name in names:
        row = measure(name, args.layers, args.warmup, args.refresh_gap)
        base = row["ops"] if name == BASELINE else base
        row["x_torch_adamw_foreach"] = round(row["ops"] / base, 3)
        if args.host_time:
            mine, base_ms = host_ms(name, args.layers, args.warmup)
            row.update(host_ms=round(mine, 3), host_baseline_ms=round(base_ms, 3),
                       host_x_torch_adamw_foreach=round(mine / base_ms, 3), host_dims=list(HOST_DIMS))
        opt_kind = name.split()[0]
        if opt_kind in TARGETS:
            row["target_x"] = TARGETS[opt_kind]
            row["target_met"] = row["x_torch_adamw_foreach"] <= TARGETS[opt_kind]
        row.update(meta)
        rows.append(row)
        target = (f"<= {row['target_x']}x: {'met' if row['target_met'] else 'MISSED'}"
                  + ("" if row["defaults"] else " (not defaults)")) if "target_x" in row else ""
        host = f"  host {row['host_ms']:.2f} ms ({row['host_x_torch_adamw_foreach']:.2f}x)" if args.host_time else ""
        print(f"{name:<30} {row['ops']:7d} {row['x_torch_adamw_foreach']:9.2f} {row['refresh_ops']:8d} "
              f"{row['first_step_ops']:7d}  {target}{host}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    if args.profile_top:
        text = [f"# top-level aten ops of one regular step (after {args.warmup} warm-up steps), {args.layers} layers; "
                f"commit {meta['commit'][:7]}{' (dirty)' if meta['dirty'] else ''}, torch {meta['torch']}, "
                f"{meta['date']}\n# {meta['command']}\n"]
        text += [breakdown(n, args.layers, args.warmup, args.profile_top)
                 for n in ("OSD", "GaLore", "RSO", "OSD foreach=True", "GaLore foreach=True", BASELINE)]
        path = out.parent / "dispatch_breakdown.txt"
        path.write_text("\n".join(text))
        print(f"breakdown: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
