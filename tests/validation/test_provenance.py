"""Issue 21, item 7: provenance in every record: the commit (from the package when there is no checkout, never a
silent "unknown"), command, device, torch version, threads and whether the device was shared."""
from __future__ import annotations

import json
import os
import warnings

import pytest

from discrete.validation import provenance
from discrete.validation.trainer import train
from osd_theory.cli import main as cli_main


def test_commit_comes_from_the_package_when_not_in_a_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("OSD_GIT_HASH", raising=False)
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)  # an installed copy: no .git
    stamp = tmp_path / "_build_commit.txt"
    stamp.write_text("0123456789abcdef0123456789abcdef01234567\n")  # what setup.py's build writes
    monkeypatch.setattr(provenance, "BUILD_COMMIT_FILE", stamp)
    got = provenance.git_state()
    assert got["git_hash"] == "0123456789abcdef0123456789abcdef01234567" and got["git_source"].startswith("package")


def test_an_unknown_commit_is_said_and_warned_never_silent(tmp_path, monkeypatch):
    monkeypatch.delenv("OSD_GIT_HASH", raising=False)
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(provenance, "BUILD_COMMIT_FILE", tmp_path / "absent.txt")
    monkeypatch.setattr(provenance, "_pip_vcs_commit", lambda: None)
    with pytest.warns(RuntimeWarning, match="git commit is unknown"):
        got = provenance.git_state()
    assert got["git_hash"] is None and "not a git checkout" in got["git_source"]


def test_setup_py_writes_the_commit_into_the_build(tmp_path):
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location("osd_setup_hooks", pathlib.Path(__file__).parents[2] / "setup.py")
    text = spec.loader.get_source("osd_setup_hooks")
    namespace: dict = {"__file__": str(pathlib.Path(__file__).parents[2] / "setup.py")}
    exec(text.replace("setup(cmdclass=", "dict(cmdclass="), namespace)  # the hooks, without running a build
    namespace["_write"](tmp_path)
    written = (tmp_path / "discrete" / "validation" / "_build_commit.txt").read_text().strip()
    assert written == provenance.git_state()["git_hash"]


def test_run_meta_records_commit_command_threads_and_sharing(make_cfg, capsys):
    cfg = make_cfg(steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # in a checkout: no "unknown commit" warning
        train(cfg)
    meta = json.loads(open(os.path.join(cfg.out, "meta.json")).read())
    assert len(meta["git_hash"]) == 40 and meta["git_source"] == "checkout"
    assert meta["torch_threads"] >= 1 and meta["cpus_usable"] >= 1 and meta["torch"]
    assert isinstance(meta["device_shared"], bool) and "load average" in meta["device_shared_how"]
    assert meta["command"] and meta["device"]
    meta["device_shared"] = True
    open(os.path.join(cfg.out, "meta.json"), "w").write(json.dumps(meta))
    capsys.readouterr()
    assert cli_main(["report", cfg.out]) == 0
    assert "are not clean measurements" in capsys.readouterr().out  # report flags tokens/s of a shared device


def test_auto_threads_leave_the_cores_other_jobs_keep_busy(monkeypatch):
    import torch

    from discrete.validation import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 14)  # the shared 2-core machine (load average 14)
    assert threads.auto_threads() == 1
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)   # idle: every usable core (torch's default caps it)
    assert threads.auto_threads() == min(2, torch.get_num_threads())
    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
