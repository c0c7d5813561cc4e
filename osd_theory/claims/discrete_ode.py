"""Claim C5: the discrete optimizers are discretisations of the HD systems, checked two ways.

**A. Monotonicity threshold.** Along real iterations of SGD-momentum, Adam (no bias correction),
Lion and Muon (exact SVD polar factor; Lion-𝒦 with 𝒦 = ‖·‖_*), H_k = c_L·L(W_k) + K(S_k) on the optimizer's *own* state (THEORY.md §3) is non-increasing
for every step size below a threshold and increases for every step size above it (the set of
monotone step sizes is an interval: the threshold is *sharp*); for heavy ball on a quadratic the
worst-case η* of the linear one-step map (per Hessian eigenvalue λ: A_λᵀQ_λA_λ ⪯ Q_λ) is a lower
bound for the observed threshold. "Non-increasing" allows 1e-6·|H_0| per step (float32 state).

**B. Order of convergence.** With the ODE's rates held fixed and the step h → 0 (a = (1−β)/h, so
β = 1 − ah), the discrete H_K at t = Kh converges to the simulator's H(t) at order 1 (an Euler
method), for each optimizer whose continuous counterpart the simulator has: SGD-momentum ↔
heavy ball, Adam (no bias correction, v₀ = 0) ↔ Adam, OSD (heavy-ball inner, SGD on P) ↔ heavy
ball + online-PCA flow, GaLore (stateless inner step, refresh every τ/h steps) ↔ gradient flow +
periodic SVD every τ. GaLore *with* momentum and its default "keep" switch is reported, not
asserted: its kept momentum lives in the coordinates of an SVD basis whose column signs are a
convention of the SVD routine (float32 in the optimizer, float64 in the simulator: they differ at
the first refresh here), so the two runs can move differently after a refresh
(:func:`galore_momentum_keep`). Not compared, and why: Lion (its ∇𝒦 = sign is discontinuous; the simulator
has only smoothed 𝒦, a different system) and RSO (it resets its state at every resample, a jump of
H the continuous system has no counterpart for, and draws P from its own generator).

**C. Which Euler, and when the refresh happens.** Order 1 holds for explicit and semi-implicit Euler
alike, and a refresh one step early or late moves P by O(h): part B cannot see either. So, at every h
of part B: the optimizer's H_K equals H_K of an independent float64 *semi-implicit* Euler loop on the
same HD system (S ← S + h·Ṡ(S, ĝ), then W ← W + h·D(S_new, ĝ); written here from ``state_rate`` and
``direction``, not from the optimizer's code) to :data:`STEP_RTOL`, while the *explicit* loop (D from
the old S) is reported as the negative control, which must differ by more (SGD-momentum, Adam); and
GaLore's refreshes happen at exactly the steps k = t_j/h of the simulator's recorded jump times t_j.

Uses only the public ``torch.optim`` API of :mod:`discrete` and the HD systems of
:mod:`osd_theory.discrete_steps`; :mod:`discrete` and :mod:`ode` are imported when the claim runs.
"""
from __future__ import annotations


import numpy as np
import torch

TOL = 1e-6               # per-step rise allowed, relative to |H_0| (float32 optimizer state)
MOMENTUM = 0.9
ORDER_RANGE = (0.8, 1.2)  # fitted slope of log|H_K − H(T)| against log h for an order-1 method
# optimizer H_K vs the float64 semi-implicit Euler loop: the same steps up to the optimizer's own rounding
# (its moments are kept in float32 here: measured ≤ 3e-8 relative at every h of part B); the explicit loop
# differs by O(h): 6.6e-3 (SGD-momentum) and 1.3e-2 (Adam) at the smallest h, measured
STEP_RTOL = 1e-6
# ‖retract_qr(P) − P‖/‖P‖ at the optimizer's final (orthonormal, float32) P: rounding, ~1e-7 (measured);
# a flipped column gives ≥ 2/√r
RETRACT_FIXED_TOL = 1e-5


