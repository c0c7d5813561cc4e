"""Claim C7: the optimizers under stochastic gradients (beyond the paper, which is deterministic).

The discrete optimizers (``discrete.OPTIMIZERS``: ``adamw`` full rank, ``galore`` SVD every T steps,
``osd`` online PCA, ``rso`` random subspaces; Adam inner step, the shipped defaults otherwise) run
on gradients ĝ_k = ∇L(W_k) + ξ_k with noise of a chosen covariance, one parameter per seed (each
with its own noise stream). Per seed, the *floor* is the mean of L(W_k) (and of
H_k = L(W_k) + K(S_k), K the Adam kinetic energy ⟨m/(√v+ε), m⟩·lr/(2(1−β₁)) on the optimizer's own
moments) over the last quarter of a fixed ODE-time horizon t = k·lr; "plateaued" means the
previous quarter's mean is within 25 % of it or not significantly above it. Intervals are 95 %
Student-t intervals over seeds.

Two settings:

* **isotropic** — the κ = 10 quadratic (8×8), ξ ~ N(0, σ²I), σ = 0.3. Prediction: every optimizer
  descends to a floor that shrinks with the step size, E[L]_∞ ∝ lr^p with p ≈ 1 (for Adam near
  the optimum the step is lr·(signal + noise)/σ, an SGD with step lr/σ: floor ∝ lr·σ). GoLore
  (arXiv:2410.11289) proves GaLore converges when the noise is isotropic.
* **golore** — GoLore's counterexample (their ``exp/main.py``): W (10×10), L = ½‖W_top − W*_top‖²
  depends only on the first n − r = 6 rows, and ξ = ±σ·[0 0; 0 I_r] (random sign, r = 4, σ = 1)
  lives in the last r rows and columns, orthogonal to every true gradient. Once σ exceeds the
  gradient's top singular value, the top-r left singular subspace of ∇L + ξ is the noise rows,
  so GaLore's P is blind to ∇L and its progress stops: a floor that does **not** shrink with
  the step size (their theorem; reproduced here). Reported with it: full-rank Adam (the noise
  never touches L's rows), RSO's random subspaces (E[PPᵀ] = (r/m)I: no blind direction), and
  OSD's online PCA — whose target, the top-r eigenspace of E[G̃G̃ᵀ], is the noise rows too.

Needs :mod:`discrete` (imported when the claim runs).
"""
from __future__ import annotations

import math

import numpy as np
import torch

RANK = 4
PLATEAU_RTOL = 0.25
AT_OPTIMUM = 1e-5     # an E[L] floor below this (L₀ ≈ 30 in the GoLore setting) is "reached the optimum"
SHRINK_P_MIN = 0.3    # "the floor shrinks with lr": the lower end of p's interval is above this
STALL_P_MAX = 0.5     # "the floor does not shrink": the upper end of p's interval is below this
# isotropic floor ∝ lr^p, p ≈ 1: p's 95 % interval must lie inside this band. Measured (full: 3 step sizes,
# 8 seeds): AdamW [0.92, 1.04], GaLore [0.85, 1.01], OSD [0.81, 0.95], RSO [0.94, 1.08]; quick (2 step
# sizes, 4 seeds) intervals are about twice as wide
P_BAND = {"full": (0.7, 1.3), "quick": (0.3, 1.7)}
# AdamW's isotropic floor, predicted: near the optimum v ≈ σ² (the noise dominates the gradient), so the
# step is lr·m/σ — SGD (with an EMA momentum) of step η = lr/σ on gradients with noise variance σ² per
# entry, whose stationary E[L] = ½tr(HΣ) with HΣ + ΣH = ησ²I is ησ²d/4 = lr·σ·d/4 for any Hessian H
# (small-η limit; d = m·n). [our derivation] Measured 4-6 % below it at lr = 0.04 ... 0.01.
FLOOR_RTOL = 0.15


class Isotropic:
    """κ = 10 quadratic with i.i.d. Gaussian gradient noise of standard deviation σ."""

    name = "isotropic"

    def __init__(self, sigma: float = 0.3, m: int = 8, n: int = 8):
        from osd_theory.problems import make_problem
        self.problem = make_problem("quadratic", m, n, 0, condition=10.0)
        self.sigma = sigma
        self.describe = f"quadratic {m}x{n} kappa=10, xi ~ N(0, {sigma:g}^2 I)"

    def start(self, gen):
        return self.problem.initial_point().clone()

    def loss(self, W):
        return self.problem.loss(W)

    def grad(self, W):
        return self.problem.grad(W)

    def noise(self, W, gen):
        return self.sigma * torch.randn(W.shape, generator=gen, dtype=torch.float64)


