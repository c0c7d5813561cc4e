"""Claim C10: Muon as spectral Lion-𝒦 — H is a Lyapunov function, and the weight-decay limit obeys ‖λW‖₂ ≤ 1.

**A. Lyapunov.** Along the simulator's integration of Lion-𝒦 with a spectral 𝒦
(:mod:`osd_theory.hd.spectral`: ``muon`` in the subspace under each kind of projection rule —
online PCA, Oja, periodic SVD (GaLore), random jumps (RSO), smooth random and adversarial Γ — and
``muon_wd`` full rank) H never rises beyond solver error, the autodiff dH/dt is ≤ 0 pointwise and
the closed-form −Δ equals it (:func:`osd_theory.verdicts.lyapunov_verdict`, as claim C1).

**B. The limit of the weight-decay form.** On the box quadratic ½‖W − C‖² with ‖C‖₂ > 1/λ, the
limit point of ``muon_wd`` is the stationary point of f + (γ/αλ)𝒦*_δ(λW). With a spectral 𝒦 that
point shares C's singular vectors and solves, per singular value c,
w − c + (γ/α)(φ*)'(λw) = 0 on 0 ≤ λw < 1 (computed here by bisection, independently of the ODE):
the run must end there, inside the spectral-norm ball ‖λW‖₂ ≤ 1 with the constraint active, and
the point must approach the δ → 0 limit — C with its singular values clipped at 1/λ, the
projection onto the ball that Muon with decoupled weight decay predicts — as δ shrinks.

Tolerances: dopri5 at rtol 1e-8 / atol 1e-10; the final point within 1e-3·‖C‖ of the bisected one
(the ODE approaches it at a rate ~ the barrier's curvature, ≥ 1e-3 of the way left at t_end is a
failure); ‖λW‖₂ ≤ 1 + 1e-9. ``c10(quick=True)`` takes a few seconds on one core.
"""
from __future__ import annotations

import math

import torch

# (optimizer, hp, projection, proj_hp, problem, dim, rank, side)
RUNS = [
    ("muon", {"a": 1.0, "b": 0.1}, "online_pca", {"alpha": 2.0}, "quadratic", (4, 4), 2, "auto"),
    ("muon", {"a": 1.0, "b": 0.3}, "periodic_svd", {"tau": 0.5}, "lowrank_regression", (5, 4), 2, "auto"),
    ("muon", {"a": 2.0, "b": 0.1, "kinetic_fn": "spectral_pseudo_huber"}, "random_jump", {"tau": 0.5},
     "deep_linear", (6, 4), 2, "auto"),
    ("muon_wd", {"wd": 0.5}, "identity", {}, "box_quadratic", (3, 4), 3, "left"),
    ("muon", {"a": 1.0, "b": 0.2, "delta": 0.3}, "random_smooth", {"coef_seed": 3}, "quadratic", (5, 5), 2, "right"),
    ("muon", {"a": 1.0, "b": 0.1}, "oja", {"alpha": 2.0}, "lowrank_regression", (6, 4), 2, "auto"),
    ("muon", {"a": 1.0, "b": 0.1}, "adversarial", {}, "quadratic", (6, 6), 2, "auto"),
    ("muon", {"a": 1.0, "b": 0.1, "kinetic_fn": "spectral_l2"}, "online_pca_refresh", {"alpha": 2.0, "tau": 0.6},
     "quadratic", (4, 4), 2, "auto"),
    ("muon_wd", {"wd": 1.0, "gamma": 0.0, "kinetic_fn": "spectral_pseudo_huber"}, "identity", {}, "logistic",
     (4, 3), 3, "left"),
]
QUICK = (0, 1, 2, 3)
T_END = 2.0
LIMIT = dict(wd=0.5, t_end=60.0, deltas=(0.1, 0.03), scale=1.0, dim=(3, 4), seed=0)
POINT_RTOL = 1e-3
BALL_TOL = 1e-9


def smoothed_limit(C: torch.Tensor, system) -> torch.Tensor:
    """The stationary point of ½‖W − C‖² + (γ/αλ)𝒦*(λW) for a spectral 𝒦 (per singular value, bisection).

    w ↦ w − c + (γ/α)(φ*)'(λw) is increasing on [0, 1/λ) (φ* convex), negative at 0 for c > 0 and
    → +∞ at 1/λ for the smoothed absolute values: 200 halvings pin w to float64.
    """
    U, c, Vh = torch.linalg.svd(C.double(), full_matrices=False)
    lam, k, phi = system.wd, system.gamma / system.alpha, system.K.phi
    lo, hi = torch.zeros_like(c), torch.full_like(c, 1.0 / lam)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        f = mid - c + k * phi.conj_grad(lam * mid)
        lo, hi = torch.where(f < 0, mid, lo), torch.where(f < 0, hi, mid)
    return U @ (0.5 * (lo + hi)).unsqueeze(-1).mul(Vh)


def clipped(C: torch.Tensor, radius: float) -> torch.Tensor:
    """C with its singular values clipped at ``radius``: the projection onto {‖W‖₂ ≤ radius}."""
    U, c, Vh = torch.linalg.svd(C.double(), full_matrices=False)
    return U @ c.clamp(max=radius).unsqueeze(-1).mul(Vh)


