"""Claim C5: discrete-time Lyapunov tracking along real optimizer iterations.

**C5.** Along the iterations of the discrete optimizers (SGD with momentum, Adam without bias
correction, Lion, Muon with the exact SVD polar factor), the HD Hamiltonian evaluated on the optimizer's *own* state,
H_k = c_L·L(W_k) + K(S_k) (THEORY.md §3: heavy ball ‖M‖²/2a; Adam ⟨m/(√v+e), m⟩/2a; Lion-𝒦
with 𝒦 = ‖·‖₁, c_L = a; Muon: Lion-𝒦 with 𝒦 = ‖·‖_*, M = −buf), is non-increasing for small step sizes and stops decreasing above a
finite critical step size η*. For heavy ball on a quadratic, the worst-case η* of the linear
one-step map (per Hessian eigenvalue λ: A_λᵀQ_λA_λ ⪯ Q_λ) is a lower bound for the observed one.

The ODE guarantee (Ḣ ≤ 0) is continuous-time; a discrete step inherits it only up to O(η²)
relative defects, so "non-increasing" is tested with a tolerance of 1e-6·|H_0| (float32 state).
Each optimizer is run by its ``discrete`` class; H uses the HD system the step is the Euler step
of (:mod:`osd_theory.discrete_steps`), so the state and the energy cannot drift apart.

``c5(quick=False)`` runs in a few seconds on one CPU core.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from discrete.full_rank import AdamW, Lion, Muon, SGDMomentum
from osd_theory import discrete_steps as ds
from osd_theory.problems import make_problem
from osd_theory.registry import Registry

TOL = 1e-6
MOMENTUM = 0.9

# name -> (optimizer factory(params, lr), HD system whose Euler step it is, at lr,
#          the HD state S from the optimizer's state)
TRACKED: Registry[tuple[Callable, Callable, Callable]] = Registry("tracked optimizer")
TRACKED.add("sgd_momentum", (lambda ps, lr: SGDMomentum(ps, lr=lr, momentum=MOMENTUM, nonfinite="skip"),
                             lambda lr: ds.heavy_ball_system(ds.sgd_time_step(lr, MOMENTUM), MOMENTUM),
                             lambda st: ((1 - MOMENTUM) * st["momentum_buffer"],)))   # M = (1−μ)·torch's buffer
TRACKED.add("adam", (lambda ps, lr: AdamW(ps, lr=lr, weight_decay=0.0, bias_correction=False, nonfinite="skip"),
                     lambda lr: ds.adam_system(lr, 0.9, 0.999, 1e-8),
                     lambda st: (st["exp_avg"], st["exp_avg_sq"])))
TRACKED.add("lion", (lambda ps, lr: Lion(ps, lr=lr, nonfinite="skip"),
                     lambda lr: ds.lion_system(lr, 0.9, 0.99),
                     lambda st: (st["exp_avg"],)))
# Muon with the exact polar factor (SVD), no decay: Lion-𝒦 with 𝒦 = ‖·‖_*, M = −torch's buffer
TRACKED.add("muon", (lambda ps, lr: Muon(ps, lr=lr, momentum=MOMENTUM, weight_decay=0.0, orthogonalize="svd",
                                        nonfinite="skip"),
                     lambda lr: ds.muon_system(lr, MOMENTUM, True),
                     lambda st: (-st["momentum_buffer"],)))


def track_h(problem, make_opt: Callable, system, lr: float, steps: int, hd_state: Callable) -> list[float]:
    """H_k along ``steps`` iterations (stops early at the first increase above tolerance or at overflow)."""
    W = torch.nn.Parameter(problem.initial_point().float())
    opt = make_opt([W], lr)
    H = []
    for k in range(steps + 1):
        Wd = W.detach().double()
        st = opt.state[W]
        S = tuple(s.double() for s in hd_state(st)) if st else tuple(torch.zeros_like(Wd) for _ in system.state_names)
        H.append(float(system.hamiltonian(0.0, problem.loss(Wd), S)))
        if k == steps or not math.isfinite(H[-1]) or (k > 0 and H[-1] - H[-2] > TOL * abs(H[0])):
            break
        W.grad = problem.grad(Wd).float()
        opt.step()
    return H


def is_monotone(H: list[float]) -> bool:
    return all(math.isfinite(h) for h in H) and all(b - a <= TOL * abs(H[0]) for a, b in zip(H, H[1:]))


def heavy_ball_worst_case_lr(eigs: torch.Tensor, momentum: float = MOMENTUM) -> float:
    """Largest torch lr with H(A x) ≤ H(x) for every state and every Hessian eigenvalue (bisection in log lr).

    Per mode: x = (w, M), M' = μM + (1−μ)λw, w' = w − hM' with h = lr/(1−μ), H = ½(λw² + M²/a),
    a = (1−μ)/h; monotone for all x iff AᵀQA − Q ⪯ 0 with Q = diag(λ, 1/a).
    """
    def ok(lr: float) -> bool:
        h = lr / (1 - momentum)
        a = (1 - momentum) / h
        for lam in eigs.tolist():
            A = torch.tensor([[1 - h * (1 - momentum) * lam, -h * momentum], [(1 - momentum) * lam, momentum]],
                             dtype=torch.float64)
            Q = torch.diag(torch.tensor([lam, 1 / a], dtype=torch.float64))
            if torch.linalg.eigvalsh(A.T @ Q @ A - Q).max() > 1e-12 * float(Q.max()):
                return False
        return True

    lo, hi = 2.0 ** -20, 2.0 ** 6
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def c5(quick: bool = False) -> dict:
    problem = make_problem("quadratic", m=6 if quick else 8, n=6 if quick else 8, seed=0, condition=100.0)
    exps = list(range(-12, 2, 2 if quick else 1))
    steps = 80 if quick else 200
    details: dict = {"problem": "quadratic 8x8, condition 100" if not quick else "quadratic 6x6, condition 100",
                     "steps": steps, "tolerance": f"{TOL:g}*|H_0|", "lrs": [2.0 ** e for e in exps], "optimizers": {}}
    verdicts = []
    for name in TRACKED:
        make_opt, system_of, hd_state = TRACKED.get(name)
        mono = [is_monotone(track_h(problem, make_opt, system_of(2.0 ** e), 2.0 ** e, steps, hd_state)) for e in exps]
        first_fail = next((i for i, m in enumerate(mono) if not m), None)
        downward_closed = first_fail is None or not any(mono[first_fail:])
        info = {"monotone": mono, "largest_monotone_lr": 2.0 ** exps[first_fail - 1] if first_fail else None,
                "first_increasing_lr": 2.0 ** exps[first_fail] if first_fail is not None else None,
                "threshold_is_sharp": downward_closed}
        ok = bool(mono[0]) and first_fail is not None
        if name == "sgd_momentum":
            eigs = (torch.linalg.eigvalsh(problem.A)[:, None] * torch.linalg.eigvalsh(problem.B)[None, :]).flatten()
            pred = heavy_ball_worst_case_lr(eigs)
            info["predicted_worst_case_lr"] = pred
            ok = ok and pred < info["first_increasing_lr"]
        details["optimizers"][name] = info
        verdicts.append("holds" if ok else ("inconclusive" if mono[0] and first_fail is None else "violated"))
    verdict = "holds" if all(v == "holds" for v in verdicts) else (
        "violated" if "violated" in verdicts else "inconclusive")
    parts = [f"{n}: monotone up to lr {d['largest_monotone_lr']:.3g}, increases from {d['first_increasing_lr']:.3g}"
             if d["first_increasing_lr"] and d["largest_monotone_lr"] else f"{n}: {d['monotone']}"
             for n, d in details["optimizers"].items()]
    hb = details["optimizers"]["sgd_momentum"]
    evidence = "; ".join(parts) + f" (heavy-ball worst-case bound {hb['predicted_worst_case_lr']:.3g})"
    return {"claim": "C5",
            "statement": "Along real discrete iterations, H_k = c_L L(W_k) + K(S_k) on the optimizer's own state "
                         "is non-increasing below a finite step size and increases above it (SGD-momentum, Adam, "
                         "Lion); for heavy ball the worst-case linear bound lies below the observed threshold.",
            "verdict": verdict, "evidence": evidence, "details": details}
