# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Muon as spectral Lion-$\mathcal K$ (issue 23)
#
# Muon moves a weight matrix along its orthogonalised momentum $O=UV^\top$ (momentum $=U\Sigma V^\top$).
# $UV^\top$ is the gradient of the nuclear norm $\lVert Z\rVert_*=\sum_i\sigma_i(Z)$, so Muon is
# Lion-$\mathcal K$ with a **spectral** $\mathcal K$ (arXiv:2506.15054). The simulator needs a smooth
# field, so it takes $\mathcal K_\delta(Z)=\sum_i\varphi_\delta(\sigma_i(Z))$ with $\varphi_\delta$ a
# smoothed absolute value ($\delta\log\cosh(\sigma/\delta)$: $\nabla\mathcal K_\delta=U\tanh(\Sigma/\delta)V^\top$).
#
# 1. How far are $\nabla\mathcal K_\delta$ and torch's Newton–Schulz (NS5) from $UV^\top$?
# 2. $H(t)$ of spectral Lion-$\mathcal K$ (`muon`) under two projection rules: GaLore's periodic SVD
#    and OSD's online PCA (and RSO's random jumps).
# 3. With weight decay $\lambda$ (`muon_wd`) the limit lies in the spectral-norm ball $\lVert\lambda W\rVert_2\le1$.
# 4. The discrete Muon with the exact SVD step: $H_k$ along real iterations (claim C5's check).

# %% tags=["parameters"]
import os

SMOKE = bool(os.environ.get("SMOKE") or os.environ.get("FAST") or os.environ.get("CI"))

DIM, RANK, T_END, SEED = (8, 8), 2, 20.0, 0
HP = {"a": 1.0, "b": 0.1, "kinetic_fn": "spectral_tanh", "delta": 0.1}
RULES = {"periodic_svd": {"tau": 2.0}, "online_pca": {"alpha": 2.0}, "random_jump": {"tau": 2.0}}
RTOL, ATOL = 1e-8, 1e-10
WD_T_END, DELTAS = 60.0, (0.3, 0.1, 0.03)
if SMOKE:
    DIM, T_END, RTOL, ATOL, WD_T_END, DELTAS = (4, 4), 2.0, 1e-6, 1e-9, 20.0, (0.3, 0.1)

# %% [markdown]
# ## 1. The $\delta\to0$ gap, and Newton–Schulz
#
# Per singular value $\sigma$, $\nabla\mathcal K_\delta$ puts $\varphi'_\delta(\sigma)$ where $UV^\top$
# puts 1: the gap is $1-\tanh(\sigma/\delta)\approx2e^{-2\sigma/\delta}$ (pseudo-Huber:
# $1-\sigma/\sqrt{\sigma^2+\delta^2}\approx\delta^2/2\sigma^2$). NS5 is a quintic composed five
# times after normalising by $\lVert X\rVert_F$: it sends each $\sigma$ into a band around 1, not to 1,
# and is not monotone — so NS-Muon is the gradient of no convex $\mathcal K$; the exact (SVD) step is.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from osd_theory.hd.spectral import NS_COEFFICIENTS, newton_schulz, polar, polar_gap

