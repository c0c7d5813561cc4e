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
# # 5. From theory to training: $H$ and the projection residual in real LLaMA runs
#
# The validation track (`osd-theory validate`, `discrete/validation/`) pretrains small LLaMA
# models with AdamW, GaLore and OSD and logs, every few steps, two theory-linked numbers next to
# the loss (one JSON object per line in each run's `log.jsonl`):
#
# * **H-proxy** `H` $=L+K$, with Adam's kinetic term $K=\frac1{2a}\langle m/(\sqrt v+e),m\rangle$ summed
#   over all parameters' moments, $a=(1-\beta_1)/\eta$ (THEORY.md §3.2). $L$ is the training loss
#   of the logged step, so this is a **noisy proxy**, not the ODE's $H$: minibatch noise, the
#   learning-rate schedule and weight decay all break the assumptions under which $H$ must fall.
# * **projection residual** $\lVert(I-QQ^\top)G\rVert/\lVert G\rVert$, $Q$ an orthonormal basis of
#   $\mathrm{span}(P)$: the fraction of gradient energy the subspace cannot see. Assumption 4.4(ii)
#   is about exactly this never getting stuck at 1.
#
# This notebook reads **whatever run logs are committed** under `docs/results/validation/`
# (any `*.jsonl` below it) and plots them; it says so when there are none.

# %% tags=["parameters"]
import os
from pathlib import Path

SMOKE = bool(os.environ.get("SMOKE") or os.environ.get("FAST") or os.environ.get("CI"))

# where to look for run logs: docs/results/validation of this checkout (found from the working
# directory upwards, so it works from notebooks/ and from the repository root);
# OSD_VALIDATION_LOGS overrides (e.g. a directory of your own runs)
_committed = next((d / "docs/results/validation" for d in (Path.cwd(), *Path.cwd().parents)
                   if (d / "docs/results/validation").is_dir()), Path("docs/results/validation"))
LOG_ROOT = Path(os.environ.get("OSD_VALIDATION_LOGS", _committed))
MAX_RUNS = 24          # read at most this many run logs
if SMOKE:
    MAX_RUNS = 4

# %%
import json

import matplotlib.pyplot as plt


def read_jsonl(path):
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a truncated last line of an interrupted run: skip it, keep the rest
    return rows


def run_info(path):
    """(group, label): runs are grouped by model size and by the directory that holds them."""
    run_dir = Path(path).parent
    rel = run_dir.relative_to(LOG_ROOT) if LOG_ROOT in run_dir.parents else run_dir
    where = f" in {rel.parts[0]}/" if len(rel.parts) > 1 else ""
    cfg_file = run_dir / "config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
        rank = "" if cfg.get("optimizer") == "adamw" else f" r={cfg.get('rank')}"
        return f"{cfg.get('model', '?')}{where}", f"{cfg.get('optimizer', '?')}{rank} ({run_dir.name})"
    return f"?{where}", str(rel)


logs = sorted(LOG_ROOT.glob("**/*.jsonl")) if LOG_ROOT.is_dir() else []
by_model = {}          # "model size in directory/" -> {label: records}
for path in logs[:MAX_RUNS]:
    rows = read_jsonl(path)
    if any(r.get("kind") == "train" for r in rows):
        group, label = run_info(path)
        by_model.setdefault(group, {})[label] = rows
runs = {f"{model} {label}": rows for model, group in by_model.items() for label, rows in group.items()}

if runs:
    print(f"found {len(logs)} log file(s) under {os.path.relpath(LOG_ROOT)}; using {len(runs)}:")
    for name, rows in runs.items():
        print(f"  {name}: {sum(r.get('kind') == 'train' for r in rows)} train records, "
              f"{sum(r.get('kind') == 'eval' for r in rows)} eval records")
else:
    print(f"No validation logs (*.jsonl with train records) under {os.path.relpath(LOG_ROOT)} yet.\n"
          "Produce some with `osd-theory validate --model tiny --optimizer osd --steps 50 --out runs/osd-tiny`\n"
          "and point OSD_VALIDATION_LOGS at the directory, or see docs/results/validation/.")