# ------------------------------------------------------------------------------------- part A
def _tracked():
    """name -> (optimizer factory(params, lr), HD system of that discretisation at lr, HD state from the
    optimizer's state): discrete.claims.TRACKED, the one table of the discrete side's C5."""
    from discrete.claims import TRACKED
    return {name: TRACKED.get(name) for name in TRACKED}


def track_h(problem, make_opt, system, lr: float, steps: int, hd_state) -> list[float]:
    """H_k along ``steps`` iterations (discrete.claims.track_h: stops at the first rise above tolerance)."""
    from discrete.claims import track_h as track
    return track(problem, make_opt, system, lr, steps, hd_state)


def hd_state(opt, W, names: tuple[str, ...]) -> tuple:
    """The HD state of W from the optimizer's state: its moments, except heavy ball's M, which is
    (1 − μ)·torch's momentum buffer (discrete/inner.py's ``sgd`` keeps torch's buffer)."""
    st = opt.state[W]
    mu = float(opt.param_groups[0].get("momentum", 0.0))
    return tuple(((1 - mu) * st["momentum_buffer"] if n == "exp_avg" and "momentum_buffer" in st else st[n]).double()
                 for n in names)


def is_monotone(H: list[float]) -> bool:
    from discrete.claims import is_monotone as monotone
    return monotone(H)


def heavy_ball_worst_case_lr(eigs: torch.Tensor, momentum: float = MOMENTUM) -> float:
    """Largest torch lr with H(A x) ≤ H(x) for every state and Hessian eigenvalue (discrete.claims)."""
    from discrete.claims import heavy_ball_worst_case_lr as bound
    return bound(eigs, momentum)


def threshold_part(quick: bool) -> dict:
    """Part A: monotone step sizes per optimizer, and whether they form an interval (sharp threshold)."""
    from osd_theory.problems import make_problem
    problem = make_problem("quadratic", m=6 if quick else 8, n=6 if quick else 8, seed=0, condition=100.0)
    exps = list(range(-12, 2, 2 if quick else 1))
    steps = 80 if quick else 200
    out = {}
    for name, (make_opt, system_of, hd_state) in _tracked().items():
        mono = [is_monotone(track_h(problem, make_opt, system_of(2.0 ** e), 2.0 ** e, steps, hd_state)) for e in exps]
        first_fail = next((i for i, m in enumerate(mono) if not m), None)
        info = {"lrs": [2.0 ** e for e in exps], "monotone": mono,
                "largest_monotone_lr": 2.0 ** exps[first_fail - 1] if first_fail else None,
                "first_increasing_lr": 2.0 ** exps[first_fail] if first_fail is not None else None,
                "sharp": first_fail is not None and not any(mono[first_fail:]) and all(mono[:first_fail])}
        info["ok"] = bool(mono[0]) and info["sharp"]
        if name == "sgd_momentum":
            eigs = (torch.linalg.eigvalsh(problem.A)[:, None] * torch.linalg.eigvalsh(problem.B)[None, :]).flatten()
            info["predicted_worst_case_lr"] = heavy_ball_worst_case_lr(eigs)
            info["ok"] = info["ok"] and info["first_increasing_lr"] is not None and \
                info["predicted_worst_case_lr"] < info["first_increasing_lr"]
        out[name] = info
    return {"problem": f"quadratic {problem.m}x{problem.n}, condition 100", "steps": steps, "optimizers": out}


# ------------------------------------------------------------------------------------- part B
A_RATE, ALPHA_ODE, PCA_LAMBDA, TAU, B_RATE, E_ADAM = 1.0, 1.0, 0.1, 0.5, 2.0, 0.1
RANK = 2


EULER_COMPARED = ("sgd_momentum", "adam")   # full-space steps with a state: explicit and semi-implicit differ


