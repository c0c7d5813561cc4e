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
# # 3. The gap in Assumption 4.4(ii): a blind start stalls, a tiny push escapes
#
# OSD's convergence theorem (Theorem 4.5) needs Assumption 4.4(ii): for a constant $G\ne0$ the
# "blind" set $\{P: P^\top G=0\}$ must **not** be invariant under $\dot P=\Gamma(P,G)$.
# For the exact online-PCA flow it is (THEORY.md §2, "Known gap"): if $P^\top\tilde G=0$ then
# $\nabla_P\mathcal L_G=4\lambda P(P^\top P-I)$ and
#
# $$\tfrac{d}{dt}(P^\top G)=-4\lambda(P^\top P-I)\,P^\top G=0 .$$
#
# So heavy ball started at a non-stationary $W_0$ with $\hat M_0=0$ and $P_0^\top\nabla L(W_0)=0$
# **never moves**: $\hat G=0$ keeps $\hat M=0$, so $W$, and hence $G$, stay put. The theorem assumes
# 4.4(ii), so it simply does not apply to this flow. In *this* small example the set is also
# unstable: a perturbation of $P_0$ of size $\varepsilon$ grows and the run converges. Part 2 shows
# that this is not true in general, and part 3 predicts when it is.
#
# Construction: on the quadratic $L=\frac12\lVert W-C\rVert^2$ (`box_quadratic`, no weight decay)
# take $W_0=C+e_1v^\top$, so $\nabla L(W_0)=e_1v^\top$ has rank one, and $P_0=[e_2,\dots,e_{r+1}]$.
# Everything is exact in floating point: $P_0^\top\nabla L(W_0)$ is exactly zero, not $10^{-16}$.
# (On a generic quadratic round-off is itself an $\varepsilon\approx10^{-16}$ push, and the
# "blind" run escapes after a long plateau — which is the instability this notebook is about.)

# %% tags=["parameters"]
import os

SMOKE = bool(os.environ.get("SMOKE") or os.environ.get("FAST") or os.environ.get("CI"))

DIM, RANK, SEED = (8, 8), 2, 0
EPSILONS = [0.0, 1e-12, 1e-8, 1e-4]     # size of the push of P0 towards the gradient
ALPHA, PCA_LAMBDA = 1.0, 0.1             # online-PCA flow: rate and orthogonality weight
T_END = 40.0
RTOL, ATOL = 1e-9, 1e-12
# part 2: Adam + online PCA from the usual SVD start, at several flow rates alpha
ADAM_HP = {"a": 1.0, "b": 1.0, "e": 1e-2, "v0": 1e-2}
ALPHAS, T_END_2, DIM_2 = [0.25, 1.0, 5.0], 60.0, (8, 8)

if SMOKE:
    DIM, EPSILONS, T_END, RTOL, ATOL = (4, 4), [0.0, 1e-4], 15.0, 1e-6, 1e-9
    ALPHAS, T_END_2, DIM_2 = [1.0], 5.0, (4, 4)

# %%
import matplotlib.pyplot as plt
import torch

from ode import SimulationConfig, simulate
from osd_theory.hd import make_system
from osd_theory.problems import make_problem
from osd_theory.projections import make_rule

problem = make_problem("box_quadratic", *DIM, seed=SEED)
gen = torch.Generator().manual_seed(SEED + 7)
e = torch.eye(DIM[0], dtype=torch.float64)
v = torch.randn(DIM[1], 1, generator=gen, dtype=torch.float64)
W0 = problem.C + e[:, :1] @ v.T                   # grad L(W0) = e1 v^T: rank one
G0 = problem.grad(W0)
g_dir = e[:, :1]                                  # spans the gradient's columns
P_blind = e[:, 1:RANK + 1]                        # orthonormal and exactly orthogonal to it
print(f"||grad L(W0)|| = {torch.linalg.matrix_norm(G0):.3f},  ||P0^T grad L(W0)|| = "
      f"{torch.linalg.matrix_norm(P_blind.T @ G0):.1e}")

