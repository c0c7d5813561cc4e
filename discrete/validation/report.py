"""Summaries, the comparison table and the plots of finished validation runs (read from run dirs)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from discrete.validation.runlog import read_log
from osd_theory.errors import UserError

STATE_KEYS = ("moments", "projector", "projector_optim", "other_state")


def load_run(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    for name in ("config.json", "log.jsonl"):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a validation run dir (no {name})")
    meta = run_dir / "meta.json"
    return {
        "dir": str(run_dir),
        "config": json.loads((run_dir / "config.json").read_text()),
        "meta": json.loads(meta.read_text()) if meta.is_file() else {},
        "log": read_log(run_dir),
    }


def summarize(run: dict) -> dict:
    """One row: the numbers ``report --json`` prints and the table shows."""
    cfg, log = run["config"], run["log"]
    train = [r for r in log if r.get("kind") == "train"]
    evals = [r for r in log if r.get("kind") == "eval"]
    steady = [r["tokens_per_s"] for r in train[1:]] or [r["tokens_per_s"] for r in train]  # step 1 is warm-up
    last = train[-1] if train else {}
    sb = last.get("state_bytes", {})
    # training peak: skip windows that contained an eval pass (logs written before the trainer
    # reset the peak after eval had eval's logits in the next window)
    after_eval = {id(b) for a, b in zip(log, log[1:]) if a.get("kind") == "eval" and b.get("kind") == "train"}
    clean = [r for r in train if id(r) not in after_eval] or train
    peaks = [r["peak_alloc_gb"] for r in clean if "peak_alloc_gb" in r]
    reserved = [r["peak_reserved_gb"] for r in clean if "peak_reserved_gb" in r]
    residuals = [r["residual"] for r in train if r.get("residual") is not None]
    return {
        "run": Path(run["dir"]).name,
        "dir": run["dir"],
        "optimizer": cfg["optimizer"],
        "model": cfg["model"],
        "rank": None if cfg["optimizer"] == "adamw" else cfg.get("rank"),
        "lr": cfg.get("lr"),
        "steps": last.get("step"),
        "tokens": (evals[-1] if evals else last).get("tokens"),
        "train_loss": last.get("loss"),
        "val_loss": evals[-1]["val_loss"] if evals else None,
        "val_ppl": evals[-1]["val_ppl"] if evals else None,
        "tokens_per_s": statistics.median(steady) if steady else None,
        "peak_mem_gb": max(peaks) if peaks else None,
        "peak_reserved_gb": max(reserved) if reserved else None,
        "state_bytes": sb,
        "optimizer_state_gb": sum(sb.get(k, 0) for k in STATE_KEYS) / 2**30 if sb else None,
        "static_gb": sum(sb.values()) / 2**30 if sb else None,  # params + grads + optimizer state
        "state_share_of_peak": (sum(sb.get(k, 0) for k in STATE_KEYS) / 2**30 / max(peaks)) if sb and peaks else None,
        "H_final": last.get("H"),
        "residual_mean": statistics.fmean(residuals) if residuals else None,
        "device": run["meta"].get("device"),
        "git_hash": run["meta"].get("git_hash"),
    }


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    """Plain-text comparison; ratios are against the AdamW row of the same model, if any."""
    base = {r["model"]: r for r in rows if r["optimizer"] == "adamw"}
    head = ["run", "optimizer", "model", "rank", "tokens", "val_ppl", "ppl/adamw", "tok/s", "tok/s/adamw",
            "peak_mem_GB", "opt_state_MB", "state/peak", "H_final", "residual"]
    lines = [head]
    for r in rows:
        b = base.get(r["model"])
        ratio = lambda k: (r[k] / b[k]) if b and r[k] and b[k] else None  # noqa: E731
        lines.append([
            Path(r["dir"]).name, r["optimizer"], r["model"], _fmt(r["rank"], "d"), _fmt(r["tokens"], ","), _fmt(r["val_ppl"], ".2f"),
            _fmt(ratio("val_ppl"), ".3f"), _fmt(r["tokens_per_s"], ",.0f"), _fmt(ratio("tokens_per_s"), ".3f"),
            _fmt(r["peak_mem_gb"], ".2f"),
            _fmt(None if r["optimizer_state_gb"] is None else r["optimizer_state_gb"] * 1024, ".1f"),
            _fmt(r["state_share_of_peak"], ".3f"),
            _fmt(r["H_final"], ".4f"), _fmt(r["residual_mean"], ".3f"),
        ])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in lines)


def plot(runs: list[dict], out_dir: str | Path) -> list[Path]:
    """val loss vs tokens, H-proxy, tokens/s, projection residual and drift vs steps, memory; PNGs in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    label = lambda r: f"{Path(r['dir']).name} ({r['config']['model']})"  # noqa: E731
    series = lambda r, kind, x, y: [(e[x], e[y]) for e in r["log"] if e.get("kind") == kind and e.get(y) is not None]  # noqa: E731
    paths = []

    def line_plot(name, kind, x, y, xlabel, ylabel, logy=False, train_overlay=False, marker=None):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for r in runs:
            pts = series(r, kind, x, y)
            (ln,) = ax.plot(*zip(*pts), marker=marker or ("o" if len(pts) < 30 else None), ms=3, label=label(r)) if pts else (None,)
            if train_overlay:
                tr = series(r, "train", "tokens", "loss")
                if tr:
                    ax.plot(*zip(*tr), alpha=0.3, color=ln.get_color() if ln else None, lw=1)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        if logy:
            ax.set_yscale("log", nonpositive="mask")  # GaLore/RSO drift is exactly 0 between refreshes
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        paths.append(out / name)

    line_plot("val_loss_vs_tokens.png", "eval", "tokens", "val_loss", "tokens", "validation loss (nats); faint: train loss",
              train_overlay=True)
    line_plot("h_proxy_vs_steps.png", "train", "step", "H", "step", "H = L + K(S)  (Adam kinetic, THEORY 3.2)")
    line_plot("tokens_per_s.png", "train", "step", "tokens_per_s", "step", "tokens / s")
    line_plot("residual_vs_steps.png", "train", "step", "residual", "step", "||(I - QQ^T) G|| / ||G||  (P before the step)")
    line_plot("drift_vs_steps.png", "train", "step", "drift_window", "step", "1 - ||Q_now^T Q_prev||_F^2 / r  (since last log)",
              logy=True, marker=".")

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    rows = [summarize(r) for r in runs]
    names = [f"{r['run']}\n{r['model']}" for r in rows]
    cats = ("params", "grads", "moments", "projector", "projector_optim", "other_state")
    bottom = [0.0] * len(rows)
    for c in cats:
        vals = [r["state_bytes"].get(c, 0) / 2**20 for r in rows]
        ax.bar(names, vals, bottom=bottom, label=c)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set(ylabel="MiB", title="analytic: numel x bytes per category")
    ax.legend(fontsize=7)
    ax2.bar(names, [r["peak_mem_gb"] or 0 for r in rows], label="peak allocated")
    ax2.bar(names, [(r["peak_reserved_gb"] or 0) - (r["peak_mem_gb"] or 0) for r in rows],
            bottom=[r["peak_mem_gb"] or 0 for r in rows], alpha=0.4, label="reserved - allocated")
    ax2.set(ylabel="GiB", title="measured peak per log window (max over the run)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "memory.png", dpi=120)
    plt.close(fig)
    paths.append(out / "memory.png")
    return paths