# %% [markdown]
# ## Validation loss, H-proxy and residual, side by side (one figure per model size and directory)
#
# **Look at:**
# * left: validation loss (the number users care about);
# * middle: the H-proxy (solid) and the training loss (dotted) of the same run. Their gap is the
#   kinetic term $K$; with a decaying learning rate $a=(1-\beta_1)/\eta$ grows and $K$ shrinks, so
#   $H$ approaches $L$ late in training. Up-ticks of $H$ are expected here (noise, warm-up), and
#   are *not* a contradiction of the ODE theorem, which is about full-batch, constant-step flows;
# * right: the projection residual for the subspace optimizers. GaLore's residual is lowest
#   right after each SVD refresh and drifts up in between; OSD's $P$ tracks continuously.

# %%
def series(rows, kind, key):
    pts = [(r["step"], r[key]) for r in rows if r.get("kind") == kind and r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


for model, group in sorted(by_model.items()):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    fig.suptitle(f"model {model}")
    for i, (name, rows) in enumerate(group.items()):
        color = f"C{i % 10}"
        axes[0].plot(*series(rows, "eval", "val_loss"), "o-", color=color, ms=3, label=name)
        axes[1].plot(*series(rows, "train", "H"), "-", color=color, label=name)
        axes[1].plot(*series(rows, "train", "loss"), ":", color=color)
        steps, res = series(rows, "train", "residual")
        if res:
            axes[2].plot(steps, res, "-", color=color, label=name)
    axes[0].set_ylabel("validation loss (nats/token)")
    axes[1].set_ylabel("H-proxy = L + K (solid), train loss L (dotted)")
    axes[2].set_ylabel("projection residual ||(I-QQ^T)G|| / ||G||")
    titles = ["validation loss", "H-proxy vs loss", "projection residual"]
    for ax, title in zip(axes, titles):
        ax.set_xlabel("optimizer step"); ax.set_yscale("log"); ax.set_title(title)
    axes[0].legend(fontsize=7)
    if not any(series(rows, "train", "residual")[1] for rows in group.values()):
        axes[2].text(0.5, 0.5, "no projected runs in these logs", ha="center", transform=axes[2].transAxes)
    plt.tight_layout(); plt.show()

# %% [markdown]
# **What the committed runs show** (60M: 1000 steps, 130M: 500 steps, one H100, 2026-11-22; see
# `docs/results/validation/README.md` for the setting). These remarks are about those logs; rerun
# the notebook on new logs and check they still hold.
#
# * **RSO's residual sits near 0.87** the whole run. That is what a *random* subspace gives: it
#   captures on average a fraction $r/n$ of the gradient energy, so the residual is about
#   $\sqrt{1-r/n}=\sqrt{1-128/512}pprox0.87$. The subspace is blind to most of the gradient, and the
#   loss is correspondingly slower.
# * **RSO's H-proxy jumps at every resample** (steps 200, 400, 600, 800): its inner Adam state is
#   reset with each new subspace, a jump of $H$ of the kind THEORY.md §6 predicts for RSO. GaLore
#   keeps its moments at a refresh, and its $H$ shows no such jump.
# * **GaLore's residual climbs between refreshes** (the gradient drifts away from the frozen SVD
#   basis) and drops at each refresh; **OSD with $lpha=0.5$** tracks continuously and has the
#   lowest residual; OSD with $lpha=5$ is noisier.
# * The dips of the training loss near steps 400 and 800 at 60M are epoch boundaries
#   (26.4 M train tokens / 65,536 tokens per step ≈ 403 steps per epoch), not optimizer events.

# %% [markdown]
# ## A small table: the last logged values
#
# `K/H` is the share of the kinetic term in the H-proxy at the end of the run.

# %%
if runs:
    print(f"{'run':<58} {'step':>6} {'val loss':>9} {'H':>8} {'K/H':>6} {'residual':>9}")
    for name, rows in runs.items():
        train = [r for r in rows if r.get("kind") == "train"]
        evals = [r for r in rows if r.get("kind") == "eval"]
        last = train[-1]
        val = f"{evals[-1]['val_loss']:.4f}" if evals else "-"
        H = last.get("H")
        share = f"{last['K'] / H:.3f}" if H and last.get("K") is not None else "-"
        res = f"{last['residual']:.3f}" if last.get("residual") is not None else "-"
        print(f"{name[:58]:<58} {last['step']:>6} {val:>9} {H if H is None else round(H, 4)!s:>8} {share:>6} {res:>9}")
