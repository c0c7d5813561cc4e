"""Issue 12: the coverage metrics (visited dimension, shape of W_t - W_0), logged, resumable, training unchanged."""
from __future__ import annotations

import math

import pytest
import torch

from discrete.validation import metrics as M
from discrete.validation.checkpoint import CHECKPOINT_NAME
from discrete.validation.runlog import read_log
from discrete.validation.trainer import train

VISITED = ("visited_dim", "visited_dim_min", "visited_dim_max")
UPDATE = ("update_stable_rank", "update_eff_rank", "update_top_r_energy")


def _orthonormal_columns(d: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, n, generator=g, dtype=torch.float64))[0]


def _visits(Ps) -> torch.Tensor:
    pi = None
    for P in Ps:
        pi = M.add_visit(pi, P)
    return pi


# ---------------------------------------------------------------- metric functions against float64


def test_fixed_subspace_visits_r_dimensions_whatever_its_basis():
    Q = _orthonormal_columns(32, 4, 0).float()
    mix = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))  # same span, not orthonormal (OSD's P)
    pi = _visits([Q, Q @ mix, 3 * Q])
    assert M.participation_ratio(pi) == pytest.approx(4, rel=1e-5)


@pytest.mark.parametrize("K", [1, 3, 8])
def test_k_orthogonal_subspaces_visit_k_times_r(K):
    Q = _orthonormal_columns(32, 4 * K, 2).float()
    pi = _visits([Q[:, 4 * k: 4 * (k + 1)] for k in range(K)])
    assert M.participation_ratio(pi) == pytest.approx(4 * K, rel=1e-5)


def test_visited_dim_against_the_eigenvalue_formula_and_bounded_by_the_dimension():
    Ps = [torch.randn(16, 3, generator=torch.Generator().manual_seed(s)) for s in range(40)]
    pi = _visits(Ps)
    lam = sum(torch.linalg.qr(P.double())[0] @ torch.linalg.qr(P.double())[0].T for P in Ps)
    lam = torch.linalg.eigvalsh(lam / len(Ps))
    ref = float(lam.sum() ** 2 / lam.pow(2).sum())
    assert M.participation_ratio(pi) == pytest.approx(ref, rel=1e-5)
    assert 3 < ref <= 16
    out = M.visited_dim([pi, _visits(Ps[:1])])
    assert out == pytest.approx({"visited_dim": (ref + 3) / 2, "visited_dim_min": 3, "visited_dim_max": ref}, rel=1e-5)
    assert M.visited_dim([]) == {}


def test_update_of_rank_k_has_stable_rank_at_most_k_and_all_energy_in_the_top_r():
    g = torch.Generator().manual_seed(3)
    k = 3
    dW = torch.randn(20, k, generator=g, dtype=torch.float64) @ torch.randn(k, 30, generator=g, dtype=torch.float64)
    s = torch.linalg.svdvals(dW)
    for r in (k, k + 2):
        out = M.update_shape([dW.float()], r)
        assert out["update_stable_rank"] <= k + 1e-6
        assert out["update_stable_rank"] == pytest.approx(float((s ** 2).sum() / s[0] ** 2), rel=1e-6)
        assert out["update_top_r_energy"] == pytest.approx(1.0, abs=1e-6)
        assert out["update_eff_rank"] <= k + 1e-6
    assert M.update_shape([dW], 1)["update_top_r_energy"] == pytest.approx(float(s[0] ** 2 / (s ** 2).sum()))


