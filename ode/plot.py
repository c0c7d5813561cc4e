"""Plot a trajectory: H(t) and the stationarity residual ‖∇L‖(t), log scale (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path


def plot_trajectory(traj, path: str | Path, title: str | None = None) -> Path:
    """Write a two-panel figure to ``path`` (any format matplotlib knows from the suffix).

    Top: H(t) − min H + 1e-16·max(1, |H|) on a log axis (H may be negative; the shift keeps
    its shape), with projection jumps marked. Bottom: the residual and ‖Pᵀ∇L‖ on a log axis.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, H = traj["t"].numpy(), traj["H"].numpy()
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    shift = H - H.min() + 1e-16 * max(1.0, abs(H).max())
    ax1.semilogy(t, shift, lw=1.2)
    ax1.set_ylabel("H(t) - min H")
    for tj in traj.jumps.get("t", []).tolist() if traj.jumps else []:
        ax1.axvline(tj, color="0.8", lw=0.5)
    name = traj.meta.get("stationarity_name", "residual")
    ax2.semilogy(t, traj["residual"].numpy().clip(1e-300), label=name)
    ax2.semilogy(t, traj["proj_grad_norm"].numpy().clip(1e-300), ls="--", label="||P^T grad L||")
    ax2.set_xlabel("t")
    ax2.legend()
    fig.suptitle(title or f"{traj.meta.get('system', '')}  {traj.meta.get('projection', '')}  on {traj.meta.get('problem', '')}",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
