"""Summaries, the comparison table and the plots of finished validation runs (read from run dirs).

Runs whose configs differ only in the seed form a *group*; the table and the plots show each
group's mean and, with two or more seeds, the Student-t 95 % confidence interval of the mean
(:mod:`stats`) of validation PPL, tokens/s, peak memory and, for ``--coverage`` runs, the final
visited dimension and effective rank of W_t - W_0 (:mod:`metrics`; "-" for runs without them).
Colours follow the optimizer (the same colour for an optimizer in every figure); groups of one
optimizer differ by line style / hatch.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from discrete.validation.config import DATA, DEFINES, FIELDS, LENGTH, from_json
from discrete.validation.optim import effective_eps_placement
from discrete.validation.runlog import read_log_checked
from discrete.validation.stats import INTERVAL_NAME, MIN_N, NO_INTERVAL, clip, mean_ci
from osd_theory.errors import UserError

STATE_KEYS = ("moments", "projector", "projector_optim", "other_state")
# what makes two runs "the same setting" (the seed is left out: that is what a group varies)
GROUP_FIELDS = tuple(n for n, f in FIELDS.items() if f.metadata["role"] in (DEFINES, LENGTH, DATA))
CI_METRICS = ("val_ppl", "tokens_per_s", "peak_mem_gb", "visited_dim", "update_eff_rank")


def load_run(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    for name in ("config.json", "log.jsonl"):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a validation run dir (no {name})")
    meta = run_dir / "meta.json"
    log, bad = read_log_checked(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
        meta_d = json.loads(meta.read_text()) if meta.is_file() else {}
    except ValueError as exc:
        raise UserError(f"{run_dir}: unreadable config.json or meta.json ({exc})") from None
    return {"dir": str(run_dir), "config": config, "meta": meta_d, "log": log, "skipped_lines": bad}


def settings(config: dict) -> dict:
    """The run-defining settings of a config, bar the seed (older configs: defaults for newer fields,
    their spellings normalised as a resume reads them)."""
    normal = from_json(config).to_json()
    # None means "the optimizer's default", which is what older runs (no such flag) used too
    normal["eps_placement"] = effective_eps_placement(normal["optimizer"], normal["eps_placement"])
    return {k: normal[k] for k in GROUP_FIELDS}


def _last(records: list[dict], key: str):
    """The last finite value of ``key`` among ``records`` (None if none has one)."""
    values = [r[key] for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return values[-1] if values else None


def _nums(records: list[dict], key: str) -> list[float]:
    """The numeric values of ``key`` (a field of another type, from damage or another version, is left out)."""
    return [r[key] for r in records if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]


def summarize(run: dict) -> dict:
    """One row: the numbers ``report --json`` prints and the table shows."""
    cfg, log = run["config"], run["log"]
    train = [r for r in log if r.get("kind") == "train"]
    evals = [r for r in log if r.get("kind") == "eval"]
    steady = _nums(train[1:], "tokens_per_s") or _nums(train, "tokens_per_s")  # step 1 is warm-up
    last = train[-1] if train else {}
    sb = last.get("state_bytes", {})
    # training peak: skip windows that contained an eval pass (logs written before the trainer
    # reset the peak after eval had eval's logits in the next window)
    after_eval = {id(b) for a, b in zip(log, log[1:]) if a.get("kind") == "eval" and b.get("kind") == "train"}
    clean = [r for r in train if id(r) not in after_eval] or train
    peaks = _nums(clean, "peak_alloc_gb")
    reserved = _nums(clean, "peak_reserved_gb")
    residuals = [r["residual"] for r in train if r.get("residual") is not None and math.isfinite(r["residual"])]
    skipped = [s for r in train for s in r.get("skipped", [])]
    return {
        "run": Path(run["dir"]).name,
        "dir": run["dir"],
        "optimizer": cfg["optimizer"],
        "model": cfg["model"],
        "rank": None if cfg["optimizer"] == "adamw" else cfg.get("rank"),
        "lr": cfg.get("lr"),
        "seed": cfg.get("seed"),
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
        "skipped_updates": sum(skipped) if skipped else None,
        # --coverage runs: at the last log step, and at the last eval
        "visited_dim": _last(train, "visited_dim"),
        "update_eff_rank": _last(evals, "update_eff_rank"),
        "device": run["meta"].get("device"),
        "device_shared": run["meta"].get("device_shared"),  # other jobs on the device: tokens/s not clean
        "git_hash": run["meta"].get("git_hash"),
        "settings": settings(cfg),
    }


# -----------------------------------------------------------------------------
# groups of seeds


def _key(row: dict) -> str:
    return json.dumps(row["settings"], sort_keys=True, default=str)


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) or "[]"
    if isinstance(v, dict):
        return ",".join(f"{k}={w}" for k, w in sorted(v.items())) or "{}"
    return str(v)


def group_rows(rows: list[dict]) -> list[dict]:
    """Groups of rows that differ only in seed, in first-seen order, with mean ± CI of CI_METRICS.

    Each row gets ``group`` (the group's label); a group's label is its single run's name, or the
    settings that differ between the groups (``galore lr=0.02``) and the number of seeds (``3 runs, 1
    seed`` where runs repeat a seed: the interval then measures run-to-run spread, not seed-to-seed).
    """
    order: dict[str, list[dict]] = {}
    for r in rows:
        order.setdefault(_key(r), []).append(r)
    members = list(order.values())

    def varying(ms_list):
        return [k for k in GROUP_FIELDS if len({json.dumps(m[0]["settings"][k], default=str) for m in ms_list}) > 1]

    # a label names the optimizer and what differs among that optimizer's groups (alpha means
    # nothing to GaLore, so it does not label a GaLore group just because an OSD group has another)
    within = {opt: varying([m for m in members if m[0]["settings"]["optimizer"] == opt])
              for opt in {m[0]["settings"]["optimizer"] for m in members}}
    groups = []
    for ms in members:
        s = ms[0]["settings"]
        parts = [s["optimizer"]] + [f"{k}={_fmt_value(s[k])}" for k in within[s["optimizer"]]]
        seeds = len({r["seed"] for r in ms})
        # a repeat of a seed is a run, not another seed: say so rather than count it as one
        count = f"{len(ms)} seeds" if seeds == len(ms) else f"{len(ms)} runs, {seeds} seed{'s' * (seeds > 1)}"
        label = ms[0]["run"] if len(ms) == 1 else f"{' '.join(parts)} ({count})"
        g = {"label": label, "n": len(ms), "rows": ms, "optimizer": s["optimizer"], "model": s["model"],
             "seeds": [r["seed"] for r in ms]}
        for metric in CI_METRICS:
            g[metric], g[metric + "_ci95"] = mean_ci(r[metric] for r in ms)
        for metric in ("tokens", "optimizer_state_gb", "state_share_of_peak", "H_final", "residual_mean"):
            g[metric] = mean_ci(r[metric] for r in ms)[0]
        g["rank"] = ms[0]["rank"]
        for r in ms:
            r["group"] = label
        groups.append(g)
    return groups


def json_rows(rows: list[dict]) -> list[dict]:
    """Per-run rows with their group's mean and CI (``*_mean``, ``*_ci95``); strict JSON (null, not NaN)."""
    out = []
    for g in group_rows(rows):
        for r in g["rows"]:
            extra = {"group_n": g["n"], "interval": INTERVAL_NAME}
            for metric in CI_METRICS:
                extra[metric + "_mean"], extra[metric + "_ci95"] = g[metric], g[metric + "_ci95"]
            out.append(_finite({**r, **extra}))
    return out


def _finite(obj):
    """NaN and infinities as None, recursively, so ``json.dumps(allow_nan=False)`` holds."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# -----------------------------------------------------------------------------
# the table


def _fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _pm(mean, hw, spec: str, metric: str = "") -> str:
    """``mean ± hw``, or ``mean [lo, hi]`` where the interval is clipped to the metric's range."""
    if hw is None or mean is None:
        return _fmt(mean, spec)
    lo, hi = clip(metric, mean, hw)
    if lo > mean - hw or hi < mean + hw:
        return f"{_fmt(mean, spec)} [{_fmt(lo, spec)}, {_fmt(hi, spec)}]"
    return f"{_fmt(mean, spec)} ± {_fmt(hw, spec)}"


def table(rows: list[dict]) -> str:
    """Plain-text comparison, one line per group of seeds; ratios against the AdamW group of the same model."""
    groups = group_rows(rows)
    base = {}
    for g in groups:
        if g["optimizer"] == "adamw":
            base.setdefault(g["model"], g)
    head = ["run", "n", "optimizer", "model", "rank", "tokens", "val_ppl", "ppl/adamw", "tok/s", "tok/s/adamw",
            "peak_mem_GB", "opt_state_MB", "state/peak", "H_final", "residual", "visited_dim", "upd_eff_rank"]
    lines = [head]
    for g in groups:
        b = base.get(g["model"])
        ratio = lambda k: (g[k] / b[k]) if b and g[k] and b[k] else None  # noqa: E731
        lines.append([
            g["label"], str(g["n"]), g["optimizer"], g["model"], _fmt(g["rank"], "d"), _fmt(g["tokens"], ",.0f"),
            _pm(g["val_ppl"], g["val_ppl_ci95"], ".2f", "val_ppl"), _fmt(ratio("val_ppl"), ".3f"),
            _pm(g["tokens_per_s"], g["tokens_per_s_ci95"], ",.0f", "tokens_per_s"), _fmt(ratio("tokens_per_s"), ".3f"),
            _pm(g["peak_mem_gb"], g["peak_mem_gb_ci95"], ".2f", "peak_mem_gb"),
            _fmt(None if g["optimizer_state_gb"] is None else g["optimizer_state_gb"] * 1024, ".1f"),
            _fmt(g["state_share_of_peak"], ".3f"), _fmt(g["H_final"], ".4f"), _fmt(g["residual_mean"], ".3f"),
            _pm(g["visited_dim"], g["visited_dim_ci95"], ".1f", "visited_dim"),
            _pm(g["update_eff_rank"], g["update_eff_rank_ci95"], ".1f", "update_eff_rank"),
        ])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in lines)
    if any(g["n"] > 1 for g in groups):
        out += (f"\nn: runs that differ only in seed (or repeat one); mean ± half-width of the {INTERVAL_NAME} "
                f"(t quantile with n-1 degrees of freedom; [lo, hi]: clipped to the metric's range); {NO_INTERVAL}")
    shared = [g["label"] for g in groups if any(r.get("device_shared") for r in g["rows"])]
    if shared:
        out += (f"\nshared device (meta.json device_shared: other jobs ran on it at the start): tokens/s and memory "
                f"of {', '.join(shared)} are not clean measurements")
    small = [g for g in groups if 1 < g["n"] < MIN_N]
    for g in small:  # the seeds themselves, since there is no interval
        out += f"\n{g['label']}: val_ppl per seed " + ", ".join(_fmt(r["val_ppl"], ".2f") for r in g["rows"])
    return out
