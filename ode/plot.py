"""Plot a trajectory: H(t) itself with every rise marked, and the stationarity residual (matplotlib, Agg)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np


def rise_masks(traj) -> tuple[np.ndarray, np.ndarray]:
    """(any rise above float64 rounding, rise above the verdict's tolerance tol_n), per step n → n+1 (N−1,)."""
    from osd_theory.verdicts import EPS, ROUNDING_FACTOR, step_tolerance
    H = traj["H"]
    d = H[1:] - H[:-1]
    rounding = ROUNDING_FACTOR * EPS * np.maximum(np.abs(H[1:].numpy()), np.abs(H[:-1].numpy()))
    above_tol = (d > step_tolerance(H[:-1], H[1:], getattr(traj, "meta", {}) or {})).numpy()
    return d.numpy() > rounding, above_tol


def title(traj) -> str:
    """A short title from the run's resolved settings: names and the options that differ by run."""
    meta = traj.meta
    res = meta.get("resolved")
    if not res:
        return f"{meta.get('system', '')}  {meta.get('projection', '')}  on {meta.get('problem', '')}"
    def short(d, keys):
        return ", ".join(f"{k}={d[k]:g}" if isinstance(d[k], float) else f"{k}={d[k]}" for k in keys if k in d)
    o, p, q = res["optimizer"], res["projection"], res["problem"]
    text = (f"{o['name']}({short(o, [k for k in o if k != 'name'])}) + {p['name']}(rank={p.get('rank')}, "
            f"{short(p, ['alpha', 'pca_lambda', 'tau', 'beta'])}) on {q['name']} {q.get('m')}x{q.get('n')}")
    return "\n".join(textwrap.wrap(text.replace("(, ", "(").replace(", )", ")"), 80))


def plot_trajectory(traj, path: str | Path, title_text: str | None = None) -> Path:
    """Write a two-panel figure to ``path`` (any format matplotlib knows from the suffix).

    Top: H(t) as recorded at accepted steps, on a log axis when H > 0 throughout and a linear one
    otherwise; every rise of H above float64 rounding is marked (orange), those above the Lyapunov
    verdict's tolerance tol_n in red, and projection jumps are grey lines. Bottom: the stationarity
    residual and ‖Pᵀ∇L‖ on a log axis.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, H = traj["t"].numpy(), traj["H"].numpy()
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(7.5, 6))
    ax1.plot(t, H, lw=1.2, color="C0", label="H(t)")
    if len(H) and H.min() > 0:
        ax1.set_yscale("log")
    rise, above = rise_masks(traj) if len(H) > 1 else (np.zeros(0, bool), np.zeros(0, bool))
    small = rise & ~above
    if small.any():
        ax1.plot(t[1:][small], H[1:][small], "o", ms=4, color="orange", label=f"H rose within solver tolerance ({small.sum()})")
    if above.any():
        ax1.plot(t[1:][above], H[1:][above], "x", ms=7, color="red", label=f"H rose above tolerance ({above.sum()})")
    for tj in traj.jumps.get("t", []).tolist() if traj.jumps else []:
        ax1.axvline(tj, color="0.8", lw=0.5)
    ax1.set_ylabel("H(t)")
    ax1.legend(fontsize=8, loc="upper right")
    name = traj.meta.get("stationarity_name", "residual")
    ax2.semilogy(t, traj["residual"].numpy().clip(1e-300), label=name)
    ax2.semilogy(t, traj["proj_grad_norm"].numpy().clip(1e-300), ls="--", label="||P^T grad L||")
    ax2.set_xlabel("t")
    ax2.legend(fontsize=8)
    fig.suptitle(title_text or title(traj), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