def _cases():
    """name -> (ODE (system name, hp, rule name, rule hp), optimizer factory(params, h), HD system of the
    discretisation at h (:mod:`osd_theory.discrete_steps`: what the optimizer's step is the Euler step of))."""
    from discrete import OPTIMIZERS
    from osd_theory import discrete_steps as ds
    from osd_theory.hd import make_system
    a, mu = A_RATE, lambda h: 1.0 - A_RATE * h
    sub = dict(rank=RANK, proj_type="left")
    sgd_system = lambda h: ds.heavy_ball_system(ds.sgd_time_step(a * h * h, mu(h)), mu(h))
    return {
        "sgd_momentum": (("heavy_ball", {"a": a}, "identity", {}),
                         lambda ps, h: OPTIMIZERS["sgd"](ps, lr=a * h * h, momentum=mu(h)), sgd_system),
        "adam": (("adam", {"a": a, "b": B_RATE, "e": E_ADAM, "v0": 1e-12}, "identity", {}),
                 lambda ps, h: OPTIMIZERS["adamw"](ps, lr=h, betas=(1 - a * h, 1 - B_RATE * h), eps=E_ADAM,
                                                   weight_decay=0.0, bias_correction=False),
                 lambda h: ds.adam_system(h, 1 - a * h, 1 - B_RATE * h, E_ADAM)),
        "osd": (("heavy_ball", {"a": a}, "online_pca", {"alpha": ALPHA_ODE, "pca_lambda": PCA_LAMBDA}),
                lambda ps, h: OPTIMIZERS["osd"]([{"params": ps, **sub}], lr=a * h * h, inner="sgd", momentum=mu(h),
                                                alpha=ALPHA_ODE / (1 - mu(h)), pca_lambda=PCA_LAMBDA,
                                                proj_optimizer="sgd", proj_init="svd"), sgd_system),
        # OSD keeping P orthonormal (proj_retract: a tangent step, then the QR retraction) ↔ the tangent flow;
        # the retraction must not flip basis columns, which would flip the subspace momentum's meaning in W
        "osd_retract": (("heavy_ball", {"a": a}, "online_pca", {"alpha": ALPHA_ODE, "pca_lambda": PCA_LAMBDA,
                                                                "retract": True}),
                        lambda ps, h: OPTIMIZERS["osd"]([{"params": ps, **sub, "proj_retract": True}], lr=a * h * h,
                                                        inner="sgd", momentum=mu(h), alpha=ALPHA_ODE / (1 - mu(h)),
                                                        pca_lambda=PCA_LAMBDA, proj_optimizer="sgd", proj_init="svd"),
                        sgd_system),
        # GaLore with a stateless inner step (momentum 0: GD in the refreshed subspace) ↔ gradient flow
        # + periodic SVD; with momentum see galore_momentum_keep (not an ODE discretisation)
        "galore": (("gd", {}, "periodic_svd", {"tau": TAU}),
                   lambda ps, h: OPTIMIZERS["galore"]([{"params": ps, **sub, "update_proj_gap": int(round(TAU / h))}],
                                                      lr=h, inner="sgd", momentum=0.0),
                   lambda h: make_system("gd")),
    }


def galore_momentum_keep(quick: bool) -> dict:
    """GaLore with momentum and its default switch "keep" against heavy ball + periodic SVD.

    The kept momentum is stored in coordinates of the SVD basis, and an SVD's column signs are a
    convention: the optimizer takes the SVD of G in float32, the simulator in float64, and on this
    problem they return opposite signs at the first refresh (at t = 0 they agree), which flips the
    kept momentum in W-space. Reported, not asserted: the signs of diag(P_discreteᵀ P_ode) after the
    first refresh, and the error against h.
    """
    from discrete import OPTIMIZERS
    from ode import SimulationConfig, simulate
    from osd_theory.hd import make_system
    from osd_theory.problems import make_problem
    from osd_theory.projections import make_rule

    t_end = 1.5 * TAU
    problem = make_problem("quadratic", 6, 10, 0)
    system = make_system("heavy_ball", a=A_RATE)
    ode_run = simulate(system, make_rule("periodic_svd", rank=RANK, side="left", init="svd", tau=TAU), problem,
                       SimulationConfig(t_end=t_end, rtol=1e-11, atol=1e-13, autodiff=False))
    P_ode = ode_run.final_y[-2]
    rows = []
    for h in [2.0 ** -k for k in ((4, 6) if quick else (4, 6, 8))]:
        W = torch.nn.Parameter(problem.initial_point().clone())
        opt = OPTIMIZERS["galore"]([{"params": [W], "rank": RANK, "proj_type": "left", "update_proj_gap": int(round(TAU / h))}],
                                   lr=A_RATE * h * h, inner="sgd", momentum=1 - A_RATE * h)
        for _ in range(int(round(t_end / h))):
            W.grad = problem.grad(W.detach())
            opt.step()
        st = opt.state[W]
        signs = torch.sign(torch.diagonal(st["proj"].double().mT @ P_ode)).tolist()
        M = (A_RATE * h) * st["momentum_buffer"].double()     # heavy ball's M = (1 − μ)·torch's buffer, 1 − μ = a·h
        err = abs(float(system.hamiltonian(0.0, problem.loss(W.detach()), (M,))) - ode_run.final("H"))
        rows.append({"h": h, "column_signs": signs, "error": err})
    return {"t_end": t_end, "rows": rows}