# %% [markdown]
# ## Run heavy ball + online PCA from the blind start and from pushed starts
#
# $P_0(\varepsilon)=P_{\rm blind}+\varepsilon\, \hat g\, \mathbf 1^\top$ with $\hat g$ the unit vector
# spanning the gradient's columns: the push has norm $\varepsilon\sqrt r$.

# %%
system = make_system("heavy_ball", a=1.0)
config = SimulationConfig(t_end=T_END, rtol=RTOL, atol=ATOL, autodiff=False)
runs = {}
for eps in EPSILONS:
    rule = make_rule("online_pca", rank=RANK, side="left", alpha=ALPHA, pca_lambda=PCA_LAMBDA)
    P0 = P_blind + eps * g_dir @ torch.ones(1, RANK, dtype=torch.float64)
    runs[eps] = simulate(system, rule, problem, config, W0=W0, P0=P0)

# %% [markdown]
# **Look at:** the blind run ($\varepsilon=0$, black) is flat: $\lVert\nabla L\rVert$ stays at its
# initial value and $\lVert P^\top\nabla L\rVert$ stays at zero or round-off (below $10^{-13}$; exact zeros are drawn at $10^{-20}$) for the whole run, although
# $\nabla L\ne0$ — a spurious equilibrium. Every pushed run first looks stuck too, while
# $\lVert P^\top\nabla L\rVert$ grows exponentially from $\sim\varepsilon$; the smaller $\varepsilon$, the
# longer the plateau (roughly $\log(1/\varepsilon)$), and then it converges.

# %%
fig, (ax_g, ax_p) = plt.subplots(1, 2, figsize=(11, 3.8))
for i, (eps, tr) in enumerate(runs.items()):
    style = dict(color="k", lw=2) if eps == 0 else dict(color=f"C{i}")
    label = "blind start (eps = 0)" if eps == 0 else f"eps = {eps:g}"
    ax_g.plot(tr["t"], tr["grad_norm"], label=label, **style)
    ax_p.plot(tr["t"], tr["proj_grad_norm"].clamp_min(1e-20), label=label, **style)
ax_g.set_ylabel("||grad L(W(t))||"); ax_p.set_ylabel("||P(t)^T grad L(W(t))||")
for ax in (ax_g, ax_p):
    ax.set_yscale("log"); ax.set_xlabel("t")
ax_g.set_title("heavy ball + online PCA: gradient norm"); ax_p.set_title("what the subspace sees")
ax_g.legend(fontsize=8); plt.tight_layout(); plt.show()

# %%
print(f"{'eps':>8} {'||grad L||(0)':>14} {'||grad L||(T)':>14} {'max ||P^T G||':>14}")
for eps, tr in runs.items():
    print(f"{eps:8g} {tr['grad_norm'][0].item():14.3e} {tr.final('grad_norm'):14.3e} "
          f"{tr['proj_grad_norm'].max().item():14.3e}")

blind, pushed = runs[0.0], runs[max(EPSILONS)]
assert blind.final("grad_norm") == blind["grad_norm"][0].item(), "blind run moved"
assert pushed.final("grad_norm") < 1e-2 * pushed["grad_norm"][0].item(), "pushed run did not converge"

# %% [markdown]
# ## 2. Not only from a blind start: Adam walks into the blind set
#
# The OSD reference code initialises $P_0$ from the SVD of the first gradient, as far from the
# blind set as possible. That is not enough in the coupled system. Below, Adam + online PCA on
# the 8×8 quadratic of notebook 1, started from the SVD basis, at three flow rates $\alpha$ of $P$
# (the paper recommends $\alpha=5$). **Look at:** for small $\alpha$, $\lVert P^\top\nabla L\rVert$ decays
# exponentially while $\lVert\nabla L\rVert$ flattens far from zero: Adam removes the projected
# gradient faster than $P$ can turn towards the gradient, and $(W, P)$ converges to a point of the
# blind set — a spurious equilibrium that here *attracts*, not only one that is invariant.
# With $\alpha=5$ the run converges.

