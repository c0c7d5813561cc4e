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
# **never moves**: $\hat G=0$ keeps $\hat M=0$, so $W$, and hence $G$, stay put. The set is invariant
# but unstable: a perturbation of $P_0$ of size $\varepsilon$ grows and the run converges.
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
# ## What this means for Theorem 4.5
#
# The theorem is stated for *every* initial $P_0$ and every rate, so it needs an extra genericity
# (or instability, or noise) argument, and the second experiment suggests the rate of $P$
# relative to the optimizer matters too. Rules that do not preserve the
# blind set — random jumps, periodic SVD — leave it at their first event; the built-in
# `adversarial` rule is the opposite: it is designed to *stay* blind.
