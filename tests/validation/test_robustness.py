"""Issue 9, items 4-6: signals checkpoint, failed writes clean up, corrupt files, stuck runs."""
from __future__ import annotations

import errno
import glob
import json
import os
import signal

import pytest
import torch

from discrete.validation.checkpoint import CHECKPOINT_NAME
from discrete.validation.model import build_model
from discrete.validation.runlog import read_log
from discrete.validation.trainer import train
from osd_theory.cli import main as cli_main
from osd_theory.errors import UserError



class _SignalLeaked(Exception):
    """Raised by the test's own handler: the trainer did not handle the signal."""


# ---------------------------------------------------------------- 4. SIGTERM / SIGINT


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_a_checkpoint_then_exits(make_cfg, tmp_path, monkeypatch, capsys, signum, cli_args):
    from discrete.validation import trainer

    def leaked(*_):
        raise _SignalLeaked  # without the trainer's handler the test fails here instead of killing pytest

    old = signal.signal(signum, leaked)
    try:
        real = trainer.lr_factor

        def send_at_step_3(step, cfg):
            if step == 3:
                os.kill(os.getpid(), signum)  # delivered at once, in the middle of step 3
            return real(step, cfg)

        cfg = make_cfg(steps=6, ckpt_every=0)
        monkeypatch.setattr(trainer, "lr_factor", send_at_step_3)
        assert cli_main(cli_args(cfg)) == 128 + signum
        err = capsys.readouterr().err
        assert f"stopped by {signal.Signals(signum).name} after step 3" in err and "--resume" in err
        assert torch.load(os.path.join(cfg.out, CHECKPOINT_NAME), weights_only=True)["step"] == 3
        assert max(r["step"] for r in read_log(cfg.out)) == 3
        assert signal.getsignal(signum) is leaked  # the trainer put the previous handler back
        monkeypatch.setattr(trainer, "lr_factor", real)
        if signum == signal.SIGTERM:  # the resumed run ends where an uninterrupted one does
            assert cli_main(["validate", "--resume", "--out", cfg.out]) == 0
            full = make_cfg(steps=6, out=str(tmp_path / "full"))
            train(full)
            a = torch.load(os.path.join(full.out, CHECKPOINT_NAME), weights_only=True)["model"]
            b = torch.load(os.path.join(cfg.out, CHECKPOINT_NAME), weights_only=True)["model"]
            assert all(torch.equal(a[k], b[k]) for k in a)
    finally:
        signal.signal(signum, old)


# ---------------------------------------------------------------- 5. failed writes, corrupt files


def test_disk_full_during_a_checkpoint_cleans_up_and_keeps_the_previous_one(make_cfg, monkeypatch, capsys, cli_args, one_line_error):
    from discrete.validation import checkpoint

    real_save = torch.save

    def save_then_fill_the_disk(obj, path, *a, **k):
        if obj["step"] == 2:
            return real_save(obj, path, *a, **k)
        with open(path, "wb") as f:
            f.write(b"\0" * 4096)  # a partial file, as a full disk leaves it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", save_then_fill_the_disk)
    cfg = make_cfg(steps=4, ckpt_every=2)
    assert cli_main(cli_args(cfg, "--ckpt-every", "2")) == 2
    one_line_error("cannot write checkpoint", "No space left on device", "previous checkpoint is kept")
    assert glob.glob(os.path.join(cfg.out, "*.tmp*")) == []
    assert torch.load(os.path.join(cfg.out, CHECKPOINT_NAME), weights_only=True)["step"] == 2


def test_unwritable_out_is_a_one_line_error(make_cfg, tmp_path, capsys, cli_args, one_line_error):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    cfg = make_cfg(out=str(blocker / "run"))
    assert cli_main(cli_args(cfg)) == 2
    one_line_error(str(blocker))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_out_is_a_one_line_error(make_cfg, tmp_path, cli_args, one_line_error):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert cli_main(cli_args(make_cfg(out=str(ro / "run")))) == 2
        one_line_error("not writable")
    finally:
        ro.chmod(0o700)