# %%
from ode import RunSpec, run_spec

adam_runs = {}
for alpha in ALPHAS:
    spec = RunSpec(optimizer="adam", projection="online_pca", problem="quadratic", dim=DIM_2, rank=RANK,
                   seed=SEED, hp=ADAM_HP, proj_hp={"alpha": alpha, "pca_lambda": PCA_LAMBDA},
                   config=SimulationConfig(t_end=T_END_2, rtol=1e-8, atol=1e-10, autodiff=False))
    adam_runs[alpha] = run_spec(spec)

fig, (ax_g, ax_p) = plt.subplots(1, 2, figsize=(11, 3.8))
for i, (alpha, tr) in enumerate(adam_runs.items()):
    ax_g.plot(tr["t"], tr["grad_norm"], color=f"C{i}", label=f"alpha = {alpha:g}")
    ax_p.plot(tr["t"], tr["proj_grad_norm"].clamp_min(1e-20), color=f"C{i}", label=f"alpha = {alpha:g}")
ax_g.set_ylabel("||grad L(W(t))||"); ax_p.set_ylabel("||P(t)^T grad L(W(t))||")
for ax in (ax_g, ax_p):
    ax.set_yscale("log"); ax.set_xlabel("t")
ax_g.set_title("Adam + online PCA (SVD start): gradient norm"); ax_p.set_title("what the subspace sees")
ax_g.legend(fontsize=8); plt.tight_layout(); plt.show()
for alpha, tr in adam_runs.items():
    print(f"alpha = {alpha:4g}:  ||grad L|| {tr['grad_norm'][0].item():.3g} -> {tr.final('grad_norm'):.3g},  "
          f"||P^T grad L|| -> {tr.final('proj_grad_norm'):.2g}")

# %% [markdown]
# ## 3. When does the blind set attract? The linearisation at the stall
#
# Take gradient flow + online PCA, let it park in the blind set at $\alpha=1$, and linearise the
# projected gradient $y=P^\top G$ there (`ode.stall`, our derivation, checked against autodiff of
# the full field):
#
# $$\dot y=\frac{2\alpha}{\lVert G\rVert^2}\,y\,G^\top G-P^\top\nabla^2L[P\,y].$$
#
# The largest eigenvalue $\lambda_{\max}(\alpha)$ of this symmetric operator is negative (the point
# attracts nearby runs) below $\alpha^*=\lVert G\rVert^2/(2\mu_{\max})$ and positive above it. This is a
# statement about **one** equilibrium of the blind set (a manifold of them) and about the side $P$
# projects (here the right side, what `auto` picks for a square $W$). **Look at:** the curve crosses zero
# at the predicted $\alpha^*$, and runs kicked off the stall along the leading mode decay below $\alpha^*$
# and grow above it at the predicted **local** rates (fitted while the kick changes by $e^{\pm4}$). Claim
# C6 does the same on a 100×100 quadratic, where $\alpha^*=3.84$ on the right side (4.33 with $P$ on the
# left side, at the equilibrium that run parks at).

# %%
import numpy as np

from ode.spec import build_run
from ode.stall import critical_alpha, kicked_run, lambda_max, leading_mode, linearisation, measured_rate, stall_spec

STALL_DIM, STALL_RANK = ((30, 30), 3)
spec = stall_spec(STALL_DIM, STALL_RANK, t_end=200.0)
reach = run_spec(spec)
W_s, P_s = reach.final_y[0], reach.final_y[-2]
_, rule_s, problem_s = build_run(spec)
lin = linearisation(problem_s, W_s, P_s, rule_s.side_)
alpha_star = critical_alpha(lin)
alphas = np.linspace(0.25, 3 * alpha_star, 40)
kicked = {f: kicked_run(spec, W_s, P_s, rule_s.side_, lin, leading_mode(lin, f * alpha_star), f * alpha_star,
                        min(4 / abs(lambda_max(lin, f * alpha_star)), 100.0)) for f in (0.7, 1.4)}

