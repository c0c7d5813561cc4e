"""Claims C8 and C9: predictions about LLaMA training runs, pre-registered in docs/training-claims.md.

**C8 (adaptive edge of stability, in the subspace).** With full-batch Adam at a constant lr η,
the preconditioned sharpness λ_max(D⁻¹H) settles at (2 + 2β₁)/((1 − β₁)η) = 38/η (Cohen et al.
2022); for GaLore and OSD it is the sharpness of the *projected* preconditioned Hessian (the
operator of their step) that settles there, while the full-space one is ≥ it. Measured by
``--sharpness`` (:mod:`discrete.validation.sharpness`): ρ = λ·η/38, "settles" = the median of ρ
over the last four measurements.

**C9 (RSO's residual after a resample).** A Haar projector drawn independently of the gradient
leaves ‖(I − PPᵀ)G‖/‖G‖ ≈ √(1 − r/d) right after every resample; ``--log-refresh`` logs each one.

Each claim runs its **CPU part** here (the ``tiny`` model on an 800-character synthetic corpus
made by :func:`synthetic_corpus`, a few seconds) and reads its **GPU part** (the 60M model) from
``docs/results/validation/claims/<run>/log.jsonl`` when that run was recorded
(``scripts/validation/training_claims.sh``); otherwise the GPU part is "not measured" and the
verdict is the CPU part's. Verdicts are computed from the run logs by :func:`c8_from_log` and
:func:`c9_from_log` (pure functions of the records); they may come out "violated".
"""
from __future__ import annotations

import json
import math
import random
import statistics
import tempfile
from pathlib import Path

from discrete.validation.config import REPO_ROOT, RunConfig

RECORDED = REPO_ROOT / "docs" / "results" / "validation" / "claims"
GPU_COMMAND = "scripts/validation/training_claims.sh"

# pre-registered tolerances (docs/training-claims.md)
C8_BAND = {"cpu": (0.8, 1.25), "gpu": (0.7, 1.3)}
C8_FULL_OVER_PROJ = 0.99     # sharpness_full >= sharpness up to OSD's ||P^T P - I||
C8_LAST = 4                  # "settles": the median over the last four measurements
C9_TOL = {"cpu": 0.03, "gpu": 0.02}

WORDS = ("the of and to in a is was he for it with as his on be at by this had not are but from or have an they "
         "which one you were her all she there would their we him been has when who will more no if out so said what "
         "up its about into than them can only other new some could time these two may then do first any my now").split()


def synthetic_corpus(root: Path, chars: int = 800, seed: int = 0) -> Path:
    """train.txt (``chars`` characters of word salad, seed ``seed``) and valid.txt (another seed) in ``root``."""
    def text(n: int, s: int) -> str:
        rng, out = random.Random(s), []
        while sum(map(len, out)) < n:
            out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))).capitalize() + ".")
        return " ".join(out)[:n] + "\n"

    root.mkdir(parents=True, exist_ok=True)
    (root / "train.txt").write_text(text(chars, seed))
    (root / "valid.txt").write_text(text(400, seed + 1))
    return root


def _tiny_cfg(root: Path, name: str, **kw) -> RunConfig:
    base = dict(model="tiny", steps=100, seq_len=16, vocab_size=320, max_train_chars=0, val_tokens=0,
                data=str(root / "corpus"), cache_dir=str(root / "cache"), out=str(root / name), device="cpu",
                progress=False, ckpt_every=-1, seed=0, rank=8)
    base.update(kw)
    return RunConfig(**base)


def _full_batch(cfg: RunConfig) -> int:
    """The number of train windows: a batch of that size sees every window at every step (full batch)."""
    from discrete.validation.distributed import DistInfo
    from discrete.validation.trainer import prepare_data

    return prepare_data(cfg, DistInfo(), lambda *a, **k: None).train.n_windows


def _run(cfg: RunConfig) -> list[dict]:
    """Train ``cfg`` on one CPU thread (as verify's workers do: the same reduction order, so the same
    numbers in a notebook or a test as in verify) and return its log records."""
    import contextlib
    import io

    import torch

    from discrete.validation.runlog import read_log
    from discrete.validation.trainer import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the trainer's log lines are not verify's output
            train(cfg)
    finally:
        torch.set_num_threads(threads)
    return read_log(cfg.out)


def _recorded(name: str) -> tuple[list[dict], dict] | None:
    """(records, config) of the recorded GPU run ``name``, or None when it was not run yet."""
    d = RECORDED / name
    if not (d / "log.jsonl").exists():
        return None
    recs = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines() if line.strip()]
    cfg = json.loads((d / "config.json").read_text()) if (d / "config.json").exists() else {}
    return recs, cfg


