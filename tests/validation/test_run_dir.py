"""Issue 9, items 1-3: directory rules and lock, resume rules, a log cut mid-write."""
from __future__ import annotations

import json
import os

import pytest
import torch

from discrete.validation.checkpoint import CHECKPOINT_NAME
from discrete.validation.runlog import read_log
from discrete.validation.trainer import train
from osd_theory.cli import main as cli_main
from osd_theory.errors import UserError


# ---------------------------------------------------------------- 1. directory rules


def test_new_run_refuses_a_directory_that_holds_a_run(make_cfg, capsys, cli_args, one_line_error):
    cfg = make_cfg(steps=2)
    train(cfg)
    before = {n: open(os.path.join(cfg.out, n), "rb").read() for n in ("log.jsonl", "config.json", CHECKPOINT_NAME)}
    capsys.readouterr()
    assert cli_main(cli_args(cfg)) == 2
    one_line_error("already holds a run", "--resume", "--overwrite")
    after = {n: open(os.path.join(cfg.out, n), "rb").read() for n in before}
    assert after == before  # nothing truncated, nothing replaced
    # --overwrite replaces it: a fresh log and config
    assert cli_main(cli_args(cfg, "--steps", "3", "--overwrite")) == 0
    assert [r["step"] for r in read_log(cfg.out) if r["kind"] == "train"] == [1, 2, 3]
    assert json.loads(open(os.path.join(cfg.out, "config.json")).read())["steps"] == 3


def test_a_live_run_locks_its_directory(make_cfg, capsys, monkeypatch, cli_args, one_line_error):
    fcntl = pytest.importorskip("fcntl")
    from discrete.validation import trainer

    cfg = make_cfg(steps=3)
    os.makedirs(cfg.out)
    # another live run holds the directory: refused before anything is written
    fd = os.open(cfg.out, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert cli_main(cli_args(cfg)) == 2
        one_line_error("another live run")
        assert os.listdir(cfg.out) == []
    finally:
        os.close(fd)
    # and a run holds the lock while it trains
    held = []
    real = trainer.lr_factor

    def probe(step, c):
        if step == 2:
            probe_fd = os.open(cfg.out, os.O_RDONLY)
            try:
                fcntl.flock(probe_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held.append(False)
            except BlockingIOError:
                held.append(True)
            finally:
                os.close(probe_fd)
        return real(step, c)

    monkeypatch.setattr(trainer, "lr_factor", probe)
    train(cfg)
    assert held == [True]


# ---------------------------------------------------------------- 2. resume rules


def test_resume_refuses_changed_run_settings_and_lists_them(make_cfg, capsys, one_line_error):
    cfg = make_cfg(optimizer="galore", steps=4, stop_after=2)
    train(cfg)
    saved = open(os.path.join(cfg.out, "config.json")).read()
    capsys.readouterr()
    args = ["validate", "--resume", "--out", cfg.out, "--optimizer", "osd", "--lr", "0.5", "--seed", "1", "--rank", "2"]
    assert cli_main(args) == 2
    one_line_error("--optimizer galore -> osd", "--lr", "--seed 0 -> 1", "--rank 4 -> 2")
    assert open(os.path.join(cfg.out, "config.json")).read() == saved
    assert cli_main(["validate", "--resume", "--out", cfg.out, "--steps", "3"]) == 2  # steps may only grow
    one_line_error("--steps 4 -> 3", "only grow")


def test_resume_with_more_steps_keeps_the_schedule_and_records_the_change(make_cfg, capsys):
    from discrete.validation.trainer import lr_factor

    cfg = make_cfg(steps=4, lr=1e-2)
    train(cfg)
    assert cli_main(["validate", "--resume", "--out", cfg.out, "--steps", "6", "--log-every", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "the lr schedule keeps its 4 steps" in out
    saved = json.loads(open(os.path.join(cfg.out, "config.json")).read())
    assert (saved["steps"], saved["schedule_steps"], saved["log_every"]) == (6, 4, 2)
    lrs = {r["step"]: r["lr"] for r in read_log(cfg.out) if r["kind"] == "train"}
    assert lrs[6] == pytest.approx(1e-2 * cfg.min_lr_frac)  # the extra steps run at the final lr
    assert lrs[4] == pytest.approx(1e-2 * lr_factor(4, cfg))
    events = [json.loads(ln) for ln in open(os.path.join(cfg.out, "events.jsonl"))]
    assert [e["event"] for e in events] == ["start", "resume"]
    assert events[1]["changes"] == {"steps": [4, 6], "log_every": [1, 2]} and events[1]["step"] == 4


def test_resume_of_a_checkpoint_from_another_optimizer_is_refused(make_cfg):
    a = make_cfg(optimizer="galore", steps=4, stop_after=2)
    train(a)
    # a config.json that does not belong to the checkpoint (files copied by hand)
    path = os.path.join(a.out, "config.json")
    cfg = json.loads(open(path).read())
    cfg["optimizer"] = "osd"
    open(path, "w").write(json.dumps(cfg))
    b = make_cfg(optimizer="osd", steps=4, resume=True)
    with pytest.raises(UserError, match="config.json was changed since the run wrote it"):  # issue 21: caught by hash
        train(b)


# ---------------------------------------------------------------- 3. a log cut mid-write


def test_partial_log_line_is_dropped_on_resume_and_skipped_by_report(make_cfg, tmp_path, capsys):
    full = make_cfg(steps=4, out=str(tmp_path / "full"))
    train(full)
    cfg = make_cfg(steps=4, stop_after=2)
    train(cfg)
    with open(os.path.join(cfg.out, "log.jsonl"), "a") as f:
        f.write('{"kind": "train", "step": 3, "loss": 7.1')  # the crash came mid-write
    capsys.readouterr()
    assert cli_main(["report", cfg.out]) == 0
    assert "skipped 1 unparsable line" in capsys.readouterr().err
    cfg.stop_after, cfg.resume = None, True
    train(cfg)
    assert "dropped 1 unparsable line" in capsys.readouterr().out
    assert [(r["step"], r.get("loss")) for r in read_log(cfg.out)] == [(r["step"], r.get("loss")) for r in read_log(full.out)]
    assert all(json.loads(ln) for ln in open(os.path.join(cfg.out, "log.jsonl")))
    events = [json.loads(ln) for ln in open(os.path.join(cfg.out, "events.jsonl"))]
    assert any("dropped 1 unparsable" in n for n in events[-1]["notes"])
    a = torch.load(os.path.join(full.out, CHECKPOINT_NAME), weights_only=True)["model"]
    b = torch.load(os.path.join(cfg.out, CHECKPOINT_NAME), weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