fig, (ax_l, ax_k) = plt.subplots(1, 2, figsize=(11, 3.8))
ax_l.plot(alphas, [lambda_max(lin, a) for a in alphas], "k-")
ax_l.axhline(0, color="0.7", lw=0.8); ax_l.axvline(alpha_star, color="C3", ls="--", label=f"alpha* = {alpha_star:.3g}")
ax_l.set_xlabel("alpha"); ax_l.set_ylabel("lambda_max of the linearised P^T G flow"); ax_l.legend()
for i, (f, tr) in enumerate(kicked.items()):
    ax_k.semilogy(tr["t"], tr["proj_grad_norm"], color=f"C{i}", label=f"alpha = {f:g} alpha*")
    lam = lambda_max(lin, f * alpha_star)
    ax_k.semilogy(tr["t"], float(tr["proj_grad_norm"][0]) * np.exp(lam * tr["t"].numpy()), color=f"C{i}", ls=":",
                  label=f"predicted rate {lam:+.3f}")
ax_k.set_xlabel("t"); ax_k.set_ylabel("||P^T grad L||"); ax_k.legend(fontsize=8)
ax_k.set_title(f"kicked off the stall ({STALL_DIM[0]}x{STALL_DIM[1]}, rank {STALL_RANK})")
plt.tight_layout(); plt.show()
for f, tr in kicked.items():
    print(f"alpha = {f:g} alpha*: predicted local rate {lambda_max(lin, f * alpha_star):+.4f}, "
          f"measured {measured_rate(tr):+.4f} over t <= {tr.final('t'):.3g}")

# %% [markdown]
# ### The local rate is not the outcome: the same runs, run long
#
# Above $\alpha^*$ the kick grows — and then? Continue both kicked runs to a long horizon and watch
# $\lVert P^\top\nabla L\rVert/\lVert\nabla L\rVert$. **Look at:** below $\alpha^*$ the run stays at the same
# equilibrium; above it the ratio rises, peaks, and falls back: the run lands in the blind set again, at
# another equilibrium with a smaller $\lVert\nabla L\rVert$. $\alpha>\alpha^*$ makes *this* point unstable; it
# does not make the flow converge.

# %%
from ode.stall import outcome

LONG_T = 60.0 if SMOKE else 1200.0
g_stall = reach.final("grad_norm")
long_runs = {f: kicked_run(spec, W_s, P_s, rule_s.side_, lin, leading_mode(lin, f * alpha_star), f * alpha_star, LONG_T)
             for f in (0.7, 1.4)}
fig, ax = plt.subplots(figsize=(7, 3.5))
for f, tr in long_runs.items():
    ax.semilogy(tr["t"], tr["proj_grad_norm"] / tr["grad_norm"], label=f"alpha = {f:g} alpha*")
ax.set_xlabel("t"); ax.set_ylabel("||P^T grad L|| / ||grad L||"); ax.legend()
ax.set_title(f"kicked off the stall, run to t = {LONG_T:g}")
plt.tight_layout(); plt.show()
for f, tr in long_runs.items():
    x = outcome(tr, g_stall)
    print(f"alpha = {f:g} alpha*: ||grad L|| {g_stall:.4g} -> {x['grad_norm']:.4g}, peak ratio {x['peak_ratio']:.2g}, "
          f"ends {x['where']}")

# %% [markdown]
# ## What this means for Theorem 4.5
#
# The theorem assumes 4.4(ii), and the exact online-PCA flow violates it: the theorem does not
# cover this flow (it is not wrong). What the experiments add: the blind set is not only
# invariant but **attracting** — locally below $\alpha^*$, and globally often above it too (the long
# run above falls back into it) — so a generic start can converge to a non-stationary point. Every rule built from $P$ and $G$ by matrix
# products (online PCA, Oja, `adversarial`) keeps the set invariant; rules that break the symmetry —
# random jumps, periodic SVD, or the `GradientRelax` rule of claim C3 — leave it.