def test_effective_rank_of_a_diagonal_is_exp_of_the_entropy_of_normalised_singular_values():
    sigma = torch.tensor([4.0, 2.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    p = sigma[:4] / sigma.sum()
    expect = math.exp(-float((p * p.log()).sum()))
    out = M.update_shape([torch.diag(sigma)], 2)
    assert out["update_eff_rank"] == pytest.approx(expect, rel=1e-12)
    assert out["update_stable_rank"] == pytest.approx(22 / 16, rel=1e-12)
    assert out["update_top_r_energy"] == pytest.approx(20 / 22, rel=1e-12)
    assert M.update_shape([torch.eye(5)], 2)["update_eff_rank"] == pytest.approx(5)  # flat spectrum: full rank
    assert M.update_shape([torch.zeros(3, 4)], 2) == {}  # no update, no shape


# ---------------------------------------------------------------- in the trainer


def _cov_cfg(make_cfg, tmp_path, name, **kw):
    # 6 steps, log every 2, eval at 3 and 6; gap 2: GaLore refreshes between log steps
    base = dict(steps=6, log_every=2, eval_every=3, update_proj_gap=2, coverage=True, lr=2e-2,
                out=str(tmp_path / name))
    return make_cfg(**{**base, **kw})


@pytest.mark.parametrize("optimizer", ["galore", "osd", "adamw"])
def test_coverage_run_logs_the_keys(make_cfg, tmp_path, optimizer):
    cfg = _cov_cfg(make_cfg, tmp_path, optimizer, optimizer=optimizer)
    train(cfg)
    log = read_log(cfg.out)
    trains = [r for r in log if r["kind"] == "train"]
    evals = [r for r in log if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [3, 6]
    for r in evals:
        assert set(UPDATE) <= r.keys()
        assert 1 <= r["update_stable_rank"] <= r["update_eff_rank"] + 1e-9  # stable rank <= effective rank
        assert 0 < r["update_top_r_energy"] <= 1
    if optimizer == "adamw":
        assert not any(k in r for r in trains for k in VISITED)
        return
    rank, smallest = cfg.rank, 32  # tiny: dim 32, the projected side of every matrix
    for r in trains:
        assert set(VISITED) <= r.keys()
        assert rank - 1e-4 <= r["visited_dim_min"] <= r["visited_dim"] <= r["visited_dim_max"] <= smallest + 1e-4
    assert trains[-1]["visited_dim"] > rank + 1e-3  # the subspace moved in 6 steps (OSD: slowly)
    if optimizer == "galore":  # one SVD basis up to the first refresh (step 1), then new SVD bases
        assert trains[0]["visited_dim"] == pytest.approx(rank, rel=1e-5)
        assert trains[-1]["visited_dim"] > rank + 1


def test_coverage_leaves_training_unchanged(make_cfg, tmp_path):
    runs = {}
    for on in (False, True):
        cfg = _cov_cfg(make_cfg, tmp_path, f"cov{on}", optimizer="osd", coverage=on)
        train(cfg)
        runs[on] = cfg
    la, lb = ([(r["step"], r.get("loss"), r.get("val_loss")) for r in read_log(c.out)] for c in runs.values())
    assert la == lb
    a, b = (torch.load(tmp_path / f"cov{on}" / CHECKPOINT_NAME, weights_only=True) for on in (False, True))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert "coverage" in b["extra"] and "coverage" not in a["extra"]


@pytest.mark.parametrize("optimizer", ["galore", "adamw"])
def test_resumed_run_logs_the_coverage_of_an_uninterrupted_one(make_cfg, tmp_path, optimizer):
    full = _cov_cfg(make_cfg, tmp_path, "full", optimizer=optimizer)
    train(full)
    part = _cov_cfg(make_cfg, tmp_path, "part", optimizer=optimizer, stop_after=4)  # after log 4 and eval 3
    train(part)
    part.stop_after, part.resume = None, True
    train(part)
    keys = VISITED + UPDATE
    la, lb = ([{k: r.get(k) for k in ("step", "kind", *keys)} for r in read_log(c.out)] for c in (full, part))
    assert la == lb
    assert any(r.get("visited_dim") for r in la) == (optimizer != "adamw")


def test_coverage_under_fsdp_is_refused_before_anything_runs():
    from discrete.validation.config import RunConfig
    from discrete.validation.resolve import resolve
    from osd_theory.errors import UserError

    resolve(RunConfig(model="tiny", optimizer="osd", fsdp=True), world=2)  # fine without --coverage
    with pytest.raises(UserError, match="--coverage .*--fsdp"):
        resolve(RunConfig(model="tiny", optimizer="osd", fsdp=True, coverage=True), world=2)