X = torch.randn(32, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
X = X / torch.linalg.matrix_norm(X)                  # as NS normalises it: ||X||_F = 1
sv = torch.linalg.svdvals(X)
print(f"X 32x64 Gaussian, ||X||_F = 1: sigma in [{float(sv.min()):.3f}, {float(sv.max()):.3f}]")
print(f"{'delta':>8} {'tanh gap':>12} {'pseudo-Huber gap':>18}   (||grad K_delta(X) - UV^T||_F)")
for d in (0.1, 0.03, 0.01, 0.003, 0.001):
    print(f"{d:>8g} {polar_gap(X, 'spectral_tanh', d):>12.3e} {polar_gap(X, 'spectral_pseudo_huber', d):>18.3e}")
O = newton_schulz(X.float()).double()
ns_sv = torch.linalg.svdvals(O)
print(f"NS5 (torch's, bfloat16): ||NS5(X) - UV^T||_F = {float(torch.linalg.matrix_norm(O - polar(X))):.3f} "
      f"(of ||UV^T||_F = {32 ** 0.5:.2f}); its singular values in [{float(ns_sv.min()):.3f}, {float(ns_sv.max()):.3f}]")

s = np.linspace(0, 1, 1001)
x = s.copy()
a, b, c = NS_COEFFICIENTS
for _ in range(5):
    x = a * x + b * x**3 + c * x**5
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(s, x, label="NS5 scalar map (input sigma / ||X||_F)")
for d in (0.1, 0.03):
    ax.plot(s, np.tanh(s / d), "--", label=f"tanh(sigma/delta), delta={d}")
ax.axhline(1, color="k", lw=0.5)
ax.set_xlabel("normalised singular value"); ax.set_ylabel("output singular value"); ax.legend(fontsize=8)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 2. $H(t)$ of spectral Lion-$\mathcal K$ under the projection rules
#
# $H=aL+\mathcal K((1-b)M)/(1-b)$, $\dot H=-\Delta\le0$ for any $\dot P$: the identity of Lion-$\mathcal K$
# holds for any differentiable $\mathcal K$ (proved symbolically with a non-separable $\mathcal K$ in
# `osd_theory/symbolic/spectral.py`). **Look at:** $H$ only goes down under every rule, also at the
# jumps of $P$ (dots).

# %%
from ode import RunSpec, SimulationConfig, run_spec
from osd_theory.verdicts import lyapunov_verdict

config = SimulationConfig(t_end=T_END, rtol=RTOL, atol=ATOL, stop_residual=None)
runs = {rule: run_spec(RunSpec(optimizer="muon", hp=HP, projection=rule, proj_hp=php, problem="quadratic",
                               dim=DIM, rank=RANK, seed=SEED, config=config)) for rule, php in RULES.items()}
fig, (ax_h, ax_g) = plt.subplots(1, 2, figsize=(11, 3.8))
for i, (rule, tr) in enumerate(runs.items()):
    ax_h.plot(tr["t"], tr["H"], color=f"C{i}", label=rule)
    ax_g.plot(tr["t"], tr["grad_norm"], color=f"C{i}", label=rule)
    if len(tr.jumps["t"]):
        ax_h.plot(tr.jumps["t"], tr.jumps["H_after"], ".", color=f"C{i}", ms=4)
for ax, ylabel in ((ax_h, "H(t)"), (ax_g, "||grad L||")):
    ax.set_yscale("log"); ax.set_xlabel("t"); ax.set_ylabel(ylabel)
ax_h.set_title(f"muon (spectral tanh, delta={HP['delta']}): H"); ax_g.legend(fontsize=8)
plt.tight_layout(); plt.show()
for rule, tr in runs.items():
    v = lyapunov_verdict(tr)
    print(f"{rule:>14}: H {float(tr['H'][0]):.4g} -> {tr.final('H'):.4g}; Lyapunov {v.holds} "
          f"(max rise {v.max_rise:.1e}, closed-form Delta vs autodiff {v.max_hdot_mismatch:.1e})")

# %% [markdown]
# ## 3. Weight decay: the limit in the spectral-norm ball
#
# `muon_wd` (full rank) on $\frac12\lVert W-C\rVert^2$ with $\lVert\lambda C\rVert_2>1$. Its limit is
# the stationary point of $f+\frac{\gamma}{\alpha\lambda}\mathcal K^*_\delta(\lambda W)$, which shares $C$'s
# singular vectors (computed by bisection per singular value in `osd_theory/claims/spectral.py`);
# as $\delta\to0$ it tends to $C$ with its singular values clipped at $1/\lambda$. **Look at:**
# $\lVert\lambda W(t)\rVert_2$ rises to 1 and never crosses it; the distance to the clipped $C$ shrinks with $\delta$.

# %%
from ode import simulate
from osd_theory.claims.spectral import clipped, smoothed_limit
from osd_theory.hd import make_system
from osd_theory.problems import make_problem
from osd_theory.projections import make_rule

lam = 0.5
prob = make_problem("box_quadratic", 3, 4, SEED, scale=1.0)
print(f"||lambda C||_2 = {float(torch.linalg.matrix_norm(lam * prob.C, ord=2)):.3f}")
fig, ax = plt.subplots(figsize=(6, 3.5))
for d in DELTAS:
    system = make_system("muon_wd", wd=lam, delta=d)
    rule = make_rule("identity", rank=3, side="left").bind(prob.shape)
    tr = simulate(system, rule, prob, SimulationConfig(t_end=WD_T_END, rtol=RTOL, atol=ATOL, stop_residual=None))
    W = tr.final_y[0]
    print(f"delta {d:<5g} ||lambda W_T||_2 = {float(torch.linalg.matrix_norm(lam * W, ord=2)):.6f}, "
          f"|W_T - bisected limit| = {float(torch.linalg.matrix_norm(W - smoothed_limit(prob.C, system))):.1e}, "
          f"|W_T - clip(C)| = {float(torch.linalg.matrix_norm(W - clipped(prob.C, 1 / lam))):.3f}, "
          f"Lyapunov {lyapunov_verdict(tr).holds}")
    ax.plot(tr["t"], tr["H"], label=f"delta={d}")
ax.set_xlabel("t"); ax.set_ylabel("H(t)"); ax.set_title("muon_wd on the box quadratic"); ax.legend(fontsize=8)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 4. The discrete Muon: $H_k$ along real iterations
#
# `discrete.Muon(orthogonalize="svd")` is the Euler step of Lion-$\mathcal K$ with $\mathcal K=\lVert\cdot\rVert_*$,
# $a=(1-\mu)/\text{lr}$, $b=1-\mu^2$ (Nesterov), $M=-$buffer. $H_k=aL(W_k)+\lVert M_k\rVert_*$ is
# non-increasing below a step-size threshold and rises above it (claim C5 tracks where).

# %%
from discrete.claims import TRACKED, track_h

make_opt, system_of, hd_state = TRACKED.get("muon")
qprob = make_problem("quadratic", 6, 6, 0, condition=100.0)
fig, ax = plt.subplots(figsize=(6, 3.5))
for lr in (2.0**-12, 2.0**-10, 2.0**-6):
    H = track_h(qprob, make_opt, system_of(lr), lr, 40 if SMOKE else 200, hd_state)
    ax.plot(np.array(H) / H[0], label=f"lr = 2^{int(np.log2(lr))} ({'monotone' if all(np.diff(H) <= 1e-6 * abs(H[0])) else 'rises'})")
ax.set_xlabel("step k (stops at the first rise)"); ax.set_ylabel("H_k / H_0"); ax.legend(fontsize=8)
plt.tight_layout(); plt.show()
