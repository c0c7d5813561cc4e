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
# # 2. Adam's condition: where does $H$ stop being monotone?
#
# The Adam ODE (THEORY.md §3.2, OSD Ex. 2.3 with the minus sign restored)
#
# $$\dot W=-\frac{m}{\sqrt v+e},\quad \dot m=a(g-m),\quad \dot v=b(g^2-v),\qquad
#   H=L+\frac1{2a}\Big\langle\frac{m}{\sqrt v+e},m\Big\rangle$$
#
# has $\dot H\le0$ at **every** state iff $b\le4a$. In discrete terms ($a=(1-\beta_1)/\eta$,
# $b=(1-\beta_2)/\eta$) that is $\beta_2\ge4\beta_1-3$.
#
# We sweep $(a,b)$ across the line $b=4a$ twice:
# 1. **pointwise**: the sign of the closed-form $\dot H=-\Delta$ at random states
#    (no integrator involved), and
# 2. **along trajectories**: the largest increase of $H$ along an integrated run started with a
#    large second moment $v_0$ (the situation where a decaying $v$ pumps energy into $H$).

# %% tags=["parameters"]
import os

SMOKE = bool(os.environ.get("SMOKE") or os.environ.get("FAST") or os.environ.get("CI"))

A_VALUES = [0.3, 1.0, 3.0]                    # momentum rates a (1/time)
RATIOS = [0.25, 0.5, 0.9, 1.0, 1.1, 1.5, 2.0, 4.0, 8.0]   # q = b / 4a
N_STATES = 4000                               # random states per (a, b) for the pointwise sweep
DIM = (8, 8)                                  # problem size (m, n)
T_END = 20.0                                  # trajectory length (ODE time)
E, V0 = 1e-3, 100.0                           # Adam's e, and a large initial second moment
SEED = 0

if SMOKE:
    A_VALUES, RATIOS, N_STATES, DIM, T_END = [1.0], [0.5, 1.0, 2.0], 200, (4, 4), 4.0

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from osd_theory.hd import make_system
from osd_theory.problems import make_problem

torch.manual_seed(SEED)

# %% [markdown]
# ## 1. Pointwise: the sign of $\dot H$ at random states
#
# For each $(a,b)$ we draw states $(m, v, g)$ with $v$ log-uniform over eight decades and $g$
# sometimes exactly zero, and evaluate the closed form
# `osd_theory.hd.adam.Adam.dissipation`: $\dot H=-\Delta$. **Look at** the fraction of
# states where $\dot H>0$: it is exactly zero on and below the dashed line $b=4a$, and becomes
# positive as soon as $b>4a$ (the worst states have $g=0$ and large $v$, where the bracket in
# $\dot H$ tends to $1-b/4a$).

# %%
def random_states(n, d, gen):
    m = torch.randn(n, d, generator=gen, dtype=torch.float64)
    v = 10 ** (8 * torch.rand(n, d, generator=gen, dtype=torch.float64) - 4)   # 1e-4 .. 1e4
    g = torch.randn(n, d, generator=gen, dtype=torch.float64)
    g = torch.where(torch.rand(n, d, generator=gen, dtype=torch.float64) < 0.3, torch.zeros_like(g), g)
    return m, v, g


def dHdt(system, m, v, g):
    """Closed-form dH/dt = -Δ at a batch of states (one row each)."""
    return -torch.func.vmap(lambda mi, vi, gi: system.dissipation(0.0, (mi, vi), gi))(m, v, g)


gen = torch.Generator().manual_seed(SEED)
m, v, g = random_states(N_STATES, 6, gen)
a_grid = np.array(A_VALUES)
frac_positive = np.zeros((len(RATIOS), len(A_VALUES)))
for j, a in enumerate(A_VALUES):
    for i, q in enumerate(RATIOS):
        d = dHdt(make_system("adam", a=a, b=4 * a * q, e=E, v0=V0), m, v, g)
        frac_positive[i, j] = float((d > 0).double().mean())

fig, ax = plt.subplots(figsize=(5.5, 4))
for j, a in enumerate(A_VALUES):
    ax.plot(RATIOS, np.maximum(frac_positive[:, j], 1e-4), "o-", label=f"a = {a:g}")
ax.axvline(1.0, color="k", ls="--", lw=1, label="b = 4a")
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("b / 4a"); ax.set_ylabel("fraction of random states with dH/dt > 0  (floor 1e-4)")
ax.set_title("Adam: pointwise sign of dH/dt")
ax.legend(); plt.show()

