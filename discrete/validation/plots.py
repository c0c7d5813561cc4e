"""The report's figures: curves per group of seeds (mean, with a t-interval band for two or more
seeds), and horizontal bars of val PPL, tokens/s and memory with their intervals.

One colour per optimizer in every figure (``optimizer_colours``: a fixed order over the
registered optimizers, so AdamW has the same colour in every report); groups of one optimizer
differ by line style (curves) or hatch (bars). Each optimizer-coloured artist carries the gid
``optimizer=<name>`` so tests can check that. Bars are horizontal and the figure grows with the
number of groups, so labels stay legible with ten runs or more. The coverage figures
(``coverage_vs_steps.png``, ``update_rank_vs_tokens.png``) are drawn only when a run logged
their metric (``validate --coverage``).
"""
from __future__ import annotations

import math
from pathlib import Path

from discrete.validation.report import group_rows, summarize
from discrete.validation.stats import clip, mean_ci

LINESTYLES = ("-", "--", ":", "-.")
HATCHES = ("", "//", "..", "xx")
CATEGORY_GREYS = {"params": "0.25", "grads": "0.45", "moments": "0.6", "projector": "0.72",
                  "projector_optim": "0.82", "other_state": "0.92"}
LEGEND_INSIDE_MAX = 4  # more groups than this: the legend goes beside the axes


def optimizer_colours(names) -> dict[str, str]:
    """``name -> colour``: registered optimizers first, in their fixed order, then any others."""
    from discrete.validation.optim import OPTIMIZER_BUILDERS

    order = OPTIMIZER_BUILDERS.names() + sorted(set(names) - set(OPTIMIZER_BUILDERS.names()))
    return {name: f"C{i % 10}" for i, name in enumerate(order)}


def _points(run: dict, kind: str, x: str, y: str) -> dict:
    return {e[x]: e[y] for e in run["log"] if e.get("kind") == kind and isinstance(e.get(y), (int, float))
            and math.isfinite(e[y])}


def _mean_series(runs: list[dict], kind: str, x: str, y: str):
    """(xs, means, half-widths) over the x values every run of the group logged."""
    per = [_points(r, kind, x, y) for r in runs]
    xs = sorted(set.intersection(*(set(p) for p in per))) if per else []
    stats = [mean_ci(p[v] for p in per) for v in xs]
    return xs, [m for m, _ in stats], [h for _, h in stats]


class _Style:
    """Colour by optimizer, line style / hatch by the group's index among that optimizer's groups."""

    def __init__(self, groups: list[dict]):
        self.colour = optimizer_colours(g["optimizer"] for g in groups)
        seen: dict[str, int] = {}
        self.index = {}
        for g in groups:
            self.index[g["label"]] = seen.get(g["optimizer"], 0)
            seen[g["optimizer"]] = self.index[g["label"]] + 1

    def line(self, g):
        return dict(color=self.colour[g["optimizer"]], ls=LINESTYLES[self.index[g["label"]] % len(LINESTYLES)],
                    gid=f"optimizer={g['optimizer']}")

    def bar(self, g):
        return dict(color=self.colour[g["optimizer"]], hatch=HATCHES[self.index[g["label"]] % len(HATCHES)],
                    edgecolor="white", gid=f"optimizer={g['optimizer']}")


def _legend(ax, n: int) -> None:
    if not ax.get_legend_handles_labels()[0]:
        return
    if n > LEGEND_INSIDE_MAX:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=8)


