"""The exact online-PCA flow violates Assumption 4.4(ii) robustly: its blind set attracts.

THEORY.md §2: the blind set {Pᵀ∇L = 0} is invariant under the exact online-PCA flow, so
Assumption 4.4(ii) of OSD's Theorem 4.5 fails and the theorem does not apply (this is not a
counterexample to the theorem, whose hypothesis excludes this flow). This script measures how
strongly the coupled (W, P) flow is attracted to that set: gradient flow + online PCA (λ = 0.1)
on a 100×100 quadratic (κ = 10, Hessian eigenvalues in [0.1, 1]), rank 10, from the usual start
(P₀ = top-10 SVD basis of G₀), dopri5 at rtol 1e-8:

* ``alphas``: ‖∇L‖ and ‖Pᵀ∇L‖ at a few times for several α (α = 1 also to t = 12 800);
* ``kicks``: from the α = 1 stall, W and P each pushed by ε·(their norm) in random directions,
  then α = 1 again: does the run return to the blind set (the basin of attraction)?
* ``ranks``, ``seeds``, ``problems``: other ranks, problem seeds and problems at α = 1;
* ``rtols``: the final ‖Pᵀ∇L‖ at several solver tolerances (is it a floor set by the solver?);
* every stall is linearised (:mod:`ode.stall`): λ_max(α = 1) < 0 means it attracts, and α* is
  where it stops attracting.

    python benchmarks/subspace_stall.py --json docs/results/simulation/stall.json > docs/results/simulation/stall_table.md
    python benchmarks/subspace_stall.py --sections kicks ranks       # a subset

Prints markdown tables; ``--json FILE`` writes the rows.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MARKS = [10, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800]
BLIND = 1e-6      # ‖PᵀG‖/‖G‖ below this at the end, with ‖G‖ far from 0: the run sits in the blind set


def spec(alpha=1.0, dim=(100, 100), rank=10, seed=0, problem="quadratic", t_end=200.0, rtol=1e-8):
    from ode import RunSpec
    from ode.integrate import SimulationConfig
    php = {"condition": 10.0} if problem == "quadratic" else {}
    return RunSpec(optimizer="gd", projection="online_pca", proj_hp={"alpha": alpha, "pca_lambda": 0.1},
                   problem=problem, problem_hp=php, dim=dim, rank=rank, seed=seed,
                   config=SimulationConfig(t_end=t_end, rtol=rtol, atol=rtol * 1e-2, autodiff=0))


def outcome(traj, s) -> dict:
    """Where the run ended, and (if it sits in the blind set) its linearisation."""
    from ode.spec import build_run
    from ode.stall import critical_alpha, lambda_max, linearisation
    g, pg = traj.final("grad_norm"), traj.final("proj_grad_norm")
    row = {"t": traj.final("t"), "grad_norm_0": float(traj["grad_norm"][0]), "grad_norm": g, "proj_grad_norm": pg,
           "blind": pg / g if g > 0 else 0.0, "accepted_steps": len(traj)}
    row["stalled"] = row["blind"] < BLIND and g > 1e-3 * row["grad_norm_0"]
    if row["stalled"] and s.problem == "quadratic" and s.dim[0] * s.rank <= 4000:
        _, rule, problem = build_run(s)
        lin = linearisation(problem, traj.final_y[0], traj.final_y[-2], rule.side_)
        row.update(lambda_max_at_alpha=lambda_max(lin, s.proj_hp["alpha"]), alpha_star=critical_alpha(lin))
    return row


def run(s, **state) -> tuple[dict, object]:
    from ode import run_spec
    start = time.perf_counter()
    traj = run_spec(s, **state)
    row = outcome(traj, s)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row, traj


def section_alphas(alphas, long_t):
    rows = []
    for a, t_end in [(a, 200.0) for a in alphas] + ([(1.0, long_t)] if long_t else []):
        row, traj = run(spec(alpha=a, t_end=t_end))
        t, g, pg = traj["t"], traj["grad_norm"], traj["proj_grad_norm"]
        row["samples"] = [{"t": float(t[i]), "grad_norm": float(g[i]), "proj_grad_norm": float(pg[i])}
                          for c in [0.0] + [c for c in MARKS if c <= t_end] for i in [int((t <= c).nonzero()[-1])]]
        rows.append({"alpha": a, "t_end": t_end, **row})
    return rows


def section_kicks(eps_list, seed=1):
    base, traj = run(spec())
    W, P = traj.final_y[0], traj.final_y[-2]
    rows = [{"kick": 0.0, **base}]
    for eps in eps_list:
        gen = torch.Generator().manual_seed(seed)
        ZW = torch.randn(W.shape, generator=gen, dtype=torch.float64)
        ZP = torch.randn(P.shape, generator=gen, dtype=torch.float64)
        W0 = W + eps * torch.linalg.matrix_norm(W) * ZW / torch.linalg.matrix_norm(ZW)
        P0 = P + eps * torch.linalg.matrix_norm(P) * ZP / torch.linalg.matrix_norm(ZP)
        row, _ = run(spec(t_end=400.0), W0=W0, P0=P0)
        rows.append({"kick": eps, **row})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", nargs="+", default=["alphas", "kicks", "ranks", "seeds", "problems", "rtols"])
    ap.add_argument("--alphas", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--long", type=float, default=12800.0, help="also run alpha=1 to this time (0: skip)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    if "alphas" in args.sections:
        out["alphas"] = section_alphas(args.alphas, args.long)
    if "kicks" in args.sections:
        out["kicks"] = section_kicks([0.01, 0.03, 0.1, 0.3, 1.0])
    if "ranks" in args.sections:
        out["ranks"] = [{"rank": r, **run(spec(rank=r))[0]} for r in (2, 5, 20, 40)]
    if "seeds" in args.sections:
        out["seeds"] = [{"seed": s, **run(spec(seed=s))[0]} for s in (1, 2)]
    if "problems" in args.sections:
        out["problems"] = [{"problem": p, **run(spec(problem=p, dim=(50, 50), rank=5))[0]}
                           for p in ("quadratic", "lowrank_regression", "deep_linear")]
    if "rtols" in args.sections:
        out["rtols"] = [{"rtol": r, **run(spec(rtol=r))[0]} for r in (1e-6, 1e-8, 1e-10)]
    print(tables(out))
    if args.json:
        from discrete.validation.provenance import record  # commit, command, versions, threads, sharing

        out["provenance"] = record(torch.device("cpu"))
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


def tables(out: dict) -> str:
    def fmt_row(key, r):
        lin = (f"{r['lambda_max_at_alpha']:+.3g} | {r['alpha_star']:.3g}" if "alpha_star" in r else "– | –")
        v = format(r[key], "g") if isinstance(r[key], (int, float)) else str(r[key])
        return (f"| {v} | {r['grad_norm_0']:.4g} -> {r['grad_norm']:.4g} | {r['blind']:.2g} | "
                f"{'**stalled**' if r['stalled'] else 'no'} | {lin} | {r['t']:.0f} | {r['seconds']:.1f} |")
    head = "| {k} | ‖∇L‖ start -> end | ‖Pᵀ∇L‖/‖∇L‖ at the end | in the blind set? | λ_max(α) | α* | t | wall s |\n" \
           "|---|---|---|---|---|---|---|---|"
    parts = []
    titles = {"alphas": "alpha (t_end 200, and 12 800 for alpha = 1)", "kicks": "kicks from the alpha = 1 stall (t_end 400)",
              "ranks": "ranks (alpha = 1)", "seeds": "problem seeds (alpha = 1, rank 10)",
              "problems": "problems (50x50, rank 5, alpha = 1)", "rtols": "solver tolerance rtol (atol = rtol/100)"}
    for name, key in (("alphas", "alpha"), ("kicks", "kick"), ("ranks", "rank"), ("seeds", "seed"),
                      ("problems", "problem"), ("rtols", "rtol")):
        if name in out:
            parts += [f"### {titles[name]}", "", head.format(k=key)] + [fmt_row(key, r) for r in out[name]] + [""]
    if "alphas" in out:
        parts += ["### ‖∇L‖ over time", "", "| alpha | t_end | ‖∇L‖ at t = 0 / … / t_end |", "|---|---|---|"]
        parts += [f"| {r['alpha']:g} | {r['t_end']:g} | " + " / ".join(f"{s['grad_norm']:.4g} (t={s['t']:.0f})"
                                                               for s in r["samples"]) + " |" for r in out["alphas"]]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