def _combine(verdicts: list[str]) -> str:
    return "violated" if "violated" in verdicts else ("holds" if verdicts and all(v == "holds" for v in verdicts)
                                                       else "inconclusive")


# ------------------------------------------------------------------------------------------ C8
C8_CPU = {  # optimizer -> its settings on top of the shared CPU setup (docs/training-claims.md)
    "adamw": {},
    "galore": {"scale": 0.25, "update_proj_gap": 200},
    "osd": {"scale": 0.25, "alpha": 0.5},
}


def c8_from_log(records: list[dict], band: tuple[float, float]) -> dict:
    """C8's verdict for one run from its train records with ``sharpness_ratio``."""
    meas = [r for r in records if r.get("kind") == "train" and r.get("sharpness_ratio") is not None]
    if len(meas) < C8_LAST:
        return {"verdict": "inconclusive", "why": f"{len(meas)} sharpness measurements, need {C8_LAST}"}
    last = meas[-C8_LAST:]
    rho = statistics.median(r["sharpness_ratio"] for r in last)
    out = {"steps": [r["step"] for r in last], "rho": rho, "band": list(band),
           "rho_all": [round(r["sharpness_ratio"], 4) for r in meas], "steps_all": [r["step"] for r in meas]}
    ok = band[0] <= rho <= band[1]
    if "sharpness_full_ratio" in last[0]:
        full = statistics.median(r["sharpness_full_ratio"] for r in last)
        out.update(rho_full=full, full_over_proj=full / rho if rho else math.inf, full_exceeds=full > band[1])
        ok = ok and out["full_over_proj"] >= C8_FULL_OVER_PROJ
    out["verdict"] = "holds" if ok else "violated"
    return out


def _fmt8(name: str, d: dict) -> str:
    if "rho" not in d:
        return f"{name} {d['verdict']} ({d['why']})"
    s = f"{name} rho{'_proj' if 'rho_full' in d else ''} {d['rho']:.3f}"
    if "rho_full" in d:
        s += f", rho_full {d['rho_full']:.3f}"
    return s + f" [{d['verdict']}]"


def c8_cpu_logs(names: list[str]) -> dict[str, list[dict]]:
    """The CPU part's run logs (pre-registered setup: tiny, full batch, constant lr 0.01, ``--sharpness 6``)."""
    logs = {}
    with tempfile.TemporaryDirectory(prefix="c8-") as tmp:
        root = Path(tmp)
        synthetic_corpus(root / "corpus")
        batch = _full_batch(_tiny_cfg(root, "probe", optimizer="adamw", batch_size=1))
        for name in names:
            cfg = _tiny_cfg(root, name, optimizer=name, batch_size=batch, lr=0.01, warmup_frac=0.0, min_lr_frac=1.0,
                            grad_clip=0.0, weight_decay=0.0, sharpness=6, log_every=100, **C8_CPU[name])
            logs[name] = _run(cfg)
    return logs


def c8(quick: bool = False) -> dict:
    names = ["adamw", "galore"] if quick else list(C8_CPU)
    cpu = {name: c8_from_log(recs, C8_BAND["cpu"]) for name, recs in c8_cpu_logs(names).items()}
    gpu = {}
    for name in C8_CPU:
        rec = _recorded(f"c8_{name}")
        gpu[name] = c8_from_log(rec[0], C8_BAND["gpu"]) if rec else "not measured"
    measured = [d["verdict"] for d in cpu.values()] + [d["verdict"] for d in gpu.values() if isinstance(d, dict)]
    gpu_text = "; ".join(_fmt8(n, d) if isinstance(d, dict) else f"{n} not measured" for n, d in gpu.items())
    evidence = (f"CPU tiny, full batch, lr 0.01, median of rho = lambda*eta/38 over the last {C8_LAST} measurements "
                f"(band {C8_BAND['cpu']}): " + "; ".join(_fmt8(n, d) for n, d in cpu.items())
                + f". GPU 60M (band {C8_BAND['gpu']}): {gpu_text}"
                + ("" if all(isinstance(d, dict) for d in gpu.values()) else f" (run {GPU_COMMAND})")
                + (". quick: osd's CPU run left out" if quick else ""))
    return {"claim": "C8",
            "statement": "Full-batch Adam's preconditioned sharpness settles at the adaptive edge of stability "
                         "(2+2b1)/((1-b1) eta) = 38/eta; for GaLore and OSD the projected preconditioned sharpness "
                         "settles there and the full-space one is at least as large (pre-registered: "
                         "docs/training-claims.md).",
            "verdict": _combine(measured), "evidence": evidence,
            "details": {"cpu": cpu, "gpu": gpu, "gpu_part": "measured" if any(isinstance(d, dict) for d in gpu.values())
                        else "not measured"}}