def lyapunov_part(quick: bool) -> list[dict]:
    from ode.integrate import SimulationConfig
    from ode.refinement import refinement_test
    from ode.spec import RunSpec, run_spec
    from osd_theory.verdicts import lyapunov_verdict

    rows = []
    for i in (QUICK if quick else range(len(RUNS))):
        opt, hp, proj, php, prob, dim, r, side = RUNS[i]
        spec = RunSpec(optimizer=opt, hp=hp, projection=proj, proj_hp=php, problem=prob, dim=dim, rank=r, side=side,
                       config=SimulationConfig(t_end=T_END, rtol=1e-8, atol=1e-10, stop_residual=None))
        v = lyapunov_verdict(run_spec(spec))
        kind = "no rise above tol" if v.holds else refinement_test(spec).kind
        rows.append({"run": spec.label(), "kind": kind, "pointwise_ok": v.pointwise_ok,
                     "closed_form_ok": v.closed_form_ok, "max_pointwise_hdot": v.max_pointwise_hdot,
                     "mismatch": v.max_hdot_mismatch,
                     "ok": kind != "real violation" and kind != "inconclusive" and v.pointwise_ok
                     and v.closed_form_ok is True})
    return rows


def limit_part(quick: bool) -> dict:
    from ode.integrate import SimulationConfig, simulate
    from osd_theory.hd import make_system
    from osd_theory.problems import make_problem
    from osd_theory.projections import make_rule
    from osd_theory.verdicts import lyapunov_verdict

    p = LIMIT
    problem = make_problem("box_quadratic", *p["dim"], p["seed"], scale=p["scale"])
    C, lam = problem.C, p["wd"]
    target = clipped(C, 1.0 / lam)
    rows = []
    for delta in p["deltas"]:
        system = make_system("muon_wd", wd=lam, delta=delta)
        rule = make_rule("identity", rank=min(p["dim"]), side="left")
        rule.bind(problem.shape)
        traj = simulate(system, rule, problem, SimulationConfig(t_end=p["t_end"], rtol=1e-8, atol=1e-10,
                                                                stop_residual=None))
        W = traj.final_y[0]
        point = smoothed_limit(C, system)
        rows.append({"delta": delta, "spectral_norm_lambda_W": float(torch.linalg.matrix_norm(lam * W, ord=2)),
                     "dist_to_smoothed_point": float(torch.linalg.matrix_norm(W - point)),
                     "dist_to_clipped_C": float(torch.linalg.matrix_norm(W - target)),
                     "lyapunov": lyapunov_verdict(traj).holds})
    norm_C = float(torch.linalg.matrix_norm(C))
    top = float(torch.linalg.matrix_norm(C, ord=2))
    checks = {
        "constraint_active": top * lam > 1.0 and all(r["spectral_norm_lambda_W"] > 0.99 for r in rows),
        "inside_ball": all(r["spectral_norm_lambda_W"] <= 1.0 + BALL_TOL for r in rows),
        "at_smoothed_point": all(r["dist_to_smoothed_point"] <= POINT_RTOL * norm_C for r in rows),
        "towards_clipped_C": all(b["dist_to_clipped_C"] < a["dist_to_clipped_C"] for a, b in zip(rows, rows[1:])),
        "lyapunov": all(r["lyapunov"] for r in rows),
    }
    return {"problem": f"box_quadratic {p['dim'][0]}x{p['dim'][1]} (scale {p['scale']:g}), lambda = {lam:g}, "
                       f"||lambda C||_2 = {top * lam:.3g}", "t_end": p["t_end"], "rows": rows, "checks": checks}


def c10(quick: bool = False) -> dict:
    a, b = lyapunov_part(quick), limit_part(quick)
    bad = [r["run"] for r in a if not r["ok"]] + [f"limit: {k}" for k, ok in b["checks"].items() if not ok]
    worst = max(r["max_pointwise_hdot"] for r in a)
    mism = max((r["mismatch"] for r in a if math.isfinite(r["mismatch"])), default=math.nan)
    evidence = (f"{len(a)} runs of spectral Lion-K ({', '.join(sorted({r['run'].split(' on ')[0] for r in a}))}): "
                f"{sum(r['ok'] for r in a)} with H non-increasing; max pointwise dH/dt {worst:.2g}, "
                f"max |-Delta - autodiff dH/dt|/|Delta| {mism:.1g}; weight-decay limit on {b['problem']}: "
                + ", ".join(f"delta {r['delta']:g}: ||lambda W||_2 = {r['spectral_norm_lambda_W']:.6f}, "
                            f"|W - smoothed point| {r['dist_to_smoothed_point']:.1e}, "
                            f"|W - clip_sv(C, 1/lambda)| {r['dist_to_clipped_C']:.3g}" for r in b["rows"])
                + (f"; FAILED: {', '.join(bad)}" if bad else ""))
    return {"claim": "C10",
            "statement": ("Muon as spectral Lion-K: H is non-increasing along spectral Lion-K with and without weight "
                          "decay under every kind of projection rule, and the limit points of the weight-decay form "
                          "lie in the spectral-norm ball ||lambda W||_2 <= 1, at the stationary point of "
                          "f + (gamma/alpha lambda) K*(lambda W), which tends to the spectral clipping of the "
                          "unconstrained minimiser as delta -> 0"),
            "verdict": "holds" if not bad else "violated", "evidence": evidence,
            "details": {"lyapunov": a, "limit": b}}
