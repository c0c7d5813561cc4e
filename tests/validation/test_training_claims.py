"""C8/C9 (discrete/validation/claims.py): verdicts computed from run logs, a real tiny run, the GPU part."""
from __future__ import annotations

import json
import math


from discrete.validation import claims as C


def sharp(step, rho, full=None):
    r = {"kind": "train", "step": step, "sharpness_ratio": rho}
    if full is not None:
        r["sharpness_full_ratio"] = full
    return r


def test_c8_verdict_is_the_median_of_the_last_four_measurements_in_the_band():
    early = [sharp(s, 50.0) for s in (1, 2, 3)]  # the first steps' bias correction: far above, ignored
    assert C.c8_from_log(early + [sharp(s, x) for s, x in zip((5, 7, 10, 15), (0.5, 1.1, 0.9, 1.6))],
                         (0.8, 1.25))["verdict"] == "holds"      # median 1.0
    assert C.c8_from_log(early + [sharp(s, 0.5) for s in (5, 7, 10, 15)], (0.8, 1.25))["verdict"] == "violated"
    assert C.c8_from_log(early, (0.8, 1.25))["verdict"] == "inconclusive"


def test_c8_subspace_verdict_needs_the_full_space_at_least_the_projected():
    ok = [sharp(s, 1.0, 1.5) for s in (5, 7, 10, 15)]
    bad = [sharp(s, 1.0, 0.9) for s in (5, 7, 10, 15)]
    assert C.c8_from_log(ok, (0.8, 1.25))["verdict"] == "holds"
    assert C.c8_from_log(ok, (0.8, 1.25))["full_exceeds"] is True
    assert C.c8_from_log(bad, (0.8, 1.25))["verdict"] == "violated"


def resample(step, after, n=14):
    return {"kind": "train", "step": step, "refreshed": n, "residual": None, "residual_after": after}


def test_c9_verdict_from_resample_records():
    dims, pred = [64] * 14, math.sqrt(1 - 8 / 64)
    first = resample(1, 0.5)  # step 1 is left out (the brief's "beyond step 1"; here a wild value)
    assert C.c9_from_log([first, resample(11, pred + 0.02), resample(21, pred - 0.01)], 8, dims, 0.03)["verdict"] == "holds"
    assert C.c9_from_log([first, resample(11, pred + 0.04)], 8, dims, 0.03)["verdict"] == "violated"
    assert C.c9_from_log([first, resample(11, pred, n=13)], 8, dims, 0.03)["verdict"] == "inconclusive"  # not all
    assert C.c9_from_log([first], 8, dims, 0.03)["verdict"] == "inconclusive"


def test_projected_dims_of_tiny():
    assert C.projected_dims("tiny") == [64] * 14  # 2 blocks x (q, k, v, o, gate, up, down), smaller side dim 64


def test_c9_from_a_real_tiny_run_with_gpu_part_not_measured(monkeypatch, tmp_path):
    monkeypatch.setattr(C, "RECORDED", tmp_path / "none")
    res = C.c9()
    cpu = res["details"]["cpu"]
    assert cpu["resample_steps"] == [11, 21, 31, 41, 51]          # every resample of the 60 steps was logged
    assert res["verdict"] == cpu["verdict"] and res["verdict"] in ("holds", "violated")
    assert res["details"]["gpu"] == "not measured" and "not measured" in res["evidence"]


def test_c8_cpu_run_gives_a_verdict_from_its_log(tmp_path):
    root = tmp_path
    C.synthetic_corpus(root / "corpus")
    batch = C._full_batch(C._tiny_cfg(root, "probe", optimizer="adamw", batch_size=1))
    cfg = C._tiny_cfg(root, "g", optimizer="galore", batch_size=batch, lr=0.01, warmup_frac=0.0, min_lr_frac=1.0,
                      grad_clip=0.0, sharpness=3, steps=10, log_every=100, **C.C8_CPU["galore"])
    out = C.c8_from_log(C._run(cfg), C.C8_BAND["cpu"])
    assert out["steps_all"] == [1, 2, 5, 10] and out["verdict"] in ("holds", "violated")
    assert all(math.isfinite(x) for x in out["rho_all"]) and out["full_over_proj"] >= 0.99


def test_gpu_part_is_read_from_a_recorded_log(monkeypatch, tmp_path):
    run = tmp_path / "c9_rso"
    run.mkdir(parents=True)
    recs = [resample(1, 0.9), resample(201, 0.866, n=56), resample(401, 0.95, n=56)]
    run.joinpath("log.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    run.joinpath("config.json").write_text(json.dumps({"model": "60m", "rank": 128}))
    monkeypatch.setattr(C, "RECORDED", tmp_path)
    got = C._recorded("c9_rso")
    out = C.c9_from_log(got[0], 128, C.projected_dims("60m"), C.C9_TOL["gpu"])
    assert out["resample_steps"] == [201, 401] and out["verdict"] == "violated"  # 0.95 is 0.084 off 0.866
    assert C._recorded("c8_adamw") is None