def euler_reference(system, problem, h: float, steps: int, semi_implicit: bool = True) -> float:
    """H_K after ``steps`` float64 Euler steps of the full-space HD field (identity projection), from
    S = 0 at the problem's initial point: semi-implicit (state first, then W with the new state) or
    explicit (W with the old state). Built from ``state_rate`` and ``direction`` only."""
    W = problem.initial_point().clone()
    S = tuple(torch.zeros_like(W) for _ in system.state_names)
    for _ in range(steps):
        g = problem.grad(W)
        S_new = tuple(s + h * r for s, r in zip(S, system.state_rate(0.0, S, g)))
        W = W + h * system.direction(0.0, S_new if semi_implicit else S, g)
        S = S_new
    return float(system.hamiltonian(0.0, problem.loss(W), S))


def _step_recording(opt, W, k: int, refreshed: list[int]) -> float:
    """One ``opt.step()``; appends k (the steps completed before it) when the step replaced P, and returns
    ‖P_after − P_before‖/‖P_before‖ (0 before P exists): a smooth rule's P must move by O(step) per step."""
    before = opt.state[W]["proj"].clone() if "proj" in opt.state[W] else None
    opt.step()
    if before is None:
        return 0.0
    after = opt.state[W]["proj"]
    if not torch.equal(before, after):
        refreshed.append(k)
    return float(torch.linalg.matrix_norm(after - before) / torch.linalg.matrix_norm(before))


