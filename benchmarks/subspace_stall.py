"""The coupled OSD flow can be *attracted* to a spurious equilibrium (a counterexample to Theorem 4.5).

THEORY.md §2 shows that {Pᵀ∇L = 0} is invariant under the exact online-PCA flow and says it is unstable.
Coupled to the W flow it need not be: linearising y = Pᵀ∇L at such a point (P orthonormal, G = ∇L ≠ 0),

    ẏ ≈ y · 2α GᵀG/‖G‖²  −  Pᵀ ∇²L[P y]

the P flow pushes y out at rate ≤ 2α σ₁²(G)/‖G‖²_F while the W flow damps it at the curvature of L
inside span(P). On a 100×100 quadratic (κ = 10, Hessian eigenvalues in [0.1, 1]) with a flat-spectrum
gradient, σ₁²/‖G‖² ≈ 1/100: for α = 1 the damping wins and the run parks at ‖∇L‖ ≈ 42.6 for ever;
larger α escapes. This script runs gradient flow + online PCA (rank 10) from the usual start (P₀ = top-10
SVD basis of G₀) for several α and prints ‖∇L‖ and ‖Pᵀ∇L‖ at a few times.

    python benchmarks/subspace_stall.py                      # the recorded run (about 6 min on one core)
    python benchmarks/subspace_stall.py --alphas 1 --t-end 400

Prints a markdown table; ``--json FILE`` writes the rows.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(alpha: float, t_end: float, checkpoints: list[float]) -> dict:
    from ode import RunSpec, run_spec
    from ode.integrate import SimulationConfig
    spec = RunSpec(optimizer="gd", projection="online_pca", proj_hp={"alpha": alpha}, problem="quadratic",
                   problem_hp={"condition": 10.0}, dim=(100, 100), rank=10,
                   config=SimulationConfig(t_end=t_end, stop_residual=1e-6, autodiff=0))
    start = time.perf_counter()
    traj = run_spec(spec)
    t, g, pg = traj["t"], traj["grad_norm"], traj["proj_grad_norm"]
    samples = []
    for c in [0.0] + [c for c in checkpoints if c <= t_end]:
        i = int((t <= c).nonzero()[-1])
        samples.append({"t": float(t[i]), "grad_norm": float(g[i]), "proj_grad_norm": float(pg[i])})
    return {"alpha": alpha, "t_end": t_end, "seconds": time.perf_counter() - start, "accepted_steps": len(traj),
            "samples": samples, "final_grad_norm": traj.final("grad_norm")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    ap.add_argument("--t-end", type=float, default=200.0)
    ap.add_argument("--long", type=float, default=12800.0, help="also run alpha=1 to this time (0: skip)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    marks = [10, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800]
    rows = [run(a, args.t_end, marks) for a in args.alphas]
    if args.long:
        rows.append(run(1.0, args.long, marks))
    print("| alpha | t_end | accepted steps | wall s | ‖∇L‖ at t = 0 / … / t_end | ‖Pᵀ∇L‖ at t_end |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        trail = " / ".join(f"{s['grad_norm']:.4g} (t={s['t']:.0f})" for s in r["samples"])
        print(f"| {r['alpha']:g} | {r['t_end']:g} | {r['accepted_steps']} | {r['seconds']:.1f} | {trail} | "
              f"{r['samples'][-1]['proj_grad_norm']:.3g} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