assert frac_positive[np.array(RATIOS) <= 1.0].max() == 0.0, "dH/dt > 0 at some state with b <= 4a"
assert frac_positive[np.array(RATIOS) > 1.0].min() > 0.0, "no state with dH/dt > 0 although b > 4a"

# %% [markdown]
# ## 2. Along trajectories
#
# Now integrate Adam on a quadratic (full rank, $P=I$: the condition does not involve $P$) from
# $m_0=0$, $v_0=100\gg g^2$. While $v$ decays towards $g^2$ the kinetic term
# $\frac1{2a}\langle m/(\sqrt v+e),m\rangle$ grows for fixed $m$; for $b\le4a$ the dissipation
# always wins, for $b>4a$ it need not. We record $\max_k\,(H_{k+1}-H_k)^+$ over the accepted steps
# of a fixed-step RK4 integration in float64, and compare with the round-off scale
# $10^{-12}\,|H|$. **Look at** the jump at $b/4a=1$: below it the largest increase sits at round-off,
# above it $H$ increases by orders of magnitude more.

# %%
def integrate_adam(system, problem, t_end):
    """Fixed-step RK4 on (W, m, v) in float64; returns t and H at every step."""
    h = min(0.02, 0.25 / max(system.a, system.b))
    W = problem.initial_point()
    S = system.init_state(problem.grad(W))

    def field(W, S):
        g = problem.grad(W)
        return system.direction(0.0, S, g), system.state_rate(0.0, S, g)

    def shift(W, S, k, c):
        return W + c * k[0], tuple(s + c * ds for s, ds in zip(S, k[1]))

    ts, Hs = [0.0], [float(system.hamiltonian(0.0, problem.loss(W), S))]
    for step in range(int(round(t_end / h))):
        k1 = field(W, S); k2 = field(*shift(W, S, k1, h / 2))
        k3 = field(*shift(W, S, k2, h / 2)); k4 = field(*shift(W, S, k3, h))
        W = W + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        S = tuple(s + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4) for s, d1, d2, d3, d4 in zip(S, k1[1], k2[1], k3[1], k4[1]))
        ts.append((step + 1) * h); Hs.append(float(system.hamiltonian(0.0, problem.loss(W), S)))
    return np.array(ts), np.array(Hs)


problem = make_problem("quadratic", *DIM, seed=SEED)
runs = {}
for a in A_VALUES:
    for q in RATIOS:
        runs[a, q] = integrate_adam(make_system("adam", a=a, b=4 * a * q, e=E, v0=V0), problem, T_END)

max_increase = {k: max(np.diff(H).max(), 0.0) for k, (t, H) in runs.items()}
roundoff = {k: 1e-12 * np.abs(H).max() for k, (t, H) in runs.items()}

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
ax = axes[0]
for a in A_VALUES:
    ax.plot(RATIOS, [max(max_increase[a, q], 1e-16) for q in RATIOS], "o-", label=f"a = {a:g}")
ax.axhline(1e-12 * max(abs(runs[k][1]).max() for k in runs), color="grey", ls=":", label="round-off scale")
ax.axvline(1.0, color="k", ls="--", lw=1, label="b = 4a")
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("b / 4a"); ax.set_ylabel("largest step increase of H  (floor 1e-16)")
ax.set_title("Adam on a quadratic: is H monotone along the run?")
ax.legend()

ax = axes[1]
a_mid = A_VALUES[len(A_VALUES) // 2]
for q in RATIOS:
    t, H = runs[a_mid, q]
    ax.plot(t, H - H.min() + 1e-12, label=f"b/4a = {q:g}")
ax.set_yscale("log")
ax.set_xlabel("t"); ax.set_ylabel("H(t) − min H  (+1e-12)")
ax.set_title(f"H(t), a = {a_mid:g}")
ax.legend(fontsize=7); plt.tight_layout(); plt.show()

# %% [markdown]
# The table gives the verdict per run: "monotone" when the largest increase is below the
# round-off scale.

# %%
print(f"{'a':>5} {'b/4a':>6} {'max increase of H':>18}  verdict")
for (a, q), inc in max_increase.items():
    print(f"{a:5g} {q:6g} {inc:18.3e}  {'monotone' if inc <= roundoff[a, q] else 'INCREASES'}")
