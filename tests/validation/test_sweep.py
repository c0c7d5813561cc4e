"""Issue 9, item 9: a tiny 2 x 2 sweep (optimizer x seed) end to end on CPU, resumed as a whole, then reported."""
from __future__ import annotations

import dataclasses
import json
import shutil

from discrete.validation.runlog import read_log
from discrete.validation.trainer import train
from osd_theory.cli import main as cli_main


def _sweep_args(corpus_dir, cache_dir, out, *extra):
    return ["sweep", "--model", "tiny", "--steps", "3", "--batch-size", "4", "--seq-len", "16", "--vocab-size", "320",
            "--val-tokens", "256", "--max-train-chars", "0", "--data", str(corpus_dir), "--cache-dir", str(cache_dir),
            "--rank", "4", "--log-every", "1", "--device", "cpu", "--no-progress", "--out", str(out), *extra]


def _val_loss(run_dir) -> float:
    return [r["val_loss"] for r in read_log(run_dir) if r["kind"] == "eval"][-1]


def test_sweep_2x2_runs_resumes_and_reports_groups(corpus_dir, cache_dir, tmp_path, capsys):
    from discrete.validation.sweep import load_sweep, sweep_runs

    root = tmp_path / "sweep"
    args = _sweep_args(corpus_dir, cache_dir, root)
    assert cli_main(args + ["--grid", "optimizer=adamw,galore", "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    runs = sweep_runs(root)
    assert [d.name for d in runs] == ["optimizer=adamw_seed=0", "optimizer=galore_seed=0", "optimizer=adamw_seed=1",
                                      "optimizer=galore_seed=1"]
    for d in runs:
        cfg = json.loads((d / "config.json").read_text())
        assert (cfg["optimizer"], cfg["seed"], cfg["steps"]) == (d.name.split("_")[0].split("=")[1],
                                                                int(d.name[-1]), 3)
    assert "sweep [4/4]" in out and "Student-t 95%" in out  # progress, then the grouped table
    before = {d.name: _val_loss(d) for d in runs}
    assert before[runs[0].name] != before[runs[2].name]  # the seed matters

    # again without --resume: refused, nothing touched
    assert cli_main(args + ["--grid", "optimizer=adamw,galore", "--seeds", "0,1"]) == 2
    assert "already holds a sweep" in capsys.readouterr().err

    # cut the sweep: one run gone, one stopped after its first step (with a checkpoint)
    shutil.rmtree(runs[1])
    sweep = load_sweep(root)
    partial = sweep.config(sweep.points()[3])
    train(dataclasses.replace(partial, stop_after=1, overwrite=True))
    capsys.readouterr()
    assert cli_main(["sweep", "--resume", "--out", str(root)]) == 0
    out = capsys.readouterr().out
    assert "[1/4] optimizer=adamw_seed=0: finished, skipped" in out
    assert "[2/4] optimizer=galore_seed=0: start" in out
    assert "[4/4] optimizer=galore_seed=1: resume" in out
    assert {d.name: _val_loss(d) for d in runs} == before  # the resumed sweep gives the same runs

    # the report groups the seeds: two groups of two, with intervals
    assert cli_main(["report", str(root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and all(r["group_n"] == 2 and r["val_ppl_ci95"] is None for r in rows)  # n < 3: no interval
    assert len({r["group"] for r in rows}) == 2


def test_sweep_refuses_bad_grids_before_running(corpus_dir, cache_dir, tmp_path, capsys):
    root = tmp_path / "sweep"
    args = _sweep_args(corpus_dir, cache_dir, root)
    for grid, message in (("lr=0.01,nan", "--grid lr nan: must be a finite number > 0"),
                          ("optimizer=adamw,sgdx", "unknown optimizer 'sgdx'"),
                          ("seed=0,1", "--seeds"),
                          ("out=a,b", "not a setting a grid can vary"),
                          ("micro_batch_size=2,3", "sweep run micro_batch_size=3_seed=0: --micro-batch-size 3")):
        assert cli_main(args + ["--grid", grid, "--seeds", "0"]) == 2, grid
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (grid, err)
    assert not root.exists()


# ---------------------------------------------------------------- issue 21, item 4


def test_grid_values_that_format_alike_get_their_own_directories(tmp_path):
    import pytest

    from discrete.validation.sweep import Sweep, parse_grid
    from osd_theory.errors import UserError

    sweep = Sweep(tmp_path, {}, parse_grid(["warmup_frac=0.1,0.1000001"], {}), [0])
    names = [sweep.name(p) for p in sweep.points()]
    assert len(set(names)) == 2, names  # old code: both "warmup_frac=0.1_seed=0", the second skipped as finished
    sweep.check_names()
    clash = Sweep(tmp_path, {}, {"cache_dir": ["a/b", "a-b"]}, [0])  # "/" is not kept in a directory name
    with pytest.raises(UserError, match="would share the run directory cache_dir=a-b_seed=0"):
        clash.check_names()


def test_an_existing_directory_is_used_only_if_it_is_the_grid_points_run(corpus_dir, cache_dir, tmp_path, capsys):
    from discrete.validation.sweep import Sweep

    root = tmp_path / "sweep"
    args = _sweep_args(corpus_dir, cache_dir, root, "--optimizer", "adamw")
    sweep = Sweep(root, {}, {}, [0])
    point_dir = root / sweep.name(sweep.points()[0])
    assert point_dir.name == "seed=0"
    # a run of other settings under the grid point's name (old code: taken as the point's result)
    stray = _tiny_cfg(corpus_dir, cache_dir, point_dir, lr=0.002)
    train(stray)
    capsys.readouterr()
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a run with other settings" in err and "--lr 0.002 (the grid point: 0.001)" in err
    assert not (root / "sweep.json").exists()  # refused before anything ran
    train(_tiny_cfg(corpus_dir, cache_dir, point_dir, overwrite=True))  # now the point's own run
    assert cli_main(args) == 0
    assert "seed=0: finished, skipped" in capsys.readouterr().out


def _tiny_cfg(corpus_dir, cache_dir, out, **kw):
    from discrete.validation.config import RunConfig

    return RunConfig(**{**dict(model="tiny", optimizer="adamw", steps=3, batch_size=4, seq_len=16, vocab_size=320,
                               val_tokens=256, max_train_chars=0, data=str(corpus_dir), cache_dir=str(cache_dir),
                               rank=4, log_every=1, device="cpu", progress=False, out=str(out)), **kw})


def test_report_lists_the_runs_a_sweep_expects(tmp_path, capsys):
    from discrete.validation.sweep import Sweep

    root = tmp_path / "sweep"
    sweep = Sweep(root, {"model": "tiny", "steps": 20}, {"optimizer": ["adamw", "galore", "osd"]}, [0])
    root.mkdir()
    spec = sweep.to_json()
    for point in sweep.points():
        d = root / sweep.name(point)
        d.mkdir()
        (d / "config.json").write_text(json.dumps(sweep.config(point).to_json()))
        recs = [{"kind": "train", "step": 20, "tokens": 100, "loss": 5.0, "tokens_per_s": 10.0}]
        if point["optimizer"] == "adamw":  # finished: an eval at the last step
            recs.append({"kind": "eval", "step": 20, "tokens": 100, "val_loss": 5.0, "val_ppl": 148.4})
        (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    shutil.rmtree(root / "optimizer=osd_seed=0")  # deleted
    spec["runs"] = spec["runs"][:2]                # and dropped from sweep.json by hand
    (root / "sweep.json").write_text(json.dumps(spec))
    assert cli_main(["report", str(root)]) == 0
    out, err = capsys.readouterr()
    assert (f"sweep {root}: 3 runs expected, 1 finished; missing: optimizer=osd_seed=0; "
            "unfinished: optimizer=galore_seed=0 (broken)") in out  # old code: silent about both
    assert "run list differs from its grid" in err
