"""Issue 21, item 3: a checkpoint knows its run; resume refuses files that are not the run's own, and never
imports a rule file this command line does not name. Item 5: a 0-byte checkpoint is a one-line error."""
from __future__ import annotations

import json
import os
import shutil

import torch

from discrete.validation.checkpoint import CHECKPOINT_NAME
from discrete.validation.trainer import train
from osd_theory.cli import main as cli_main

RULE = '''import torch
MARK = {mark!r}
open({mark!r}, "a").write("imported\\n")  # a side effect: shows whether the file was imported


def gamma(t, P, G):
    return torch.zeros_like(P)
'''


def _stopped(make_cfg, tmp_path, name="run", **kw):
    cfg = make_cfg(optimizer="galore", steps=4, stop_after=2, out=str(tmp_path / name), log_every=2, **kw)
    train(cfg)
    return cfg


def _resume(cfg, *extra) -> list[str]:
    return ["validate", "--resume", "--out", cfg.out, "--no-progress", *extra]


def test_checkpoint_of_another_run_is_refused(make_cfg, tmp_path, one_line_error):
    a = _stopped(make_cfg, tmp_path, "a")
    b = _stopped(make_cfg, tmp_path, "b", lr=0.02)  # another --lr: its checkpoint is not a's
    meta = json.loads(open(os.path.join(a.out, "meta.json")).read())
    assert len(meta["run_id"]) == 32 and len(meta["config_sha256"]) == 64
    shutil.copy(os.path.join(b.out, CHECKPOINT_NAME), os.path.join(a.out, CHECKPOINT_NAME))
    log_before = open(os.path.join(a.out, "log.jsonl")).read()
    assert cli_main(_resume(a)) == 2
    one_line_error("checkpoint.pt belongs to run", meta["run_id"])
    assert open(os.path.join(a.out, "log.jsonl")).read() == log_before  # nothing changed


def test_edited_config_is_refused(make_cfg, tmp_path, one_line_error):
    a = _stopped(make_cfg, tmp_path)
    path = os.path.join(a.out, "config.json")
    saved = json.loads(open(path).read())
    saved["warmup_frac"] = 0.2  # a run-defining value edited by hand
    open(path, "w").write(json.dumps(saved, indent=2))
    assert cli_main(_resume(a)) == 2
    one_line_error("config.json was changed since the run wrote it")


def test_resume_with_an_allowed_change_updates_the_recorded_hash(make_cfg, tmp_path, capsys):
    a = _stopped(make_cfg, tmp_path)
    train(make_cfg(optimizer="galore", steps=4, stop_after=3, out=a.out, log_every=1, resume=True))  # a safe change
    assert json.loads(open(os.path.join(a.out, "config.json")).read())["log_every"] == 1  # config.json rewritten
    assert cli_main(_resume(a)) == 0  # ... and the next resume accepts it
    assert "done" in capsys.readouterr().out


def test_checkpoint_without_checksum_is_refused(make_cfg, tmp_path, one_line_error):
    a = _stopped(make_cfg, tmp_path)
    path = os.path.join(a.out, CHECKPOINT_NAME)
    ck = torch.load(path, weights_only=True)
    del ck["checksum"]
    torch.save(ck, path)
    assert cli_main(_resume(a)) == 2
    one_line_error("has no checksum entry")


def test_zero_byte_checkpoint_is_a_one_line_error(make_cfg, tmp_path, one_line_error):
    a = _stopped(make_cfg, tmp_path)
    open(os.path.join(a.out, CHECKPOINT_NAME), "wb").close()
    assert cli_main(_resume(a)) == 2  # old code: IndexError traceback
    one_line_error("cannot load", "empty or truncated")


def test_deleted_log_is_refused(make_cfg, tmp_path, one_line_error):
    a = _stopped(make_cfg, tmp_path)
    os.remove(os.path.join(a.out, "log.jsonl"))
    assert cli_main(_resume(a)) == 2
    one_line_error("log.jsonl is missing")
    assert not os.path.exists(os.path.join(a.out, "log.jsonl"))


def test_resume_imports_only_a_rule_file_named_on_its_command_line(make_cfg, tmp_path, one_line_error):
    mark = str(tmp_path / "imported.txt")
    rule = tmp_path / "rule.py"
    rule.write_text(RULE.format(mark=mark))
    spec = f"{rule}:gamma"
    a = _stopped(make_cfg, tmp_path, projection=spec)
    os.remove(mark)
    assert cli_main(_resume(a)) == 2  # old code: imported (ran) the file named in config.json
    one_line_error("name it on this command line too", f"--projection {spec}")
    assert not os.path.exists(mark)
    rule.write_text(RULE.format(mark=mark) + "\n# edited\n")
    assert cli_main(_resume(a, "--projection", spec)) == 2
    one_line_error("rule file", "was changed since the run started")
    assert not os.path.exists(mark)
    rule.write_text(RULE.format(mark=mark))
    assert cli_main(_resume(a, "--projection", spec)) == 0  # named and unchanged: resumes
    assert os.path.exists(mark)