def order_part(quick: bool) -> dict:
    """Part B: |H_K − H(T)| against h for each compared optimizer, and the fitted order."""
    from ode import SimulationConfig, simulate
    from osd_theory.hd import make_system
    from osd_theory.problems import make_problem
    from osd_theory.projections import make_rule

    t_end = 2.0 if quick else 4.0
    hs = [2.0 ** -k for k in (range(3, 7) if quick else range(3, 9))]
    problem = make_problem("quadratic", 6, 10, 0)
    out = {}
    for name, ((sys_name, hp, rule_name, rule_hp), make_opt, discrete_system) in _cases().items():
        system = make_system(sys_name, **hp)
        side = {"side": "left"} if rule_name == "identity" else {"rank": RANK, "side": "left", "init": "svd"}
        rule = make_rule(rule_name, **side, **rule_hp)
        ode_run = simulate(system, rule, problem,
                           SimulationConfig(t_end=t_end, rtol=1e-11, atol=1e-13, autodiff=False))
        H_T = ode_run.final("H")
        errors, euler, refresh, p_moves, retract_fixed = [], [], [], [], []
        ode_jumps = [float(t) for t in ode_run.jumps["t"]]
        for h in hs:
            W = torch.nn.Parameter(problem.initial_point().clone())
            opt = make_opt([W], h)
            steps, refreshed, p_move = int(round(t_end / h)), [], 0.0
            for k in range(steps):
                W.grad = problem.grad(W.detach())
                p_move = max(p_move, _step_recording(opt, W, k, refreshed))
            # H_K with the HD system the optimizer's step discretises (discrete_steps), on its own state:
            # if that system's rates were not the ODE's, H_K could not converge to H(T)
            dsys = discrete_system(h)
            S = hd_state(opt, W, dsys.state_names)
            H_K = float(dsys.hamiltonian(t_end, problem.loss(W.detach()), S))
            errors.append(abs(H_K - H_T))
            if name in EULER_COMPARED:
                semi = euler_reference(dsys, problem, h, steps, semi_implicit=True)
                expl = euler_reference(dsys, problem, h, steps, semi_implicit=False)
                euler.append({"h": h, "semi_implicit_rel": abs(H_K - semi) / abs(semi),
                              "explicit_rel": abs(H_K - expl) / abs(expl)})
            if rule.smooth:
                p_moves.append(p_move)
            if getattr(rule, "retract", False):
                # the retraction of an orthonormal P is P itself (QR with diag(R) > 0): a retraction that
                # flips columns changes what the subspace moments mean in W (m is in P's coordinates)
                from osd_theory.projections.base import retract_qr
                # (every column-sign pattern of it: an unfixed QR returns one orientation whatever the input's)
                P_end = opt.state[W]["proj"].double()
                signs = torch.tensor([[1.0 - 2.0 * ((j >> c) & 1) for c in range(P_end.shape[1])]
                                      for j in range(2 ** P_end.shape[1])], dtype=P_end.dtype)
                retract_fixed.append(max(float(torch.linalg.matrix_norm(retract_qr(P_end * d) - P_end * d) /
                                               torch.linalg.matrix_norm(P_end)) for d in signs))
            if rule.jumps:
                expected = [int(round(t / h)) for t in ode_jumps]
                refresh.append({"h": h, "steps": refreshed, "expected": expected, "ok": refreshed == expected})
        slope = float(np.polyfit(np.log(hs), np.log(errors), 1)[0])
        euler_ok = all(e["semi_implicit_rel"] <= STEP_RTOL < e["explicit_rel"] for e in euler)
        # a smooth P moves by O(h) per step: its largest move must shrink with h (halve per halving, within
        # 30 %); and an orthonormal P must be the retraction's fixed point (a QR without its sign fix flips
        # columns; on this run that happens at the first step, before P exists to compare with, so the
        # fixed-point test, not the per-step move, is what sees it — and the order, measured 0.65 with it)
        smooth_ok = all(m2 <= 0.65 * m1 for m1, m2 in zip(p_moves, p_moves[1:])) and \
            all(x <= RETRACT_FIXED_TOL for x in retract_fixed)
        out[name] = {"ode": f"{sys_name}+{rule_name}", "H_T": H_T, "hs": hs, "errors": errors, "order": slope,
                     "euler": euler, "refresh": refresh, "ode_jump_times": ode_jumps, "p_max_step": p_moves, "retract_fixed_point": retract_fixed,
                     "smooth_ok": smooth_ok,
                     "order_ok": ORDER_RANGE[0] <= slope <= ORDER_RANGE[1], "euler_ok": euler_ok,
                     "refresh_ok": all(r["ok"] for r in refresh)}
        out[name]["ok"] = out[name]["order_ok"] and euler_ok and out[name]["refresh_ok"] and smooth_ok
    return {"problem": "quadratic 6x10, condition 100", "t_end": t_end,
            "not_compared": {"lion": "sign is discontinuous; the simulator has smoothed K only",
                             "muon": "the polar factor is discontinuous; the simulator has smoothed spectral K only",
                             "rso": "resets its state at every resample and draws P from its own generator"},
            "optimizers": out}


