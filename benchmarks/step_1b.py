"""One optimizer step on the LLaMA-1B parameter set, against torch's fused AdamW in the same process.

The set: 24 layers × [4 × 2048×2048, 2 × 5461×2048, 2048×5461] projected at rank 512
(update gap 200, scale 0.25, ``proj_type`` std), plus 2 × 32000×2048 full rank; Gaussian weights
(×0.02) and gradients (×1e-3). Each row is one optimizer built on the same tensors; ``step_ms`` is the
median over ``--reps`` CUDA-event-timed ``opt.step()`` calls after warm-ups (the first step, which
builds the state and, for OSD/GaLore, takes 168 SVDs, is a warm-up). Rows with ``defaults: true``
are built with no precision or speed option at all (what a new user gets).

Writes ``step_1b.jsonl`` (one object per row: name, step_ms, x_fused_adamw, state_bytes,
state_vs_adamw, device, defaults, …), ``pgrad_error.jsonl`` (relative error of the online-PCA
P-gradient against float64 per shape and precision), ``refresh.jsonl`` (ways to compute GaLore's
top-r basis: time and overlap with the float64 SVD basis) and ``profile_osd.txt`` (where an OSD step's
milliseconds go: torch.profiler's table of the default OSD step) to ``--out``.

    PYTHONPATH=. python3 benchmarks/step_1b.py --out $OUT                 # one H100/H200, ~3 min
    PYTHONPATH=. python3 benchmarks/step_1b.py --smoke --out /tmp/b       # CPU, tiny shapes
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
import types

import torch

from discrete import RSO, AdamW as OurAdamW, GaLore, OnlineSubspaceDescent
from discrete.precision import MATMUL_PRECISION
from osd_theory.kernels import LEFT, RIGHT, online_pca_grad, project

RANK, GAP, SCALE = 512, 200, 0.25


def shapes(smoke: bool):
    if smoke:
        return [(64, 64)] * 4 + [(160, 64)] * 2 + [(64, 160)], [(500, 64)] * 2, 16, 2
    return [(2048, 2048)] * 4 + [(5461, 2048)] * 2 + [(2048, 5461)], [(32000, 2048)] * 2, RANK, 24


def time_ms(fn, reps: int, warmup: int, cuda: bool) -> float:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            out.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            out.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(out)


def state_bytes(opt) -> int:
    return sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
               if torch.is_tensor(v) and v.dim() > 0)


def galore_torch_class(path: str | None):
    """galore-torch 1.0's GaLoreAdamW loaded from its files (its __init__ imports bitsandbytes)."""
    if not path:
        return None
    pkg = types.ModuleType("galore_torch")
    pkg.__path__ = [path]
    sys.modules["galore_torch"] = pkg
    for name in ("galore_projector", "adamw"):
        spec = importlib.util.spec_from_file_location(f"galore_torch.{name}", os.path.join(path, f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return sys.modules["galore_torch.adamw"].AdamW


def pgrad_errors(device, smoke: bool) -> list[dict]:
    """‖∇_P(prec) − ∇_P(float64)‖/‖∇_P(float64)‖ of the online-PCA gradient, per 1B shape and precision."""
    rows = []
    mats, _, rank, _ = shapes(smoke)
    g = torch.Generator(device=device).manual_seed(3)
    for m, n in sorted(set(mats)):
        side = RIGHT if m >= n else LEFT
        G = torch.randn(m, n, device=device, generator=g)
        d = n if side == RIGHT else m
        P = torch.linalg.qr(torch.randn(d, rank, device=device, generator=g))[0]
        P = P + 0.05 * torch.randn(d, rank, device=device, generator=g) / d ** 0.5   # off the orthonormal set
        ref = online_pca_grad(P.double(), G.double(), 0.1, side)
        for prec in ("highest", "tf32"):
            with MATMUL_PRECISION.get(prec).context():
                got = online_pca_grad(P, G, 0.1, side, G_hat=project(P, G, side))
            rows.append({"shape": [m, n], "rank": rank, "precision": prec,
                         "rel_error": float((got.double() - ref).norm() / ref.norm()), "device": device_name(device)})
            print(f"[pgrad] {m}x{n} {prec}: rel error {rows[-1]['rel_error']:.2e}", flush=True)
    return rows


def refresh_methods(device, smoke: bool) -> list[dict]:
    """GaLore's refresh: time and accuracy of ways to get the top-r singular basis of one G.

    Accuracy is the subspace overlap ‖P̂ᵀP‖²_F/r with the float64 SVD basis (1 = same subspace).
    """
    mats, _, rank, _ = shapes(smoke)
    cuda = device.type == "cuda"
    g = torch.Generator(device=device).manual_seed(5)
    rows = []

    def gram_eigh(G, dtype):
        C = (G @ G.mT).to(dtype)                     # (d, d), G oriented with d ≤ k
        return torch.linalg.eigh(C)[1][:, -rank:].flip(-1).float()

    methods = {"svd": lambda G: torch.linalg.svd(G, full_matrices=False)[0][:, :rank],
               "gram_eigh_fp32": lambda G: gram_eigh(G, torch.float32),
               "gram_eigh_fp64": lambda G: gram_eigh(G.double(), torch.float64),
               "svd_lowrank_niter2": lambda G: torch.svd_lowrank(G, q=min(rank + 64, min(G.shape)), niter=2)[0][:, :rank]}
    if cuda:
        for drv in ("gesvdj", "gesvda"):
            methods[f"svd_{drv}"] = (lambda d: lambda G: torch.linalg.svd(G, full_matrices=False, driver=d)[0][:, :rank])(drv)
    for m, n in sorted(set(mats)):
        G = torch.randn(min(m, n), max(m, n), device=device, generator=g)
        G = G * torch.logspace(0, -3, G.shape[1], device=device)                    # a decaying spectrum
        ref = torch.linalg.svd(G.double(), full_matrices=False)[0][:, :rank]
        for name, fn in methods.items():
            try:
                ms = time_ms(lambda: fn(G), 3, 1, cuda)
                P = fn(G).double()
                overlap = float((P.mT @ ref).pow(2).sum() / rank)
            except Exception as exc:                                              # a driver may be missing
                rows.append({"shape": [m, n], "method": name, "error": str(exc)[:200]})
                continue
            rows.append({"shape": [m, n], "rank": rank, "method": name, "ms": round(ms, 2),
                         "overlap_vs_fp64_svd": round(overlap, 6), "device": device_name(device)})
            print(f"[refresh] {m}x{n} {name}: {ms:.1f} ms, overlap {overlap:.6f}", flush=True)
    return rows


def device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--galore-torch", default=None, help="folder of galore-torch 1.0's galore_torch package")
    ap.add_argument("--only", default=None, help="comma-separated row names to run (default all)")
    ap.add_argument("--refresh-step", action="store_true", help="also time one GaLore refresh step (168 SVDs)")
    ap.add_argument("--run", default="", help="a label stored in every row (which call made it)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if cuda else "cpu")
    mats_s, full_s, rank, layers = shapes(args.smoke)
    g = torch.Generator(device=device).manual_seed(1)
    mats = [torch.nn.Parameter(torch.randn(s, device=device, generator=g) * 0.02) for s in mats_s * layers]
    full = [torch.nn.Parameter(torch.randn(s, device=device, generator=g) * 0.02) for s in full_s]
    for p in mats + full:
        p.grad = torch.randn(p.shape, device=device, generator=g) * 1e-3
    n_params = sum(p.numel() for p in mats + full)
    print(f"{device_name(device)}: {len(mats)} projected + {len(full)} full-rank, {n_params / 1e9:.3f} B parameters",
          flush=True)

    def groups(**kw):
        return [{"params": full}, {"params": mats, "rank": rank, "update_proj_gap": GAP, "scale": SCALE,
                                   "proj_type": "std", **kw}]

    gt = galore_torch_class(args.galore_torch)
    rows_spec = [
        ("torch AdamW fused", True, lambda: torch.optim.AdamW(mats + full, lr=1e-3, fused=cuda)),
        ("torch AdamW foreach", False, lambda: torch.optim.AdamW(mats + full, lr=1e-3, foreach=True)),
        ("discrete.AdamW", True, lambda: OurAdamW(mats + full, lr=1e-3)),
        ("OSD", True, lambda: OnlineSubspaceDescent(groups(), lr=1e-3)),
        ("OSD nonfinite=ignore", False, lambda: OnlineSubspaceDescent(groups(), lr=1e-3, nonfinite="ignore")),
        ("OSD fp32 products", False, lambda: OnlineSubspaceDescent(groups(matmul_precision="highest"), lr=1e-3)),
        ("OSD bf16 products", False, lambda: OnlineSubspaceDescent(groups(matmul_precision="bf16"), lr=1e-3)),
        ("OSD bf16 products, gd on P, nonfinite=ignore", False, lambda: OnlineSubspaceDescent(
            groups(matmul_precision="bf16", proj_optimizer="gd"), lr=1e-3, nonfinite="ignore")),
        ("OSD gd on P", False, lambda: OnlineSubspaceDescent(groups(proj_optimizer="gd"), lr=1e-3)),
        ("OSD per matrix (foreach=False)", False, lambda: OnlineSubspaceDescent(groups(), lr=1e-3, foreach=False)),
        ("GaLore regular step", True, lambda: GaLore(groups(), lr=1e-3)),
        ("GaLore regular step nonfinite=ignore", False, lambda: GaLore(groups(), lr=1e-3, nonfinite="ignore")),
        ("GaLore bf16 products", False, lambda: GaLore(groups(matmul_precision="bf16"), lr=1e-3)),
        ("RSO regular step", True, lambda: RSO(groups(), lr=1e-3)),
        # lean state (discrete/lowbit.py): the cost of dequantising and requantising every step
        ("discrete.AdamW int8 state", False, lambda: OurAdamW(mats + full, lr=1e-3, state_dtype="int8")),
        ("GaLore int8 state", False, lambda: GaLore(groups(), lr=1e-3, state_dtype="int8")),
        ("OSD int8 state", False, lambda: OnlineSubspaceDescent(groups(), lr=1e-3, state_dtype="int8")),
        ("OSD bf16 state", False, lambda: OnlineSubspaceDescent(groups(), lr=1e-3, state_dtype="bf16")),
    ]
    if gt is not None:
        rows_spec.append(("galore-torch 1.0 GaLoreAdamW", True, lambda: gt(groups(), lr=1e-3, no_deprecation_warning=True)))
    only = set(args.only.split(",")) if args.only else None
    rows, base_ms, base_state = [], None, None
    for name, defaults, make in rows_spec:
        if only and name not in only and name != "torch AdamW fused":
            continue
        opt = make()
        opt.step()                                    # state, SVD bases: not timed
        ms = time_ms(opt.step, args.reps, 2, cuda)
        sb = state_bytes(opt)
        if name == "torch AdamW fused":
            base_ms, base_state = ms, sb
        row = {"name": name, "step_ms": round(ms, 3), "x_fused_adamw": round(ms / base_ms, 3), "state_bytes": sb,
               "state_vs_adamw": round(sb / base_state, 4), "device": device_name(device), "defaults": defaults,
               "n_params": n_params, "torch": torch.__version__}
        row["run"] = args.run
        if name == "GaLore regular step" and args.refresh_step:
            for st in opt.state.values():             # the next step refreshes every basis: time one
                if "proj" in st:
                    st["step"].fill_(GAP * 2)
            row["refresh_step_ms"] = round(time_ms(opt.step, 1, 0, cuda), 1)
            row["amortised_ms"] = round(ms + row["refresh_step_ms"] / GAP, 3)
        if name == "OSD" and cuda:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    opt.step()
                torch.cuda.synchronize()
            with open(os.path.join(args.out, "profile_osd.txt"), "w") as f:
                f.write("# torch.profiler, 3 default OSD steps, sorted by CUDA time\n")
                f.write(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30))
        rows.append(row)
        print(json.dumps(row), flush=True)
        del opt
        if cuda:
            torch.cuda.empty_cache()
    from discrete.validation.provenance import record  # commit, command, threads, sharing of every row

    prov = record(device)
    rows = [{**prov, **r} for r in rows]
    with open(os.path.join(args.out, "step_1b.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(args.out, "pgrad_error.jsonl"), "w") as f:
        f.writelines(json.dumps({**prov, **r}) + "\n" for r in pgrad_errors(device, args.smoke))
    with open(os.path.join(args.out, "refresh.jsonl"), "w") as f:
        f.writelines(json.dumps({**prov, **r}) + "\n" for r in refresh_methods(device, args.smoke))
    return 0


if __name__ == "__main__":
    sys.exit(main())