class GoLore:
    """GoLore's counterexample: L on the first n − r rows only, noise ±σ on the last r rows and columns."""

    name = "golore"

    def __init__(self, n: int = 10, r: int = RANK, sigma: float = 1.0):
        gen = torch.Generator().manual_seed(0)
        self.n, self.r, self.sigma = n, r, sigma
        self.W_top = torch.zeros(n - r, n, dtype=torch.float64)
        self.W_top[:, :n - r] = torch.randn(n - r, n - r, generator=gen, dtype=torch.float64)
        self.E = torch.zeros(n, n, dtype=torch.float64)
        self.E[n - r:, n - r:] = torch.eye(r, dtype=torch.float64)
        self.describe = f"GoLore counterexample {n}x{n}: L on rows 1-{n - r}, xi = +-{sigma:g} [0 0; 0 I_{r}]"

    def start(self, gen):
        W = torch.randn(self.n, self.n, generator=gen, dtype=torch.float64)
        W[: self.n - self.r] += self.W_top
        return W

    def loss(self, W):
        D = W[: self.n - self.r] - self.W_top
        return 0.5 * (D * D).sum()

    def grad(self, W):
        G = torch.zeros_like(W)
        G[: self.n - self.r] = W[: self.n - self.r] - self.W_top
        return G

    def noise(self, W, gen):
        sign = 2.0 * float(torch.randint(0, 2, (1,), generator=gen)) - 1.0
        return sign * self.sigma * self.E


def _optimizer(name: str, params, lr: float):
    from discrete import OPTIMIZERS
    sub = {"rank": RANK, "proj_type": "left"}
    groups = {"adamw": [{"params": params}],
              "galore": [{"params": params, **sub, "update_proj_gap": 20}],
              "osd": [{"params": params, **sub}],
              "rso": [{"params": params, **sub, "update_proj_gap": 20}]}[name]
    return OPTIMIZERS[name](groups, lr=lr, weight_decay=0.0)     # the floors are derived without decay


def _kinetic(state: dict, lr: float, beta1: float = 0.9, eps: float = 1e-8) -> float:
    """⟨m/(√v+ε), m⟩/(2a), a = (1−β₁)/lr: the Adam HD kinetic energy of the optimizer's own moments."""
    if "exp_avg" not in state:
        return 0.0
    m, v = state["exp_avg"].double(), state["exp_avg_sq"].double()
    return float((m * m / (v.sqrt() + eps)).sum()) * lr / (2 * (1 - beta1))


