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
# # 1. Lyapunov curves: $H(t)$ and $\lVert\nabla L\rVert(t)$ under five projection rules
#
# The subspace HD theorem (OSD arXiv:2408.12857 Eqs. (7)–(8), THEORY.md §1.2) says that
# $\dot H=-\Delta\le0$ **whatever** the projection dynamics $\dot P=\Gamma(P,\nabla L)$ is: $H$ does
# not depend on $P$ and the cross terms cancel by adjointness. $\Gamma$ only decides how fast $H$
# falls, and whether the run gets stuck.
#
# We integrate heavy ball, Adam, Lion-$\mathcal K$ and (smoothed) Signum on one quadratic, each
# under five rules: **constant** $P$, **random jumps** (RSO-like resampling every $\tau$),
# **periodic SVD** (GaLore), the **online-PCA** flow (OSD), and an **adversarial** flow that pushes
# $P^\top\nabla L\to0$. One figure per optimizer.

# %% tags=["parameters"]
import os

SMOKE = bool(os.environ.get("SMOKE") or os.environ.get("FAST") or os.environ.get("CI"))

OPTIMIZERS = {                    # name in osd_theory.hd.HD_SYSTEMS -> hyperparameters
    "heavy_ball": {"a": 1.0},
    "adam": {"a": 1.0, "b": 1.0, "e": 1e-2, "v0": 1e-2},
    "lion_k": {"a": 1.0, "b": 0.1, "kinetic_fn": "tanh", "delta": 0.1},
    "signum": {"a": 1.0, "kinetic_fn": "tanh", "delta": 0.1},
}
PROJECTIONS = {                   # name in osd_theory.projections.PROJECTIONS -> options
    "constant": {},
    "random_jump": {"tau": 2.0},
    "periodic_svd": {"tau": 2.0},
    "online_pca": {"alpha": 1.0},
    "adversarial": {},
}
PROBLEM, DIM, RANK, SEED = "quadratic", (8, 8), 2, 0
T_END = 30.0
RTOL, ATOL = 1e-8, 1e-10
AUTODIFF = True                   # also record dH/dt by forward-mode autodiff (slower)

if SMOKE:
    DIM, T_END, RTOL, ATOL, AUTODIFF = (4, 4), 3.0, 1e-4, 1e-6, False

# %%
import matplotlib.pyplot as plt
import numpy as np

from ode import RunSpec, SimulationConfig, run_spec

config = SimulationConfig(t_end=T_END, rtol=RTOL, atol=ATOL, autodiff=AUTODIFF)
runs = {}
for opt, hp in OPTIMIZERS.items():
    for proj, proj_hp in PROJECTIONS.items():
        spec = RunSpec(optimizer=opt, projection=proj, problem=PROBLEM, dim=DIM, rank=RANK, seed=SEED,
                       hp=hp, proj_hp=proj_hp, config=config)
        runs[opt, proj] = run_spec(spec)

# %% [markdown]
# ## One figure per optimizer
#
# **Look at:** in every left panel $H(t)$ only goes down — at jumps of $P$ (dots) too, since $H$
# does not depend on $P$. The right panels differ a lot: the **adversarial** rule keeps $P$ blind
# to the gradient, so $\lVert\nabla L\rVert$ stalls while $H$ still (weakly) decreases; **constant**
# $P$ can only remove the gradient inside its fixed subspace; **periodic SVD** (which re-aims $P$
# at the gradient) and **random jumps** (which keep changing it) make steady progress, and so does
# **online PCA** for heavy ball — but not for the others (see the note below the table).
# (For Lion-$\mathcal K$, $H=aL+\dots$, so its scale differs from the others.)

# %%
for opt in OPTIMIZERS:
    fig, (ax_h, ax_g) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, proj in enumerate(PROJECTIONS):
        tr = runs[opt, proj]
        color = f"C{i}"
        ax_h.plot(tr["t"], tr["H"], color=color, label=proj)
        ax_g.plot(tr["t"], tr["grad_norm"], color=color, label=proj)
        if len(tr.jumps["t"]):
            ax_h.plot(tr.jumps["t"], tr.jumps["H_after"], ".", color=color, ms=4)
    for ax, ylabel in ((ax_h, "H(t)"), (ax_g, "||grad L(W(t))||")):
        ax.set_yscale("log"); ax.set_xlabel("t (ODE time = lr units)"); ax.set_ylabel(ylabel)
    ax_h.set_title(f"{opt}: Hamiltonian (dots: jumps of P)")
    ax_g.set_title(f"{opt}: gradient norm")
    ax_g.legend(fontsize=8)
    plt.tight_layout(); plt.show()

# %% [markdown]
# ## The numbers behind the pictures
#
# The verdicts come from `osd_theory.verdicts`: **Lyapunov** holds when no step between accepted
# solver steps raises $H$ by more than the solver's own error allowance
# ($10(\mathrm{atol}+\mathrm{rtol}\,|H|)$) and, where recorded, the autodiff $\dot H$ is never
# positive; `max |dH/dt - AD|` compares the closed form $-\Delta$ with $\langle\nabla H,F\rangle$ by
# forward-mode autodiff at every accepted step (relative; solver-independent).
# **Stationary** asks whether $\lVert\nabla L\rVert$ reached $10^{-6}$ of its start — over this short
# horizon most runs have not, and the adversarial ones never will.

# %%
from osd_theory.verdicts import lyapunov_verdict, stationarity_verdict

print(f"{'optimizer':<11} {'projection':<13} {'H(0)':>7} {'H(T)':>9} {'|grad|(T)':>9}  {'Lyapunov':<9} "
      f"{'rel. rise':>9} {'max |dH/dt - AD|':>16}  stationarity")
lyap = {}
for (opt, proj), tr in runs.items():
    lyap[opt, proj] = v = lyapunov_verdict(tr)
    s = stationarity_verdict(tr)
    print(f"{opt:<11} {proj:<13} {tr['H'][0].item():7.3g} {tr.final('H'):9.3g} {tr.final('grad_norm'):9.3g}  "
          f"{'holds' if v.holds else 'VIOLATED':<9} {v.max_rel_rise:9.1e} {v.max_hdot_mismatch:16.1e}  {s.summary()}")
assert all(v.holds for v in lyap.values()), "H rose beyond solver error along some run"

# %% [markdown]
# Note the Adam, Lion-$\mathcal K$ and Signum runs with **online PCA**: $H$ and $\lVert\nabla L\rVert$ flatten
# well above zero. This is not a failure of the Lyapunov property (H still never rises) but of
# *convergence*: at this flow rate ($\alpha=1$, chosen on purpose; the rule's default is the paper's
# $\alpha=5$) the optimizer removes $P^\top\nabla L$ faster than
# $P$ can turn towards the gradient, and the pair walks into the blind set $P^\top\nabla L=0$ —
# the gap in Assumption 4.4(ii). Notebook 3 looks at it in detail.