# ------------------------------------------------------------------------------------------ C9
def projected_dims(model: str, vocab_size: int = 320) -> list[int]:
    """d (the projected, smaller side) of every projected matrix of ``model``, from a meta-device build."""
    import torch

    from discrete.validation.model import build_model
    from discrete.validation.optim import split_params

    with torch.device("meta"):
        m = build_model(model, vocab_size=vocab_size, max_seq_len=16)
    return [min(p.shape) for p in split_params(m)[0]]


def c9_from_log(records: list[dict], rank: int, dims: list[int], tol: float) -> dict:
    """C9's verdict from a run's train records (``refreshed``, ``residual_after``)."""
    n = len(dims)
    pred = [math.sqrt(1 - rank / d) for d in dims]
    lo, hi = min(pred), max(pred)  # one value when every projected side has the same d
    at = [r for r in records if r.get("kind") == "train" and r.get("refreshed") == n and r["step"] > 1
          and r.get("residual_after") is not None]
    between = [r["residual"] for r in records if r.get("kind") == "train" and not r.get("refreshed")
               and r.get("residual") is not None]
    out = {"predicted": [lo, hi], "tolerance": tol, "resample_steps": [r["step"] for r in at],
           "residual_after": [r["residual_after"] for r in at],
           "mean_residual_between": sum(between) / len(between) if between else None}
    if not at:
        out.update(verdict="inconclusive", why="no logged resample after step 1 (run with --log-refresh)")
        return out
    worst = max(max(lo - x, x - hi, 0.0) for x in out["residual_after"])
    out.update(max_deviation=worst, verdict="holds" if worst <= tol else "violated")
    return out


def _fmt9(d: dict) -> str:
    if "max_deviation" not in d:
        return f"{d['verdict']} ({d['why']})"
    vals = ", ".join(f"{x:.4f}" for x in d["residual_after"])
    return (f"residual_after at steps {d['resample_steps']} = {vals} against {d['predicted'][0]:.4f}, max deviation "
            f"{d['max_deviation']:.4f} (tolerance {d['tolerance']}) [{d['verdict']}]")


C9_RANK = 8


def c9_cpu_log() -> list[dict]:
    """The CPU part's run log (pre-registered setup: tiny rso, r = 8, resample every 10 steps, ``--log-refresh``)."""
    with tempfile.TemporaryDirectory(prefix="c9-") as tmp:
        root = Path(tmp)
        synthetic_corpus(root / "corpus")
        cfg = _tiny_cfg(root, "rso", optimizer="rso", steps=60, batch_size=8, lr=0.01, update_proj_gap=10,
                        log_every=5, log_refresh=True, rank=C9_RANK)
        return _run(cfg)


def c9(quick: bool = False) -> dict:
    cpu = c9_from_log(c9_cpu_log(), C9_RANK, projected_dims("tiny"), C9_TOL["cpu"])
    rec = _recorded("c9_rso")
    gpu: dict | str = "not measured"
    if rec:
        gcfg = rec[1]
        gpu = c9_from_log(rec[0], int(gcfg.get("rank") or 128), projected_dims(gcfg.get("model", "60m")),
                          C9_TOL["gpu"])
    measured = [cpu["verdict"]] + ([gpu["verdict"]] if isinstance(gpu, dict) else [])
    evidence = (f"CPU tiny rso r=8 d=64, period 10: {_fmt9(cpu)}; mean residual at the other log steps "
                + (f"{cpu['mean_residual_between']:.4f}" if cpu["mean_residual_between"] is not None else "n/a")
                + ". GPU 60M r=128 d=512: " + (_fmt9(gpu) if isinstance(gpu, dict) else f"not measured (run {GPU_COMMAND})"))
    return {"claim": "C9",
            "statement": "Right after every RSO resample the projection residual ||(I-PP^T)G||/||G|| equals "
                         "sqrt(1-r/d) within the pre-registered tolerance (docs/training-claims.md).",
            "verdict": _combine(measured), "evidence": evidence,
            "details": {"cpu": cpu, "gpu": gpu, "gpu_part": "measured" if isinstance(gpu, dict) else "not measured"}}