def test_corrupt_tokenizer_and_token_caches_are_rebuilt(make_cfg, tmp_path, capsys):
    cache = tmp_path / "cache"
    cfg = make_cfg(steps=1, cache_dir=str(cache), out=str(tmp_path / "a"))
    first = train(cfg)["val_loss"]
    (tok,) = cache.glob("tokenizer-*.json")
    tok.write_text('{"version": "1.0", "truncated')
    (train_bin,) = cache.glob("tokens-train-*.bin")
    with open(train_bin, "r+b") as f:
        f.truncate(train_bin.stat().st_size // 2)
    (valid_bin,) = cache.glob("tokens-valid-*.bin")
    data = bytearray(valid_bin.read_bytes())
    data[10] ^= 0xFF  # a flipped byte: same size, other tokens
    valid_bin.write_bytes(bytes(data))
    capsys.readouterr()
    again = train(make_cfg(steps=1, cache_dir=str(cache), out=str(tmp_path / "b")))["val_loss"]
    notes = [ln for ln in capsys.readouterr().out.splitlines() if " corrupt (" in ln]
    assert len(notes) == 3, notes  # tokenizer, train tokens, valid tokens: each said and rebuilt
    assert again == first  # rebuilt to the same tokens


def test_a_bit_flip_inside_a_checkpoint_tensor_is_detected(make_cfg):
    cfg = make_cfg(steps=4, stop_after=2)
    train(cfg)
    path = os.path.join(cfg.out, CHECKPOINT_NAME)
    weight = torch.load(path, weights_only=True)["model"]["embed_tokens.weight"]
    raw = bytearray(open(path, "rb").read())
    at = raw.find(weight.numpy().tobytes()[:64])
    assert at > 0
    raw[at + weight.numel() * 2] ^= 0x10  # one bit in the middle of the tensor record
    open(path, "wb").write(bytes(raw))
    cfg.stop_after, cfg.resume = None, True
    with pytest.raises(UserError, match="corrupt"):
        train(cfg)


# ---------------------------------------------------------------- 6. --nonfinite skip


def _poison(monkeypatch, steps):
    """Make every gradient NaN after clipping at the given steps (the optimizer then skips them all)."""
    from discrete.validation import trainer

    real = torch.nn.utils.clip_grad_norm_
    state = {"step": 0}
    real_lr = trainer.lr_factor

    def lr_factor(step, cfg):
        state["step"] = step
        return real_lr(step, cfg)

    def clip(params, max_norm, *a, **k):
        params = list(params)
        norm = real(params, max_norm, *a, **k)
        if state["step"] in steps:
            for p in params:
                p.grad.fill_(float("nan"))
        return norm

    monkeypatch.setattr(trainer, "lr_factor", lr_factor)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)


def test_nonfinite_skip_logs_skip_counts_per_step(make_cfg, monkeypatch):
    _poison(monkeypatch, steps={3})
    cfg = make_cfg(optimizer="osd", nonfinite="skip", steps=4, log_every=2, lr=1e-2)
    train(cfg)
    recs = [r for r in read_log(cfg.out) if r["kind"] == "train"]
    n_params = len(list(build_model("tiny", vocab_size=320, max_seq_len=16).parameters()))
    assert {r["step"]: r["skipped"] for r in recs} == {1: [0], 2: [0], 4: [n_params, 0]}


def test_nonfinite_skip_fails_the_run_when_updates_stop(make_cfg, monkeypatch, capsys, cli_args, one_line_error):
    _poison(monkeypatch, steps=set(range(2, 100)))
    cfg = make_cfg(optimizer="osd", nonfinite="skip", steps=8, log_every=4, lr=1e-2)
    assert cli_main(cli_args(cfg, "--nonfinite", "skip", "--max-skipped-steps", "3", "--lr", "0.01")) == 2
    one_line_error("stopped updating", "steps 2..4", "--nonfinite skip")
    events = [json.loads(ln) for ln in open(os.path.join(cfg.out, "events.jsonl"))]
    assert events[-1]["event"] == "failed" and "stopped updating" in events[-1]["message"]


def test_an_ignored_signal_stays_ignored():
    from discrete.validation.signals import StopSignals

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a background job or under nohup
    try:
        with StopSignals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)
