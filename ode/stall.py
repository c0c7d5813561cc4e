"""The spurious equilibrium of the online-PCA flow, linearised: when does it attract? (claim C6)

Gradient flow + the online-PCA flow (THEORY.md §2, §4.1),

.. math::  \\dot W = -\\mathcal P(\\mathcal P^*(G)),\\qquad \\dot P = -α\\nabla_P\\mathcal L_G(P),\\qquad G = ∇L(W),

has a manifold of equilibria with Pᵀ G = 0, PᵀP = I and G ≠ 0 (the blind set is invariant, C4).
Write the projected gradient y = PᵀG (r, k) in the orientation where P (dim, r) spans columns of
G (dim, k) (the LEFT side; the RIGHT side is the same with Gᵀ). At such a point (P*, G*),
using PᵀG̃ = 0 and P*ᵀP* = I, the linearisation of ∇_P𝓛 is −2G̃*(δPᵀG̃* + P*ᵀδG̃)ᵀ, the
orthogonality term contributes (·)P*ᵀG* = 0, and Ẇ = −P*y to first order, so y obeys a
closed linear equation [our derivation, checked against autodiff of the full field below]:

.. math::
    \\dot y = \\frac{2α}{\\lVert G^*\\rVert^2}\\, y\\,M - P^{*\\top}\\nabla^2L\\big[P^* y\\big],\\qquad M = G^{*\\top}G^*,

i.e. ẏ = (c K₁ − K₂) y with c = 2α/‖G*‖², K₁: y ↦ yM and K₂: y ↦ P*ᵀ∇²L[P*y], both symmetric
(K₂ positive definite when the Hessian is). The largest eigenvalue λ_max(α) of cK₁ − K₂ is
convex in α; the point attracts y for λ_max < 0 and repels for λ_max > 0, and the switch is at

.. math::  α^* = \\frac{\\lVert G^*\\rVert^2}{2\\,μ_{\\max}},\\qquad μ_{\\max} = \\max\\operatorname{eig}(K_1, K_2)
           \\ \\text{(generalised, symmetric-definite)} .

The other directions are neutral (the equilibria form a manifold) or decay (PᵀP → I at rate
8αλ), so the sign of λ_max decides whether nearby runs return to the stall.

**What this shows, and what it does not.** α* belongs to *one* equilibrium of the blind set (the
point the α = 1 run parks at) and to the side P projects: a square W projects its right side
("auto"), and the same construction with P on the left side parks elsewhere and gives another α*
(100×100: 3.84 right, 4.33 left). The kicked runs measure the *local* rate, fitted while the
perturbation grows or decays by e^{±4} (t ≤ 26 at 1.4α* on 100×100). Above α* the perturbation
grows, but run long the same run can fall back into the blind set at another equilibrium of the
manifold (100×100 at 1.4α*: back by t = 1200), and from the SVD start α = 4, 5, 6, 8 still stall on
that problem: α > α* makes *this* point locally unstable, it does not make runs converge. C6 reports
the long-horizon outcome on both sides of α* (:func:`long_horizon`; the 100×100 runs with ``--heavy``).
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from osd_theory.kernels import LEFT
from osd_theory.verdicts import stationarity_verdict

from ode.integrate import SimulationConfig
from ode.spec import RunSpec, build_run, run_spec

# (dim m×n, rank, t_end to reach the stall, simulated horizon cap); full = the 100×100 rank-10 case of
# benchmarks/subspace_stall.py and the issue; quick = a 30×30 rank-3 quadratic that stalls the same way
CASES = {"full": ((100, 100), 10, 200.0), "quick": ((30, 30), 3, 200.0)}
SIDE_FACTORS = (0.7, 1.4)    # α = factor·α* on either side of the prediction
LONG_T = 1200.0              # the long horizon of the kicked runs and of the SVD-start runs
BLIND_END = 1e-3             # ‖PᵀG‖/‖G‖ at or below this at the end of a long run: "in the blind set"
SVD_START_ALPHAS = (4.0, 5.0, 6.0, 8.0)   # --heavy: from the SVD start on the 100×100 case
KICK = 1e-4                  # ‖y₀‖/‖G‖: small enough to stay linear while growing e^4 ≈ 55 times
RATE_RTOL = 0.1              # measured vs predicted rate; the kick excites the predicted mode only


def stall_spec(dim, rank, t_end, alpha: float = 1.0, seed: int = 0) -> RunSpec:
    """GD + online PCA (α, λ = 0.1) on a κ = 10 quadratic from the SVD start (as subspace_stall.py)."""
    return RunSpec(optimizer="gd", projection="online_pca", proj_hp={"alpha": alpha, "pca_lambda": 0.1},
                   problem="quadratic", problem_hp={"condition": 10.0}, dim=dim, rank=rank, seed=seed,
                   config=SimulationConfig(t_end=t_end, rtol=1e-9, atol=1e-12, autodiff=False))


def _oriented(G, side):
    return G if side == LEFT else G.mT


def linearisation(problem, W: torch.Tensor, P: torch.Tensor, side: int) -> dict:
    """K₁, K₂ (N×N, N = r·k, acting on vec(y) row-major) and ‖G‖² at the point (W, P).

    K₂ is built from Hessian-vector products of ``problem.grad`` (forward-mode autodiff), so any
    problem works; both are symmetrised (their asymmetry, rounding only, is returned).
    """
    G = problem.grad(W)
    Gs = _oriented(G, side)                                # (dim, k)
    r, k = P.shape[1], Gs.shape[1]
    N = r * k
    M = Gs.mT @ Gs
    K1 = torch.kron(torch.eye(r, dtype=torch.float64), M)  # vec(y M) for row-major vec(y)
    basis = torch.eye(N, dtype=torch.float64).reshape(N, r, k)

    def hess_y(y):                                        # P*ᵀ ∇²L[P* y] in oriented coordinates
        d = P @ y                                          # (dim, k)
        dW = d if side == LEFT else d.mT
        hv = torch.func.jvp(problem.grad, (W,), (dW,))[1]
        return P.mT @ _oriented(hv, side)

    K2 = torch.stack([hess_y(basis[j]).reshape(-1) for j in range(N)], dim=1)
    asym = float((K2 - K2.mT).abs().max() / K2.abs().max())
    return {"K1": K1, "K2": 0.5 * (K2 + K2.mT), "G_norm2": float((G * G).sum()), "K2_asymmetry": asym, "shape": (r, k),
            "blind": float(torch.linalg.matrix_norm(P.mT @ Gs) / torch.linalg.matrix_norm(Gs)),
            "orth_defect": float(torch.linalg.matrix_norm(P.mT @ P - torch.eye(r, dtype=torch.float64)))}


def lambda_max(lin: dict, alpha: float) -> float:
    """Largest eigenvalue of (2α/‖G‖²)K₁ − K₂: the growth rate of y = PᵀG near the stall (1/time)."""
    J = (2.0 * alpha / lin["G_norm2"]) * lin["K1"] - lin["K2"]
    return float(torch.linalg.eigvalsh(J)[-1])


def critical_alpha(lin: dict) -> float:
    """α* = ‖G‖²/(2 μ_max) with μ_max the largest generalised eigenvalue of (K₁, K₂) (K₂ ≻ 0)."""
    from scipy.linalg import eigh
    mu = eigh(lin["K1"].numpy(), lin["K2"].numpy(), eigvals_only=True)[-1]
    return lin["G_norm2"] / (2.0 * float(mu))


def reduction_check(spec: RunSpec, W: torch.Tensor, P: torch.Tensor, lin: dict, alpha: float, seed: int = 0) -> float:
    """Relative difference between the reduced ẏ = (cK₁ − K₂)y and the linearised full field, along a
    random (δW, δP): d/dε [Ṗᵀ G + Pᵀ∇²L[Ẇ]] (oriented) at the point, by forward-mode autodiff."""
    system, rule, problem = build_run(spec)
    rule.alpha = alpha
    from ode.system import CoupledField
    field = CoupledField(system, rule, problem)
    side = rule.side_
    gen = torch.Generator().manual_seed(seed)
    dW = torch.randn(W.shape, generator=gen, dtype=torch.float64)
    dP = torch.randn(P.shape, generator=gen, dtype=torch.float64)
    E = torch.zeros((), dtype=torch.float64)

    def y_of(Wx, Px):
        return Px.mT @ _oriented(problem.grad(Wx), side)

    def ydot_of(Wx, Px):
        Wdot, Pdot, _ = field(0.0, (Wx, Px, E))
        Gs = _oriented(problem.grad(Wx), side)
        hv = torch.func.jvp(problem.grad, (Wx,), (Wdot,))[1]
        return Pdot.mT @ Gs + Px.mT @ _oriented(hv, side)

    dy = torch.func.jvp(y_of, (W, P), (dW, dP))[1]
    dydot = torch.func.jvp(ydot_of, (W, P), (dW, dP))[1]
    J = (2.0 * alpha / lin["G_norm2"]) * lin["K1"] - lin["K2"]
    pred = (J @ dy.reshape(-1)).reshape(dy.shape)
    return float(torch.linalg.matrix_norm(pred - dydot) / torch.linalg.matrix_norm(dydot))


def measured_rate(traj, skip: float = 0.2) -> float:
    """Least-squares slope of log ‖PᵀG‖ over t after the first ``skip`` of the run (1/time)."""
    t, y = traj["t"].numpy(), traj["proj_grad_norm"].numpy()
    keep = (t >= t[0] + skip * (t[-1] - t[0])) & (y > 0)
    return float(np.polyfit(t[keep], np.log(y[keep]), 1)[0])


def leading_mode(lin: dict, alpha: float) -> torch.Tensor:
    """Unit eigenvector (r, k) of (2α/‖G‖²)K₁ − K₂ for its largest eigenvalue."""
    J = (2.0 * alpha / lin["G_norm2"]) * lin["K1"] - lin["K2"]
    vec = torch.linalg.eigh(J)[1][:, -1]
    return vec.reshape(lin["shape"])


def kicked_run(spec: RunSpec, W: torch.Tensor, P: torch.Tensor, side: int, lin: dict, Y: torch.Tensor,
               alpha: float, t_end: float):
    """Run at ``alpha`` from (W + δW, P) with y₀ = P*ᵀ∇²L[δW] = KICK·‖G‖·Y, so that the projected
    gradient starts along the mode Y and grows or decays at that mode's eigenvalue.

    δW = P* Z with K₂ Z = y₀ (oriented): a kick of W inside span(P*), well conditioned (K₂ is the
    Hessian compressed to the subspace), where a kick of P solving δPᵀG = y₀ is not (GᵀG can be
    nearly singular at the stall).
    """
    y0 = KICK * math.sqrt(lin["G_norm2"]) * Y
    Z = torch.linalg.solve(lin["K2"], y0.reshape(-1)).reshape(y0.shape)
    dW = P @ Z
    W0 = W + (dW if side == LEFT else dW.mT)
    s = replace(spec, proj_hp={**spec.proj_hp, "alpha": alpha})
    return run_spec(s.with_config(t_end=t_end), W0=W0, P0=P)


def outcome(traj, g_stall: float | None = None) -> dict:
    """Where a long run ended: back in the blind set (at this or another equilibrium), stationary, or away."""
    g_end, ratio = traj.final("grad_norm"), traj.final("proj_grad_norm") / max(traj.final("grad_norm"), 1e-300)
    pg, g = traj["proj_grad_norm"], traj["grad_norm"]
    peak = float((pg / g.clamp_min(1e-300)).max())
    if stationarity_verdict(traj).stationary:
        where = "stationary (left the blind set and converged)"
    elif ratio <= BLIND_END:
        same = g_stall is not None and abs(g_end - g_stall) <= 1e-3 * g_stall
        where = ("in the blind set at the same equilibrium" if same else
                 f"back in the blind set at another equilibrium (||grad L|| {g_end:.4g})")
    else:
        where = f"away from the blind set (||P^T G||/||G|| = {ratio:.2g})"
    return {"t": traj.final("t"), "grad_norm": g_end, "blind_ratio": ratio, "peak_ratio": peak, "where": where}


def long_horizon(spec: RunSpec, W, P, side: int, lin: dict, alpha: float, g_stall: float, t_end: float = LONG_T) -> dict:
    """The kicked run of :func:`kicked_run` at ``alpha``, continued to ``t_end``: where it ends up."""
    traj = kicked_run(spec, W, P, side, lin, leading_mode(lin, alpha), alpha, t_end)
    return {"alpha": alpha, **outcome(traj, g_stall)}


def side_threshold(dim, rank, t_reach: float, side: str) -> dict:
    """Reach the stall with P on ``side`` and linearise there: α* of that side's equilibrium."""
    spec = replace(stall_spec(dim, rank, t_reach), side=side)
    reach = run_spec(spec)
    W, P = reach.final_y[0], reach.final_y[-2]
    _, rule, problem = build_run(spec)
    lin = linearisation(problem, W, P, rule.side_)
    return {"side": "left" if rule.side_ == LEFT else "right", "alpha_star": critical_alpha(lin), "blind": lin["blind"],
            "grad_norm": reach.final("grad_norm"), "lambda_max_at_1": lambda_max(lin, 1.0)}