def c5(quick: bool = False) -> dict:
    """Both parts; the verdict is "holds" only if every optimizer passes both that apply to it."""
    a, b, keep = threshold_part(quick), order_part(quick), galore_momentum_keep(quick)
    bad = [f"{n} (threshold)" for n, d in a["optimizers"].items() if not d["ok"]] + \
          [f"{n} ({part})" for n, d in b["optimizers"].items() for part in ("order", "euler", "refresh", "smooth")
           if not d[f"{part}_ok"]]
    verdict = "holds" if not bad else "violated"

    def thr(n, d):
        if d["first_increasing_lr"] is None:
            return f"{n}: monotone at every lr tried"
        return (f"{n}: monotone up to lr {d['largest_monotone_lr']:.3g}, increases from {d['first_increasing_lr']:.3g} "
                f"({'sharp' if d['sharp'] else 'NOT sharp: monotone again above'})")

    hb = a["optimizers"]["sgd_momentum"]
    evidence = ("; ".join(thr(n, d) for n, d in a["optimizers"].items())
                + f" (heavy-ball worst-case bound {hb['predicted_worst_case_lr']:.3g}); H_K vs simulator H(t={b['t_end']:g}) "
                  f"as h = {b['optimizers']['adam']['hs'][0]:g} -> {b['optimizers']['adam']['hs'][-1]:.3g}: "
                + ", ".join(f"{n} order {d['order']:.2f} (error {d['errors'][0]:.1e} -> {d['errors'][-1]:.1e})"
                            for n, d in b["optimizers"].items())
                + f" (expected {ORDER_RANGE[0]:g}-{ORDER_RANGE[1]:g}); "
                + "; ".join(f"{n}: H_K vs float64 semi-implicit Euler max rel diff "
                            f"{max(e['semi_implicit_rel'] for e in d['euler']):.1e} (tol {STEP_RTOL:g}), vs explicit Euler "
                            f"(negative control) min {min(e['explicit_rel'] for e in d['euler']):.1e}"
                            for n, d in b["optimizers"].items() if d["euler"])
                + "; " + "; ".join(f"{n}: refreshes at steps k = t_j/h of the simulator's jumps t_j = "
                                   f"{', '.join(f'{t:g}' for t in d['ode_jump_times'])} at "
                                   f"{sum(r['ok'] for r in d['refresh'])}/{len(d['refresh'])} step sizes"
                                   + ("" if d["refresh_ok"] else " (MISMATCH: " + ", ".join(
                                       f"h={r['h']:g}: {r['steps']} vs {r['expected']}" for r in d["refresh"] if not r["ok"]) + ")")
                                   for n, d in b["optimizers"].items() if d["refresh"])
                + "; largest per-step move of a smooth P, max ||P_k+1 - P_k||/||P_k|| as h halves: "
                + "; ".join(f"{n} " + " -> ".join(f"{x:.1e}" for x in d["p_max_step"]) for n, d in b["optimizers"].items()
                            if d["p_max_step"])
                + " (must halve with h, within 30 %)"
                + "".join(f"; {n}: retraction of its final P moves it by {max(d['retract_fixed_point']):.1e} relative "
                          f"(tol {RETRACT_FIXED_TOL:g}: an orthonormal P is the retraction's fixed point)"
                          for n, d in b["optimizers"].items() if d["retract_fixed_point"])
                + "; not compared: lion, muon, rso; reported: GaLore with "
                  f"momentum (switch keep) vs heavy ball + periodic SVD, signs of the optimizer's basis columns against the "
                  f"simulator's after the first refresh "
                  + ", ".join(f"({', '.join('+' if x > 0 else '-' for x in r['column_signs'])}) at h={r['h']:g}" for r in keep["rows"])
                  + ", H error " + " -> ".join(f"{r['error']:.2g}" for r in keep["rows"])
                + (f"; FAILED: {', '.join(bad)}" if bad else ""))
    return {"claim": "C5",
            "statement": ("The discrete optimizers discretise the HD systems: along real iterations H_k = c_L L(W_k) + "
                          "K(S_k) on the optimizer's own state is non-increasing exactly below a sharp step-size "
                          "threshold (SGD-momentum, Adam, Lion, Muon; for heavy ball above the worst-case linear bound), and "
                          "H_k converges to the simulator's H(t) at order 1 in the step (SGD-momentum, Adam, OSD, GaLore without momentum), "
                          "the step is the semi-implicit Euler step of the HD field (not the explicit one), and GaLore "
                          "refreshes at the simulator's jump times"),
            "verdict": verdict, "evidence": evidence, "details": {"threshold": a, "order": b, "galore_momentum_keep": keep}}