def run_floors(setting, name: str, lr: float, seeds: int, horizon: float, seed: int = 1) -> dict:
    """Per-seed means of L and H over the last two quarters of ``horizon / lr`` steps."""
    gen = torch.Generator().manual_seed(seed)
    Ws = [torch.nn.Parameter(setting.start(gen)) for _ in range(seeds)]
    H0 = float(np.mean([float(setting.loss(W.detach())) for W in Ws]))   # moments start at 0: H_0 = L(W_0)
    opt = _optimizer(name, Ws, lr)
    steps = int(round(horizon / lr))
    every = max(1, steps // 400)
    L = {q: np.zeros(seeds) for q in (2, 3)}
    H = np.zeros(seeds)
    counts = {2: 0, 3: 0}
    for k in range(steps):
        for W in Ws:
            W.grad = setting.grad(W.detach()) + setting.noise(W, gen)
        opt.step()
        q = 4 * k // steps
        if q >= 2 and k % every == 0:
            counts[q] += 1
            for i, W in enumerate(Ws):
                loss = float(setting.loss(W.detach()))
                L[q][i] += loss
                if q == 3:
                    H[i] += loss + _kinetic(opt.state[W], lr)
    return {"floor": L[3] / counts[3], "previous": L[2] / counts[2], "H_floor": H / counts[3], "H0": H0, "steps": steps}


def _interval(x: np.ndarray) -> tuple[float, float]:
    """(mean, half-width of the 95 % Student-t interval)."""
    from scipy.stats import t as student
    n = len(x)
    return float(np.mean(x)), float(student.ppf(0.975, n - 1) * np.std(x, ddof=1) / math.sqrt(n)) if n > 1 else math.inf


def study(setting, lrs, seeds: int, horizon: float) -> dict:
    """Floors of every optimizer at every lr, the fitted exponent p (floor ∝ lr^p) per seed, intervals."""
    out = {}
    for name in ("adamw", "galore", "osd", "rso"):
        runs = [run_floors(setting, name, lr, seeds, horizon) for lr in lrs]
        floors = np.stack([r["floor"] for r in runs])          # (lrs, seeds)
        prev = np.stack([r["previous"] for r in runs])
        H_floors = np.stack([r["H_floor"] for r in runs])
        mean_floor = floors.mean(axis=1)
        # plateaued: the last quarter is within 25 % of the previous one, or their difference is not
        # significant (inside its 95 % interval over seeds)
        drops = [_interval(prev[j] - floors[j]) for j in range(len(lrs))]
        plateau = all(abs(d) <= PLATEAU_RTOL * f + 1e-12 or abs(d) <= hw for (d, hw), f in zip(drops, mean_floor))
        at_optimum = bool(mean_floor.max() < AT_OPTIMUM)
        slope = lambda F, i: np.polyfit(np.log(lrs), np.log(F[:, i]), 1)[0]
        p, p_hw = _interval(np.array([slope(floors, i) for i in range(seeds)])) if not at_optimum else (math.nan, math.nan)
        pH, pH_hw = _interval(np.array([slope(H_floors, i) for i in range(seeds)])) if not at_optimum else (math.nan, math.nan)
        out[name] = {"lrs": list(lrs), "floor": [_interval(f) for f in floors],
                     "H_floor": [_interval(r["H_floor"]) for r in runs], "H0": runs[0]["H0"], "plateau": plateau,
                     "at_optimum": at_optimum, "p": p, "p_halfwidth": p_hw, "p_H": pH, "p_H_halfwidth": pH_hw,
                     "steps": [r["steps"] for r in runs]}
    return {"setting": setting.describe, "horizon": horizon, "seeds": seeds, "optimizers": out}


def _describe(name: str, d: dict) -> str:
    fl = " / ".join(f"{m:.2g}+-{hw:.1g}" for m, hw in d["floor"])
    if d["at_optimum"]:
        return f"{name} reaches the optimum (E[L] {fl} < {AT_OPTIMUM:g})"
    return (f"{name} E[L] {fl} (p = {d['p']:.2f} +- {d['p_halfwidth']:.2f}"
            + ("" if d["plateau"] else ", still descending")
            + f"; E[H] {d['H0']:.3g} -> {d['H_floor'][-1][0]:.2g}, p_H = {d['p_H']:.2f} +- {d['p_H_halfwidth']:.2f})")


def classify(d: dict) -> str:
    """"optimum", "shrinks", "stalls", "contradictory" (both tests pass: a threshold is wrong) or "undecided"."""
    if d["at_optimum"]:
        return "optimum"
    lo, hi = d["p"] - d["p_halfwidth"], d["p"] + d["p_halfwidth"]
    shrinks, stalls = lo > SHRINK_P_MIN, hi < STALL_P_MAX
    return "contradictory" if shrinks and stalls else ("shrinks" if shrinks else ("stalls" if stalls else "undecided"))


def _trend(d: dict) -> str:
    """What p's interval says, in words."""
    lo, hi = d["p"] - d["p_halfwidth"], d["p"] + d["p_halfwidth"]
    return {"optimum": "reaches the optimum", "shrinks": "its floor shrinks with lr",
            "stalls": "stalls (its floor does not shrink with lr)",
            "contradictory": f"CONTRADICTORY: p in [{lo:.2f}, {hi:.2f}] passes both the shrink and the stall test",
            "undecided": f"undecided at this sample size (p in [{lo:.2f}, {hi:.2f}])"}[classify(d)]


def adam_floor_prediction(setting: "Isotropic", lr: float) -> float:
    """lr·σ·d/4: AdamW's isotropic E[L] floor (see :data:`FLOOR_RTOL`)."""
    return lr * setting.sigma * setting.problem.m * setting.problem.n / 4.0


def _below_one(name: str, d: dict) -> str:
    """Say what an isotropic interval of p that excludes 1 means (it is measured, not predicted)."""
    lo, hi = d["p"] - d["p_halfwidth"], d["p"] + d["p_halfwidth"]
    if lo <= 1.0 <= hi or d["at_optimum"]:
        return ""
    ratio = float(np.mean([d["floor"][j][0] / d["floor"][j + 1][0] for j in range(len(d["floor"]) - 1)]))
    return (f"{name}'s p interval [{lo:.2f}, {hi:.2f}] excludes 1: its floor changes {ratio:.2f}x per halving of lr, "
            f"not 2x, so part of it {'does not scale with lr' if hi < 1 else 'scales faster than lr'} at these step "
            f"sizes (an lr-independent part, or a power {'below' if hi < 1 else 'above'} 1: "
            f"{len(d['floor'])} step sizes do not separate the two)")


def c7(quick: bool = False, heavy: bool = False) -> dict:
    """Run both settings; the verdict checks the isotropic floors (their exponent, and AdamW's level against
    lr·σ·d/4), GaLore's GoLore stall, and the negative controls (in the GoLore setting RSO's floor must
    shrink and AdamW reach the optimum; no optimizer may pass both the shrink and the stall test)."""
    lrs = (0.04, 0.02) if quick else ((0.04, 0.02, 0.01, 0.005) if heavy else (0.04, 0.02, 0.01))
    seeds = 4 if quick else 8
    band = P_BAND["quick" if quick else "full"]
    # horizons in ODE time t = k·lr: GaLore (rank 4 of 8, refresh every 20 steps) is the slowest to
    # settle on the isotropic quadratic; at t = 40 its last two quarters agree (measured)
    setting = Isotropic()
    iso = study(setting, lrs, seeds, horizon=40.0)
    gol = study(GoLore(), lrs, seeds, horizon=30.0)
    iso_ok = {n: d["plateau"] and classify(d) == "shrinks" and band[0] < d["p"] - d["p_halfwidth"]
              and d["p"] + d["p_halfwidth"] < band[1] for n, d in iso["optimizers"].items()}
    predicted = [adam_floor_prediction(setting, lr) for lr in lrs]
    measured = [m for m, _ in iso["optimizers"]["adamw"]["floor"]]
    floor_err = [m / p - 1.0 for m, p in zip(measured, predicted)]
    floor_ok = all(abs(e) <= FLOOR_RTOL for e in floor_err)
    g, a = gol["optimizers"]["galore"], gol["optimizers"]["adamw"]
    stall = (g["plateau"] and classify(g) == "stalls"
             and g["floor"][-1][0] > 1e3 * max(a["floor"][-1][0], 1e-12))
    # negative controls: the same tests must give the other answer where the other answer is known
    # (--quick's two step sizes over 4 seeds leave RSO's GoLore interval wide, ±1: there it must not stall)
    rso_class = classify(gol["optimizers"]["rso"])
    controls = {("rso (GoLore) does not stall" if quick else "rso (GoLore) shrinks"):
                rso_class in (("shrinks", "undecided") if quick else ("shrinks",)),
                "adamw (GoLore) reaches the optimum": classify(a) == "optimum",
                "the floor test rejects a prediction 2x off": all(abs(m / (2 * p) - 1.0) > FLOOR_RTOL
                                                                  for m, p in zip(measured, predicted)),
                "no optimizer passes both tests": not any(classify(d) == "contradictory" for st in (iso, gol)
                                                          for d in st["optimizers"].values())}
    verdict = "holds" if all(iso_ok.values()) and floor_ok and stall and all(controls.values()) else "violated"
    lr_text = " / ".join(f"{x:g}" for x in lrs)
    evidence = (f"E[L] floors over the last quarter of t = {iso['horizon']:g} (isotropic) / {gol['horizon']:g} (GoLore) at "
                f"lr = {lr_text}, mean +- 95% CI over {seeds} seeds, "
                f"p = fitted exponent of floor ~ lr^p. Isotropic ({iso['setting']}): "
                + "; ".join(_describe(n, d) for n, d in iso["optimizers"].items())
                + f" -> floors shrink with lr, p's interval inside [{band[0]:g}, {band[1]:g}], for {sum(iso_ok.values())}/4"
                + "".join(f"; {x}" for x in (_below_one(n, d) for n, d in iso["optimizers"].items()) if x)
                + "; AdamW's floor against the prediction lr*sigma*d/4 = "
                + " / ".join(f"{p:.3g}" for p in predicted) + ": "
                + " / ".join(f"{e:+.0%}" for e in floor_err) + f" (tol {FLOOR_RTOL:.0%})"
                + f". GoLore setting ({gol['setting']}): "
                + "; ".join(_describe(n, d) for n, d in gol["optimizers"].items())
                + f" -> GaLore's stall {'reproduced' if stall else 'NOT reproduced'}; OSD: "
                + _trend(gol["optimizers"]["osd"]) + "; RSO: " + _trend(gol["optimizers"]["rso"])
                + ". Negative controls: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in controls.items())
                + ("" if heavy or quick else " (--heavy adds lr = 0.005)"))
    return {"claim": "C7",
            "statement": ("Under stochastic gradients (no published analysis covers OSD with noise): with isotropic noise "
                          "every optimizer (AdamW, GaLore, OSD, RSO) descends to a floor of E[L] that shrinks with the step "
                          "size as lr^p, p near 1, and AdamW's floor is lr*sigma*d/4; in GoLore's anisotropic counterexample (arXiv:2410.11289) GaLore's SVD projection stalls "
                          "at a floor that does not shrink with the step size, far above full-rank AdamW, while RSO's floor "
                          "shrinks and AdamW reaches the optimum (negative controls); OSD's behaviour there is measured and reported"),
            "verdict": verdict, "evidence": evidence,
            "details": {"isotropic": iso, "golore": gol, "adamw_floor_predicted": predicted, "adamw_floor_rel_error": floor_err,
                        "p_band": band, "controls": controls}}