def svd_start_outcomes(dim, rank, alphas, t_end: float = LONG_T) -> list[dict]:
    """From the SVD start at each α: where the run is at ``t_end``."""
    return [{"alpha": a, **outcome(run_spec(stall_spec(dim, rank, t_end, alpha=a)))} for a in alphas]


def c6(quick: bool = False, heavy: bool = False) -> dict:
    """Predict α* from the linearisation at the stall reached with α = 1, confirm on both sides."""
    dim, rank, t_reach = CASES["quick" if quick else "full"]
    full_dim, full_rank, _ = CASES["full"]
    statement = ("The blind set of the online-PCA flow is a manifold of equilibria that attracts: gradient flow + online "
                 f"PCA (alpha = 1) on a kappa = 10 quadratic ({full_dim[0]}x{full_dim[1]}, rank {full_rank}; --quick: "
                 "30x30, rank 3), from the SVD start, parks at one point of it (P^T G = 0, grad L != 0); the linearised "
                 "P^T G dynamics at that point, with P on the side 'auto' projects (the right side of a square W), "
                 "ydot = (2 alpha/||G||^2) y G^T G - P^T Hess[P y], predict the alpha* above which that point stops "
                 f"attracting locally; runs kicked off it decay at {SIDE_FACTORS[0]:g} alpha* and grow at "
                 f"{SIDE_FACTORS[1]:g} alpha* at the predicted local rates, and below alpha* they stay at that point "
                 "when run long; above alpha* where a long run ends is measured and reported, not predicted")
    spec = stall_spec(dim, rank, t_reach)
    reach = run_spec(spec)
    W, P = reach.final_y[0], reach.final_y[-2]
    _, rule, problem = build_run(spec)
    lin = linearisation(problem, W, P, rule.side_)
    alpha_star = critical_alpha(lin)
    lam_reach = lambda_max(lin, 1.0)
    red = reduction_check(spec, W, P, lin, alpha=SIDE_FACTORS[1] * alpha_star)
    sides = []
    for f in SIDE_FACTORS:
        a = f * alpha_star
        lam = lambda_max(lin, a)
        horizon = min(4.0 / abs(lam), 400.0)   # e^{±4}: well above the solver floor, still linear
        traj = kicked_run(spec, W, P, rule.side_, lin, leading_mode(lin, a), a, horizon)
        rate = measured_rate(traj)
        sides.append({"factor": f, "alpha": a, "predicted_rate": lam, "measured_rate": rate, "t_end": traj.final("t"),
                      "proj_grad_start": float(traj["proj_grad_norm"][0]), "proj_grad_end": traj.final("proj_grad_norm"),
                      "sign_ok": (rate < 0) == (lam < 0) and (rate > 0) == (lam > 0),
                      "rate_ok": abs(rate - lam) <= RATE_RTOL * abs(lam)})
    sv = stationarity_verdict(reach)
    is_stall = lin["blind"] <= 1e-6 and not sv.stationary and lam_reach < 0
    agree = red <= 1e-3
    g_stall = reach.final("grad_norm")
    # the other side of P, and the long horizon (below and above alpha*): the full run does them on the
    # quick-size case (the 100x100 ones take minutes: --heavy); --quick does neither
    other, longs, svd_runs, long_case = None, [], [], None
    if not quick:
        long_case = "full" if heavy else "quick"
        ldim, lrank, lreach = CASES[long_case]
        other = side_threshold(ldim, lrank, lreach, "left")
        if long_case == ("quick" if quick else "full"):
            lspec, lW, lP, llin, lg, lside = spec, W, P, lin, g_stall, rule.side_
        else:
            lspec = stall_spec(ldim, lrank, lreach)
            lreach_run = run_spec(lspec)
            lW, lP = lreach_run.final_y[0], lreach_run.final_y[-2]
            _, lrule, lproblem = build_run(lspec)
            llin, lg, lside = linearisation(lproblem, lW, lP, lrule.side_), lreach_run.final("grad_norm"), lrule.side_
        l_star = critical_alpha(llin)
        longs = [{"factor": f, **long_horizon(lspec, lW, lP, lside, llin, f * l_star, lg)} for f in SIDE_FACTORS]
        if heavy:
            svd_runs = svd_start_outcomes(full_dim, full_rank, SVD_START_ALPHAS)
    long_ok = all(x["where"] == "in the blind set at the same equilibrium" for x in longs if x["factor"] < 1)
    # the switch is at alpha*: lambda_max(alpha*) = 0 (to rounding of the eigenvalue problems), negative below,
    # positive above; the measured rates alone would agree with any alpha at which lambda_max is evaluated
    lam_star = lambda_max(lin, alpha_star)
    scale = max(abs(s["predicted_rate"]) for s in sides)
    switch_ok = abs(lam_star) <= 1e-6 * scale and sides[0]["predicted_rate"] < 0 < sides[-1]["predicted_rate"]
    ok = is_stall and agree and switch_ok and all(s["sign_ok"] and s["rate_ok"] for s in sides) and long_ok
    verdict = "holds" if ok else ("inconclusive" if not (is_stall and agree) else "violated")
    side_text = "; ".join(
        f"alpha = {s['factor']:g} alpha* = {s['alpha']:.3g}: local rate predicted {s['predicted_rate']:+.3g}, measured "
        f"{s['measured_rate']:+.3g} over t <= {s['t_end']:.3g} ({'decays' if s['measured_rate'] < 0 else 'grows'}: "
        f"||P^T G|| {s['proj_grad_start']:.2g} -> {s['proj_grad_end']:.2g})" for s in sides)
    evidence = (f"stall reached at alpha=1: ||grad L|| {float(reach['grad_norm'][0]):.4g} -> {g_stall:.4g}, "
                f"||P^T G||/||G|| = {lin['blind']:.1g} at t={reach.final('t'):.3g} "
                f"({'a stall' if is_stall else 'NOT a stall'}; lambda_max(1) = {lam_reach:+.3g}); "
                f"reduced model vs autodiff of the full field: rel diff {red:.1g}; predicted alpha* = {alpha_star:.4g} "
                f"(P on the {'left' if rule.side_ == LEFT else 'right'} side, at this equilibrium; lambda_max(alpha*) = "
                f"{lam_star:.1e}{'' if switch_ok else ', NOT the switch'}); " + side_text)
    if other is not None:
        ld = CASES[long_case][0]
        evidence += (f"; {ld[0]}x{ld[1]} with P on the left side parks at ||grad L|| {other['grad_norm']:.4g}, where "
                     f"alpha* = {other['alpha_star']:.4g} (another equilibrium, another threshold)")
        evidence += (f"; run to t = {LONG_T:g} from the kick ({ld[0]}x{ld[1]}, alpha* = {l_star:.4g}): "
                     + "; ".join(f"{x['factor']:g} alpha*: peak ||P^T G||/||G|| {x['peak_ratio']:.2g}, ends {x['where']}"
                                 for x in longs))
    if svd_runs:
        evidence += (f"; from the SVD start ({full_dim[0]}x{full_dim[1]}) by t = {LONG_T:g}: "
                     + "; ".join(f"alpha = {x['alpha']:g} {x['where']} (||grad L|| {x['grad_norm']:.3g})" for x in svd_runs))
    evidence += ("" if heavy else ("; --quick: no left side, no long horizon" if quick else
                                   "; --heavy runs the long horizon on 100x100 and the SVD start at alpha = 4, 5, 6, 8"))
    return {"claim": "C6", "statement": statement, "verdict": verdict, "evidence": evidence,
            "details": {"dim": list(dim), "rank": rank, "alpha_star": alpha_star, "lambda_max_at_1": lam_reach,
                        "lambda_max_at_alpha_star": lam_star, "switch_ok": switch_ok,
                        "side": "left" if rule.side_ == LEFT else "right", "other_side": other,
                        "long_horizon": longs, "svd_start": svd_runs,
                        "reduction_rel_diff": red, "blind": lin["blind"], "orth_defect": lin["orth_defect"],
                        "stall_grad_norm": g_stall,
                        "lambda_curve": [(a, lambda_max(lin, a)) for a in (0.5, 1.0, 2.0, alpha_star, 2 * alpha_star)],
                        "sides": sides}}
