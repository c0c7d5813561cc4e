"""Numbers quoted in the docs are the numbers in the recorded files they come from.

Each row of :data:`CHECKS` is (doc, quoted text with ``{}`` fields, record file(s), the function that
computes the fields from the record, the formatting). The test formats the fields from the record
and requires the doc to contain the result (whitespace-normalised, so line breaks do not matter).
It fails if the doc's number is edited away from its record, or if the record changes under an
unchanged doc. To quote a new number, add a row here in the same commit.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from discrete.validation.stats import mean_ci

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "docs" / "results"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def signed(x: float, digits: int = 2) -> str:
    """+1.23 / −1.23 with the typographic minus the docs use."""
    return f"{x:+.{digits}f}".replace("-", "−")


# -- record readers ---------------------------------------------------------------------------
def memory_row(model: str, optimizer: str, **match) -> dict:
    """The one row of memory.jsonl for (model, optimizer) and the given keys (ambiguity is an error)."""
    rows = [r for r in jsonl(RES / "benchmarks" / "memory.jsonl")
            if r["model"] == model and r["optimizer"] == optimizer and all(r.get(k) == v for k, v in match.items())]
    assert len(rows) == 1, f"{len(rows)} rows of memory.jsonl match {model} {optimizer} {match}"
    return rows[0]


def peak_1b(opt: str) -> float:
    return memory_row("1b", opt, activation_checkpointing=False, per_layer_mode="off", status="ok")["peak_gb"]


def final_ppl(run_dir: Path) -> float:
    return [r for r in jsonl(run_dir / "log.jsonl") if r.get("kind") == "eval"][-1]["val_ppl"]


def paired(a: str, b: str, seeds: range, where: str = "runs_1000") -> tuple[float, float]:
    """Student-t 95 % (mean, half-width) of val PPL(a_sK) − PPL(b_sK) over the seeds (stats.mean_ci)."""
    root = RES / "validation" / "osd_vs_galore" / where
    return mean_ci([final_ppl(root / f"{a}_s{k}") - final_ppl(root / f"{b}_s{k}") for k in seeds])


def h_jump_first_refresh(run: str) -> float:
    """H(first log step after the first refresh) − H(the log step before it), of a recorded 60M run."""
    d = RES / "validation" / "runs" / run
    gap = json.loads((d / "config.json").read_text())["update_proj_gap"]
    H = {r["step"]: r["H"] for r in jsonl(d / "log.jsonl") if r.get("kind") == "train" and "H" in r}
    before = max(s for s in H if s <= gap)
    after = min(s for s in H if s > gap)
    return H[after] - H[before]


def claim_cpu(claim: str) -> dict:
    rec = json.loads((RES / "validation" / "claims" / "cpu_verify.json").read_text())
    return next(r for r in rec["results"] if r["claim"] == claim)["details"]["cpu"]


def report_60m(run: str) -> dict:
    return next(r for r in json.loads((RES / "validation" / "report_60m.json").read_text()) if r["run"] == run)


def dispatch_row(name: str, commit: str, **match) -> dict:
    """The one row of dispatch.jsonl named ``name`` at a commit (its first 7 digits) with the given keys."""
    rows = [r for r in jsonl(RES / "benchmarks" / "dispatch.jsonl") if r["name"] == name
            and r["commit"].startswith(commit) and all((k in r) if v is ... else r.get(k) == v for k, v in match.items())]
    assert len(rows) == 1, f"{len(rows)} rows of dispatch.jsonl match {name} {commit} {match}"
    return rows[0]


def large_layout_ops(name: str) -> str:
    r = dispatch_row(name, "7c0c0e2", layout="large")
    return f"{r['ops']} ({r['x_torch_adamw_foreach']:.2f}×)"


def host_x(name: str, commit: str) -> str:
    return f"{dispatch_row(name, commit, host_ms=...)['host_x_torch_adamw_foreach']:.2f}"


def analytic_7b(optimizer: str, **match) -> float:
    """Static formula bytes (GiB) of the 7B row: bf16 weights, 8-bit states, per-layer in backward."""
    rows = [r for r in jsonl(RES / "benchmarks" / "analytic" / "memory.jsonl")
            if r["model"] == "7b" and r["optimizer"] == optimizer and r.get("weights") == "bf16"
            and r.get("state_dtype") == "int8" and r["per_layer_mode"] == "in_backward"
            and all(r.get(k, d) == v for k, (v, d) in match.items())]
    assert rows, f"no analytic 7b {optimizer} row with {match}"
    return rows[-1]["analytic"]["static"]


def bf16_basis(name: str) -> str:
    return signed(100 * next(r for r in jsonl(RES / "benchmarks" / "bf16_basis.jsonl") if r["name"] == name)["rel_diff"], 1)


@dataclass
class Check:
    doc: str
    quoted: str                       # the doc's text, with {} where the record's formatted values go
    record: str                       # the record file(s), for the failure message
    values: Callable[[], tuple]       # the values, formatted already (strings)


GIB = 2 ** 30
CHECKS = {
    "scaling: 1B peaks in the intro": Check(
        "docs/scaling.md", "peaks at {} GB with AdamW, {} GB with GaLore and {} GB with OSD",
        "docs/results/benchmarks/memory.jsonl",
        lambda: tuple(f"{peak_1b(o):.2f}" for o in ("adamw", "galore", "osd"))),
    "scaling: 1B peaks in the table": Check(
        "docs/scaling.md", "| 1B, 16 × 256 | galore | off | off | {} | {} % |", "docs/results/benchmarks/memory.jsonl",
        lambda: (f"{peak_1b('galore'):.2f}", f"{100 * peak_1b('galore') / peak_1b('adamw'):.0f}")),
    "scaling: 7B AdamW static bytes": Check(
        "docs/scaling.md", "AdamW needs {} GiB = {} GB for weights, gradients and state alone",
        "docs/results/benchmarks/memory.jsonl (7b adamw, analytic static, GiB)",
        lambda: (lambda s: (f"{s:.1f}", f"{s * GIB / 1e9:.1f}"))(memory_row("7b", "adamw", status="exceeds_cap", weights=None,
                                                                               loss_chunk=1024)["analytic"]["static"])),
    "benchmarks: 1B refresh step": Check(
        "docs/results/benchmarks/README.md", "A 1B refresh step with cuSOLVER's SVD took {} s",
        "docs/results/benchmarks/step_1b/call1_per_matrix_path.jsonl (GaLore regular step, refresh_step_ms)",
        lambda: (f"{next(r for r in jsonl(RES / 'benchmarks' / 'step_1b' / 'call1_per_matrix_path.jsonl') if r['name'] == 'GaLore regular step')['refresh_step_ms'] / 1000:.2f}",)),
    "osd_vs_galore: RSO against OSD (not resolved)": Check(
        "docs/results/validation/osd_vs_galore/README.md", "Against OSD it is {} ± {} PPL",
        "osd_vs_galore/runs_1000/{rso,osd}_s0..2 log.jsonl",
        lambda: (lambda m, h: (signed(m), f"{h:.2f}"))(*paired("rso", "osd", range(3)))),
    "osd_vs_galore: RSO against GaLore": Check(
        "docs/results/validation/osd_vs_galore/README.md", "(80.3 ± 1.4; {} ± {} PPL paired)",
        "osd_vs_galore/runs_1000/{rso,galore}_s0..2 log.jsonl",
        lambda: (lambda m, h: (signed(m), f"{h:.2f}"))(*paired("rso", "galore", range(3)))),
    "osd_vs_galore: first transport (not resolved)": Check(
        "docs/results/validation/osd_vs_galore/README.md", "R = P_newᵀP_old, was {} ± {} PPL (worse for each of 3 seeds",
        "osd_vs_galore/runs_1000/{osd_rotm,osd}_s0..2 log.jsonl",
        lambda: (lambda m, h: (signed(m), f"{h:.2f}"))(*paired("osd_rotm", "osd", range(3)))),
    "osd_vs_galore: OSD behind GaLore, 6 seeds": Check(
        "docs/results/validation/osd_vs_galore/README.md", "At 60M OSD is {} ± {} PPL behind GaLore (6 seeds",
        "osd_vs_galore/runs_1000/{osd,galore}_s0..5 log.jsonl",
        lambda: (lambda m, h: (f"{m:.1f}", f"{h:.1f}"))(*paired("osd", "galore", range(6)))),
    "README: OSD against AdamW and GaLore at 60M": Check(
        "README.md", "OSD val PPL is {}× AdamW's but {} % worse than GaLore's",
        "docs/results/validation/report_60m.json (osd_a0.5, adamw, galore)",
        lambda: (f"{report_60m('osd_a0.5')['val_ppl'] / report_60m('adamw')['val_ppl']:.3f}",
                 f"{100 * (report_60m('osd_a0.5')['val_ppl'] / report_60m('galore')['val_ppl'] - 1):.1f}")),
    "README: 1B peaks relative to AdamW": Check(
        "README.md", "1B memory (batch 16, no checkpointing): GaLore's peak is {} % of AdamW's, OSD's {} %",
        "docs/results/benchmarks/memory.jsonl",
        lambda: tuple(f"{100 * peak_1b(o) / peak_1b('adamw'):.0f}" for o in ("galore", "osd"))),
    "README: OSD's gap to GaLore, 60M (6 seeds) and 130M": Check(
        "README.md", "splits OSD's gap to GaLore (+{} PPL at 60M over 6 seeds, +{} at 130M)",
        "osd_vs_galore/runs_1000 and runs_130m/{osd,galore}_sK log.jsonl",
        lambda: (f"{paired('osd', 'galore', range(6))[0]:.1f}", f"{paired('osd', 'galore', range(3), 'runs_130m')[0]:.1f}")),
    "notebook 05: GaLore's H at its first refresh": Check(
        "notebooks/05_theory_to_training.py", "rises at its first refresh too ({} and {} at 60M, seeds 0 and 1",
        "docs/results/validation/runs/{galore,galore_seed1}/log.jsonl",
        lambda: tuple(signed(h_jump_first_refresh(r)) for r in ("galore", "galore_seed1"))),
    "notebook 05: RSO's H at its first resample": Check(
        "notebooks/05_theory_to_training.py", "against {} for RSO's first resample",
        "docs/results/validation/runs/rso/log.jsonl", lambda: (signed(h_jump_first_refresh("rso"), 1),)),
    "training claims: C8 adamw": Check(
        "docs/training-claims.md", "| C8 | adamw, tiny, full batch | median ρ = {} |",
        "docs/results/validation/claims/cpu_verify.json", lambda: (f"{claim_cpu('C8')['adamw']['rho']:.3f}",)),
    "training claims: C8 galore and osd": Check(
        "docs/training-claims.md", "| C8 | galore, tiny | median ρ_proj = {}, ρ_full = {} | [0.8, 1.25]; ρ_full/ρ_proj ≥ "
        "0.99 | holds | | C8 | osd, tiny | median ρ_proj = {}, ρ_full = {} |",
        "docs/results/validation/claims/cpu_verify.json",
        lambda: tuple(f"{claim_cpu('C8')[o][k]:.3f}" for o in ("galore", "osd") for k in ("rho", "rho_full"))),
    "training claims: C9": Check(
        "docs/training-claims.md", "(max deviation {}) | 0.03 | holds |", "docs/results/validation/claims/cpu_verify.json",
        lambda: (f"{claim_cpu('C9')['max_deviation']:.4f}",)),
    "training claims: C9 between resamples": Check(
        "docs/training-claims.md", "residual with the carried P averages {}", "docs/results/validation/claims/cpu_verify.json",
        lambda: (f"{claim_cpu('C9')['mean_residual_between']:.4f}",)),
    "scaling: P in bf16, the loss": Check(
        "docs/scaling.md", "final loss bf16 P − float32 P relative: GaLore {} %, RSO {} %, OSD with the `gd` P step {} %, "
        "OSD with Adam on P {} %", "docs/results/benchmarks/bf16_basis.jsonl",
        lambda: tuple(bf16_basis(n) for n in ("galore", "rso", "osd_gd", "osd"))),
    "scaling: P in bf16, 7B formula bytes": Check(
        "docs/scaling.md", "GaLore {} → **{} GB** static, OSD with Adam on P {} → **{} GB** (as much as GaLore with a "
        "float32 P, which measured 23.15 GB), OSD with the `gd` P step **{} GB**",
        "docs/results/benchmarks/analytic/memory.jsonl (7b, bf16 weights, int8 states, in_backward)",
        lambda: tuple(f"{x:.2f}" for x in (
            analytic_7b("galore", proj_dtype=("float32", "float32")), analytic_7b("galore", proj_dtype=("bf16", "float32")),
            analytic_7b("osd", proj_dtype=("float32", "float32"), proj_optimizer=("adam", "adam")),
            analytic_7b("osd", proj_dtype=("bf16", "float32"), proj_optimizer=("adam", "adam")),
            analytic_7b("osd", proj_dtype=("bf16", "float32"), proj_optimizer=("gd", "adam"))))),
    "benchmarks: ops at the 1B layout": Check(
        "docs/results/benchmarks/README.md", "at the 1B layout **OSD {}, GaLore {}, RSO {}**",
        "docs/results/benchmarks/dispatch.jsonl (layout large, 7c0c0e2)",
        lambda: tuple(large_layout_ops(n) for n in ("OSD", "GaLore", "RSO"))),
    "benchmarks: host work per step": Check(
        "docs/results/benchmarks/README.md", "| GaLore, defaults | {}× torch AdamW foreach | **{}×** | | OSD, defaults | "
        "{}× | **{}×** | | RSO, defaults | {}× | **{}×** | | discrete.AdamW | {}× | **{}×** |",
        "docs/results/benchmarks/dispatch.jsonl (host_ms, 7c0c0e2 and ab6f121)",
        lambda: tuple(host_x(n, c) for n in ("GaLore", "OSD", "RSO", "discrete.AdamW") for c in ("7c0c0e2", "ab6f121"))),
    "optimizer page: ops and host time": Check(
        "docs/optimizers.md", "launch, GaLore {}, OSD {}, RSO {}. Host time of that step (Python and dispatch, tiny "
        "tensors, interleaved with torch's foreach AdamW): GaLore {}×, OSD {}×, discrete.AdamW {}× torch's",
        "docs/results/benchmarks/dispatch.jsonl",
        lambda: (*(str(dispatch_row(n, "7c0c0e2", layout="large")["ops"]) for n in ("GaLore", "OSD", "RSO")),
                 *(host_x(n, "ab6f121") for n in ("GaLore", "OSD", "discrete.AdamW")))),
}


def normalise(text: str) -> str:
    """Whitespace collapsed; a jupytext source's markdown comment marks ("# ") dropped first."""
    return re.sub(r"\s+", " ", re.sub(r"(?m)^# ?", "", text))


@pytest.mark.parametrize("name", list(CHECKS))
def test_doc_number_matches_its_record(name):
    check = CHECKS[name]
    expected = normalise(check.quoted.format(*check.values()))
    doc = normalise((ROOT / check.doc).read_text())
    assert expected in doc, (f"{check.doc} should say {expected!r} (from {check.record}); "
                             "either the doc's number drifted from its record or the record changed")


def test_a_drifted_number_is_caught(tmp_path, monkeypatch):
    """The check itself can fail: the same row against a copy of the doc with one digit changed."""
    check = CHECKS["scaling: 1B peaks in the intro"]
    text = (ROOT / check.doc).read_text()
    good = normalise(check.quoted.format(*check.values()))
    assert good in normalise(text)
    drifted = normalise(text).replace(good, good.replace(check.values()[1], "25.2"))
    assert good not in drifted
