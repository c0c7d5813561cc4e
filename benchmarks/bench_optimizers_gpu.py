"""GPU benchmark of the discrete optimizers (ANCHORS.md §5 and §6, re-measured with our code).

Run (repo not installed; writes JSON + Markdown to --out):

    PYTHONPATH=. python3 benchmarks/bench_optimizers_gpu.py --out $OUT          # H100, ~3 min
    PYTHONPATH=. python3 benchmarks/bench_optimizers_gpu.py --smoke --out /tmp/b # CPU, tiny sizes

Sections:
1. Per LLaMA shape (m×n, rank r, LEFT side, P m×r): SVD refresh; one OSD P-update (online-PCA
   gradient, two-pass closed form reusing Ĝ, + an Adam step on P) — batched code path in fp32 and
   TF32, plus the naive per-matrix float32 reference — with the gradient's relative error against
   float64; projection Ĝ = PᵀG and back-projection P D; one fused torch AdamW step on the matrix.
2. One optimizer step over a LLaMA-1B-shaped parameter set (24 × [4 × 2048², 2 × 5461×2048,
   2048×5461] projected, 2 × 32000×2048 full rank): torch AdamW fused/foreach, our AdamW, OSD
   (TF32 / fp32, Adam or stateless GD on P), GaLore regular step and refresh (SVDs of one layer ×
   24), with optimizer-state bytes per category vs the analytic formula, and peak step memory.
3. RSO module form: activation memory of forward+backward through 4 linears, plain vs RSO.

Timing: CUDA events around each call, median of repeats after warm-ups. Inputs are Gaussian.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from discrete import AdamW as OurAdamW, GaLore, OnlineSubspaceDescent
from discrete import fused
from discrete.fused import MATMUL_PRECISION, PCAHyper, online_pca_grad_batched
from discrete.state import basis_rows, side_of
from osd_theory import discrete_steps as ds
from osd_theory.kernels import LEFT, online_pca_grad, svd_basis

SHAPES = [("60M attn", 512, 512, 128), ("60M mlp", 512, 1376, 128), ("130M attn", 768, 768, 256),
          ("130M mlp", 768, 2048, 256), ("350M attn", 1024, 1024, 256), ("350M mlp", 1024, 2736, 256),
          ("1B attn", 2048, 2048, 512), ("1B mlp", 2048, 5461, 512), ("7B attn", 4096, 4096, 1024),
          ("7B mlp", 4096, 11008, 1024)]
SMOKE_SHAPES = [("tiny attn", 64, 64, 16), ("tiny mlp", 64, 160, 16)]
CATEGORY = {"exp_avg": "moments", "exp_avg_sq": "moments", "proj": "projector",
            "proj_exp_avg": "projector_optim", "proj_exp_avg_sq": "projector_optim"}


# -- timing ------------------------------------------------------------------------------------
def time_ms(fn, reps: int, warmup: int, device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double() - ref).norm() / ref.norm())


# -- 1. per shape --------------------------------------------------------------------------------
PRECISIONS = ("highest", "tf32", "bf16")


def per_shape(shapes, device, reps, svd: bool) -> list[dict]:
    rows = []
    g = torch.Generator(device=device).manual_seed(0)
    pca = PCAHyper(alpha=5.0, pca_lambda=0.1, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8)
    for name, m, n, r in shapes:
        G = torch.randn(m, n, device=device, generator=g)
        P0 = torch.linalg.qr(torch.randn(m, r, device=device, generator=g))[0]
        U = svd_basis(G, r, LEFT)                                                   # a converged basis, perturbed
        P_near = torch.linalg.qr(U + 0.05 * torch.randn(m, r, device=device, generator=g) / m ** 0.5)[0]
        row = {"shape": name, "m": m, "n": n, "r": r}
        big = m * n >= 4096 * 4096
        if svd:
            row["svd_ms"] = time_ms(lambda: torch.linalg.svd(G, full_matrices=False), 3 if big else reps, 1, device)
        for tag, Pt in (("random", P0), ("near", P_near)):
            ref = online_pca_grad(Pt.double(), G.double(), 0.1, LEFT)               # float64 reference
            for prec in PRECISIONS:
                Gh = (Pt.double().mT @ G.double()).float()
                grad = online_pca_grad_batched(Pt[None].clone(), Gh[None], [G], LEFT, 0.1, precision=prec)
                row[f"relerr_{tag}_{prec}"] = rel_err(grad[0], ref)
        for prec in PRECISIONS:
            mode = MATMUL_PRECISION.get(prec)
            states = [{"proj": P0.clone(), "proj_exp_avg": torch.zeros_like(P0), "proj_exp_avg_sq": torch.zeros_like(P0)}]
            cache: dict = {}
            P = fused.stacked(states, "proj", cache)
            with mode.context():
                Gh = (P[0].to(mode.dtype).mT @ G.to(mode.dtype)).float()[None]

            def p_update():                                       # B pass + r×r algebra + Adam on P (Ĝ given)
                grad = online_pca_grad_batched(P, Gh, [G], LEFT, 0.1, precision=prec)
                U_P = fused.P_STEPS.get("adam")(states, cache, grad, 5e-3, 1, pca)
                P.add_(U_P, alpha=5e-3)

            row[f"p_update_{prec}_ms"] = time_ms(p_update, reps, 3, device)
            D = torch.randn(r, n, device=device, generator=g)
            Pc, Gc, Dc = P0.to(mode.dtype), G.to(mode.dtype), D.to(mode.dtype)
            with mode.context():
                row[f"project_{prec}_ms"] = time_ms(lambda: Pc.mT @ Gc, reps, 3, device)
                row[f"back_project_{prec}_ms"] = time_ms(lambda: Pc @ Dc, reps, 3, device)
        G_hat = P0.mT @ G
        m_, v_ = torch.zeros_like(P0), torch.zeros_like(P0)

        def naive():
            grad = online_pca_grad(P0, G, 0.1, LEFT, G_hat=G_hat)
            return ds.adam_step([m_, v_], grad, lr=5e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=1)

        row["p_update_naive_fp32_ms"] = time_ms(naive, reps, 2, device)
        W = torch.nn.Parameter(torch.randn(m, n, device=device, generator=g))
        W.grad = G
        opt = torch.optim.AdamW([W], lr=1e-3, fused=device.type == "cuda")
        row["fused_adamw_ms"] = time_ms(opt.step, reps, 3, device)
        rows.append(row)
        print(f"[shape] {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items() if isinstance(v, float)), flush=True)
        del G, W, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# -- 2. the LLaMA-1B parameter set -----------------------------------------------------------------
def llama_shapes(smoke: bool) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    h, f, v, layers, rank = (64, 160, 256, 2, 16) if smoke else (2048, 5461, 32000, 24, 512)
    mats = [s for _ in range(layers) for s in [(h, h)] * 4 + [(f, h), (f, h), (h, f)]]
    return mats, [(v, h), (v, h)], rank


def analytic_state_bytes(mats, full, rank, p_moments: bool) -> dict:
    """GaLore: per projected (m, n): 2kr moments + dr for P (d = projected side, k = other); OSD adds 2dr."""
    out = {"moments": 0, "projector": 0, "projector_optim": 0}
    for m, n in mats:
        d = basis_rows((m, n), side_of("std", (m, n)))
        k = m * n // d
        out["moments"] += 4 * 2 * k * rank
        out["projector"] += 4 * d * rank
        out["projector_optim"] += 4 * 2 * d * rank if p_moments else 0
    out["moments"] += sum(4 * 2 * a * b for a, b in full)
    return out


def measured_state_bytes(opt) -> dict:
    out = {"moments": 0, "projector": 0, "projector_optim": 0}
    for st in opt.state.values():
        for k, v in st.items():
            if torch.is_tensor(v) and k in CATEGORY:
                out[CATEGORY[k]] += v.numel() * v.element_size()
    return out


def prepopulate(opt, p_moments: bool) -> None:
    """A steady-state start without 168 SVDs: orthonormal P, zero moments, step 1 (no refresh due)."""
    for group in opt.param_groups:
        if "rank" not in group:
            continue
        for p in group["params"]:
            side = side_of(group["proj_type"], p.shape)
            d, r = basis_rows(p.shape, side), group["rank"]
            P = torch.linalg.qr(torch.randn(d, r, device=p.device))[0]
            k_shape = (r, p.shape[1]) if side == LEFT else (p.shape[0], r)
            st = {"step": torch.tensor(1.0), "proj": P, "proj_side": side, "last_refresh_step": 0,
                  "exp_avg": torch.zeros(k_shape, device=p.device), "exp_avg_sq": torch.zeros(k_shape, device=p.device)}
            if p_moments:
                st["proj_exp_avg"], st["proj_exp_avg_sq"] = torch.zeros_like(P), torch.zeros_like(P)
            opt.state[p] = st


def llama_step(device, smoke: bool, reps: int) -> dict:
    mats_s, full_s, rank = llama_shapes(smoke)
    g = torch.Generator(device=device).manual_seed(1)
    mats = [torch.nn.Parameter(torch.randn(s, device=device, generator=g) * 0.02) for s in mats_s]
    full = [torch.nn.Parameter(torch.randn(s, device=device, generator=g) * 0.02) for s in full_s]
    for p in mats + full:
        p.grad = torch.randn(p.shape, device=device, generator=g) * 1e-3
    n_params = sum(p.numel() for p in mats + full)
    res = {"n_params": n_params, "rank": rank, "runs": {}}
    cuda = device.type == "cuda"

    def measure(name, opt, p_moments=None):
        if p_moments is not None:
            prepopulate(opt, p_moments)
        opt.step()                                        # creates the full-rank state
        if cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        ms = time_ms(opt.step, reps, 2, device)
        peak = (torch.cuda.max_memory_allocated() - base) if cuda else 0
        state = measured_state_bytes(opt)
        run = {"ms": ms, "step_transient_bytes": peak, "state_bytes": state, "state_total": sum(state.values())}
        res["runs"][name] = run
        print(f"[1B] {name}: {ms:.2f} ms, state {run['state_total'] / 1e9:.3f} GB, step transient {peak / 1e9:.2f} GB",
              flush=True)
        return opt

    groups = lambda **kw: [{"params": full}, {"params": mats, "rank": rank, "update_proj_gap": 200, "scale": 0.25,
                                              "proj_type": "std", **kw}]
    for name, make in [
        ("torch AdamW fused", lambda: torch.optim.AdamW(mats + full, lr=1e-3, fused=cuda)),
        ("torch AdamW foreach", lambda: torch.optim.AdamW(mats + full, lr=1e-3, foreach=True)),
    ]:
        opt = measure(name, make())
        del opt
    opt = measure("discrete.AdamW (per-tensor path)", OurAdamW(mats + full, lr=1e-3))
    del opt
    for name, kw, pm in [
        ("OSD bf16, Adam on P", {"matmul_precision": "bf16"}, True),
        ("OSD tf32, Adam on P", {"matmul_precision": "tf32"}, True),
        ("OSD fp32, Adam on P", {"matmul_precision": "highest"}, True),
        ("OSD bf16, GD on P", {"matmul_precision": "bf16", "proj_optimizer": "gd"}, False),
        # without the per-group host sync of the non-finite check (torch.optim's behaviour)
        ("OSD tf32, Adam on P, nonfinite=ignore", {"matmul_precision": "tf32", "nonfinite": "ignore"}, True),
        ("OSD bf16, Adam on P, nonfinite=ignore", {"matmul_precision": "bf16", "nonfinite": "ignore"}, True),
    ]:
        nf = kw.pop("nonfinite", "raise")
        opt = measure(name, OnlineSubspaceDescent(groups(**kw), lr=1e-3, foreach=True, nonfinite=nf), pm)
        del opt
    for name, kw in [("GaLore bf16, regular step", {"matmul_precision": "bf16"}),
                     ("GaLore tf32, regular step", {"matmul_precision": "tf32"}),
                     ("GaLore fp32, regular step", {"matmul_precision": "highest"}),
                     ("GaLore bf16, regular step, nonfinite=ignore", {"matmul_precision": "bf16", "nonfinite": "ignore"})]:
        nf = kw.pop("nonfinite", "raise")
        opt = measure(name, GaLore(groups(**kw), lr=1e-3, foreach=True, nonfinite=nf), False)
        del opt
    # GaLore refresh: the SVDs of one layer (7 matrices), timed once, times the number of layers
    layer = mats[:7]
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for p in layer:
        svd_basis(p.grad, rank, side_of("std", p.shape))
    if cuda:
        torch.cuda.synchronize()
    one_layer_ms = 1e3 * (time.perf_counter() - t0)
    n_layers = len(mats) // 7
    res["n_layers"] = n_layers
    res["galore_refresh_ms"] = one_layer_ms * n_layers
    res["galore_refresh_one_layer_ms"] = one_layer_ms
    reg = res["runs"]["GaLore bf16, regular step"]["ms"]
    res["galore_amortised_ms_gap200"] = reg + res["galore_refresh_ms"] / 200   # bf16 regular step + refresh/200
    res["analytic"] = {"adamw": 8 * n_params, "galore": analytic_state_bytes(mats_s, full_s, rank, False),
                       "osd_adam_P": analytic_state_bytes(mats_s, full_s, rank, True)}
    print(f"[1B] GaLore refresh (one layer x {n_layers}): {res['galore_refresh_ms']:.0f} ms; amortised at gap 200: "
          f"{res['galore_amortised_ms_gap200']:.2f} ms", flush=True)
    return res


# -- 3. RSO activation memory ----------------------------------------------------------------------
def rso_memory(device, smoke: bool) -> dict:
    from discrete.rso_module import wrap_linears
    d, N, r, depth = (64, 256, 8, 4) if smoke else (4096, 16384, 256, 4)
    out = {}
    for name in ("plain", "rso"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(d, d, bias=False) for _ in range(depth)]).to(device)
        if name == "rso":
            wrap_linears(model, r)
        x = torch.randn(N, d, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        y = model(x)
        after_fwd = (torch.cuda.memory_allocated() - base) if device.type == "cuda" else 0
        y.square().mean().backward()
        peak = (torch.cuda.max_memory_allocated() - base) if device.type == "cuda" else 0
        ms = time_ms(lambda: model(x).square().mean().backward(), 5, 1, device)
        out[name] = {"saved_after_forward_bytes": after_fwd, "peak_fwd_bwd_bytes": peak, "fwd_bwd_ms": ms}
        print(f"[rso] {name}: held after forward {after_fwd / 1e6:.1f} MB, peak {peak / 1e6:.1f} MB, {ms:.2f} ms", flush=True)
        del model, x, y
    out["config"] = {"d": d, "tokens": N, "rank": r, "layers": depth}
    return out


# -- report ---------------------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    L = [f"device: {res['device']}, torch {res['torch']}", "",
         "| shape | m×n | r | SVD ms | OSD P-update ms fp32 / TF32 / bf16 | naive fp32 ms | ∇_P rel. err vs fp64, random P: "
         "fp32 / TF32 / bf16 | same, near-converged P | project ms fp32 / TF32 / bf16 | back-project ms fp32 / TF32 / bf16 "
         "| fused AdamW ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["shapes"]:
        svd = f"{r['svd_ms']:.2f}" if "svd_ms" in r else "–"
        L.append(f"| {r['shape']} | {r['m']}×{r['n']} | {r['r']} | {svd} | "
                 f"{' / '.join(format(r[f'p_update_{p}_ms'], '.3f') for p in PRECISIONS)} | {r['p_update_naive_fp32_ms']:.3f} | "
                 f"{' / '.join(format(r[f'relerr_random_{p}'], '.1e') for p in PRECISIONS)} | "
                 f"{' / '.join(format(r[f'relerr_near_{p}'], '.1e') for p in PRECISIONS)} | "
                 f"{' / '.join(format(r[f'project_{p}_ms'], '.3f') for p in PRECISIONS)} | "
                 f"{' / '.join(format(r[f'back_project_{p}_ms'], '.3f') for p in PRECISIONS)} | {r['fused_adamw_ms']:.3f} |")
    s = res["llama1b"]
    base = s["runs"]["torch AdamW fused"]
    L += ["", f"LLaMA-1B-shaped set: {s['n_params'] / 1e9:.3f} B parameters, rank {s['rank']}", "",
          "| optimizer step | ms | × fused AdamW | state GB (moments / P / P-opt) | state / AdamW | step transient GB |",
          "|---|---|---|---|---|---|"]
    for name, r in s["runs"].items():
        st = r["state_bytes"]
        L.append(f"| {name} | {r['ms']:.2f} | {r['ms'] / base['ms']:.2f} | {r['state_total'] / 1e9:.3f} "
                 f"({st['moments'] / 1e9:.2f} / {st['projector'] / 1e9:.2f} / {st['projector_optim'] / 1e9:.2f}) | "
                 f"{r['state_total'] / base['state_total']:.1%} | {r['step_transient_bytes'] / 1e9:.2f} |")
    L.append(f"| GaLore refresh step (SVDs of one layer × {s['n_layers']} layers, extrapolated) | "
             f"{s['galore_refresh_ms']:.0f} | {s['galore_refresh_ms'] / base['ms']:.0f} | | | |")
    L.append(f"| GaLore amortised at gap 200 | {s['galore_amortised_ms_gap200']:.2f} | "
             f"{s['galore_amortised_ms_gap200'] / base['ms']:.2f} | | | |")
    a = s["analytic"]
    L += ["", f"Analytic state bytes: AdamW {a['adamw'] / 1e9:.3f} GB; GaLore {sum(a['galore'].values()) / 1e9:.3f} GB "
          f"{a['galore']}; OSD (Adam on P) {sum(a['osd_adam_P'].values()) / 1e9:.3f} GB {a['osd_adam_P']}"]
    q = res["rso"]
    L += ["", f"RSO activation memory ({q['config']}): plain held after forward {q['plain']['saved_after_forward_bytes'] / 1e6:.1f} MB,"
          f" peak {q['plain']['peak_fwd_bwd_bytes'] / 1e6:.1f} MB, {q['plain']['fwd_bwd_ms']:.2f} ms; RSO held "
          f"{q['rso']['saved_after_forward_bytes'] / 1e6:.1f} MB, peak {q['rso']['peak_fwd_bwd_bytes'] / 1e6:.1f} MB, "
          f"{q['rso']['fwd_bwd_ms']:.2f} ms"]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CPU check of the script)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: shapes,llama,rso")
    ap.add_argument("--no-svd", action="store_true", help="skip the per-shape SVD timings (slow at 7B)")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False      # fp32 unless a section asks for TF32
    res = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
           "command": " ".join(sys.argv)}
    skip = set(args.skip.split(","))
    res["shapes"] = per_shape(SMOKE_SHAPES if args.smoke else SHAPES, device, 3 if args.smoke else args.reps,
                              not args.no_svd) if "shapes" not in skip else []
    res["llama1b"] = llama_step(device, args.smoke, 3 if args.smoke else 10)
    res["rso"] = rso_memory(device, args.smoke)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_optimizers_gpu.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(os.path.join(args.out, "bench_optimizers_gpu.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