def figures(runs: list[dict]) -> dict:
    """``file name -> matplotlib Figure`` for the runs (see module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator

    rows = [summarize(r) for r in runs]
    groups = group_rows(rows)
    by_dir = {r["dir"]: r for r in runs}
    for g in groups:
        g["runs"] = [by_dir[row["dir"]] for row in g["rows"]]
    style = _Style(groups)
    wide = len(groups) > LEGEND_INSIDE_MAX
    figs = {}

    def curve(name, kind, x, y, xlabel, ylabel, logy=False, train_overlay=False, only_if_logged=False):
        if only_if_logged and not any(_points(r, kind, x, y) for r in runs):
            return
        fig, ax = plt.subplots(figsize=(8.6 if wide else 6.4, 4.2))
        for g in groups:
            xs, mean, hw = _mean_series(g["runs"], kind, x, y)
            if not xs:
                continue
            st = style.line(g)
            ax.plot(xs, mean, marker="o" if len(xs) < 30 else None, ms=3, lw=1.4, label=g["label"], **st)
            if g["n"] > 1:  # the seeds themselves, with or without an interval
                for run in g["runs"]:
                    pts = _points(run, kind, x, y)
                    ax.plot(list(pts), list(pts.values()), ls="none", marker=".", ms=2.5, alpha=0.45,
                            color=st["color"], gid=st["gid"])
            if all(h is not None for h in hw):  # an interval needs MIN_N seeds or more (stats.py)
                band = [clip(y, m, h) for m, h in zip(mean, hw)]  # within the metric's range
                ax.fill_between(xs, [lo for lo, _ in band], [hi for _, hi in band],
                                color=st["color"], alpha=0.15, lw=0, gid=st["gid"])
                if len(xs) < 30:  # few points (evals): a band between them hides the end points' intervals
                    yerr = [[m - lo for m, (lo, _) in zip(mean, band)], [hi - m for m, (_, hi) in zip(mean, band)]]
                    ax.errorbar(xs, mean, yerr=yerr, fmt="none", ecolor=st["color"], capsize=3, lw=1, gid=st["gid"])
            if train_overlay:
                txs, tm, _ = _mean_series(g["runs"], "train", "tokens", "loss")
                if txs:
                    ax.plot(txs, tm, alpha=0.3, lw=1, color=st["color"], ls=st["ls"], gid=st["gid"])
        ax.set(xlabel=xlabel, ylabel=ylabel)
        if logy:
            ax.set_yscale("log", nonpositive="mask")  # GaLore/RSO drift is exactly 0 between refreshes
        ax.grid(alpha=0.3)
        if any(g["n"] > 1 for g in groups):
            ax.set_title("mean over seeds (dots: each seed); band: Student-t 95% CI, 3+ seeds, clipped to the "
                         "metric's range", fontsize=8)
        _legend(ax, len(groups))
        fig.tight_layout()
        figs[name] = fig

    curve("val_loss_vs_tokens.png", "eval", "tokens", "val_loss", "tokens", "validation loss (nats); faint: train loss",
          train_overlay=True)
    curve("h_proxy_vs_steps.png", "train", "step", "H", "step", "H = L + K(S)  (Adam kinetic, THEORY 3.2)")
    curve("tokens_per_s.png", "train", "step", "tokens_per_s", "step", "tokens / s")
    curve("residual_vs_steps.png", "train", "step", "residual", "step", "||(I - QQ^T) G|| / ||G||  (P before the step)")
    curve("drift_vs_steps.png", "train", "step", "drift_window", "step",
          "1 - ||Q_now^T Q_prev||_F^2 / r  (since last log)", logy=True)
    curve("coverage_vs_steps.png", "train", "step", "visited_dim", "step",
          "visited dim (tr Pi)^2 / ||Pi||_F^2,  Pi = sum_k Q_k Q_k^T", only_if_logged=True)
    curve("update_rank_vs_tokens.png", "eval", "tokens", "update_eff_rank", "tokens",
          "effective rank of W_t - W_0 (Roy-Vetterli)", only_if_logged=True)

    labels = [g["label"] for g in groups]
    height = max(3.2, 0.32 * len(groups) + 1.6)

    def bars(ax, key, title, scale=1.0):
        vals = [(g[key] or 0) * scale for g in groups]
        errs = [(g[key + "_ci95"] or 0) * scale for g in groups]
        for i, g in enumerate(groups):
            lo, hi = clip(key, vals[i], errs[i])  # the interval within the metric's range
            xerr = [[vals[i] - lo], [hi - vals[i]]] if errs[i] else None
            ax.barh(i, vals[i], xerr=xerr, capsize=3, **style.bar(g))
            seeds = [r[key] * scale for r in g["rows"] if isinstance(r.get(key), (int, float))]
            if len(seeds) > 1:  # each seed's value on its group's bar
                ax.plot(seeds, [i] * len(seeds), ls="none", marker="o", ms=3, mfc="white", mec="black", mew=0.8,
                        gid=f"seeds={g['label']}")
        ax.set_yticks(range(len(groups)), labels, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        if max(v + e for v, e in zip(vals, errs)) >= 1e4:
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 25k, not 25000 (long numbers collide)
        if all(g[key] is None for g in groups):
            ax.text(0.5, 0.5, "not measured (CPU run)", transform=ax.transAxes, ha="center", fontsize=8)
            ax.set_xticks([])
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)

    fig, axes = plt.subplots(1, 3, figsize=(13, height), sharey=True)
    bars(axes[0], "val_ppl", "validation PPL")
    bars(axes[1], "tokens_per_s", "tokens / s")
    bars(axes[2], "peak_mem_gb", "peak memory (GiB)")
    axes[0].invert_yaxis()  # shared y: once for all panels, so the first group is on top
    fig.suptitle("mean over seeds (circles: each seed); error bars: Student-t 95% CI, clipped to the metric's range "
                 "(none with fewer than 3 seeds)", fontsize=9)
    fig.tight_layout()
    figs["summary_ci.png"] = fig

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    left = [0.0] * len(groups)
    for cat, grey in CATEGORY_GREYS.items():
        vals = [g["rows"][0]["state_bytes"].get(cat, 0) / 2**20 for g in groups]  # identical across seeds
        ax.barh(range(len(groups)), vals, left=left, color=grey, edgecolor="white", label=cat)
        left = [a + v for a, v in zip(left, vals)]
    ax.set_yticks(range(len(groups)), labels, fontsize=8)
    for tick, g in zip(ax.get_yticklabels(), groups):
        tick.set_color(style.colour[g["optimizer"]])
        tick.set_gid(f"optimizer={g['optimizer']}")
    ax.set(xlabel="MiB", title="analytic: numel x bytes per category")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.25), ncol=3, frameon=False)
    bars(ax2, "peak_mem_gb", "measured peak per log window (max over the run), GiB")
    ax.invert_yaxis()  # shared y: once for both panels
    fig.tight_layout()
    figs["memory.png"] = fig
    return figs


def plot(runs: list[dict], out_dir: str | Path) -> list[Path]:
    """Write :func:`figures` as PNGs into ``out_dir``; returns the paths."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures(runs).items():
        fig.savefig(out / name, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(out / name)
    return paths
