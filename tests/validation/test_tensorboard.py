"""``validate --tensorboard DIR`` writes log.jsonl's scalars as TensorBoard events (issue 24, item 3).

The event file is read back with tensorboard's own EventAccumulator; every number of every
log.jsonl record must be there, at the record's step, to float32 (TensorBoard stores scalars as
float32: relative 1e-6). The extra is optional: without it the flag is a one-line error.
"""
from __future__ import annotations

import dataclasses
import math
import sys

import pytest

from discrete.validation.runlog import read_log
from discrete.validation.tensorboard import scalars
from osd_theory.cli import main as cli_main


def _events(log_dir) -> dict[str, dict[int, float]]:
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = accumulator.EventAccumulator(str(log_dir), size_guidance={accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= 1e-6 * max(abs(a), abs(b))


def test_validate_writes_every_jsonl_scalar_to_tensorboard(make_cfg, cli_args, tmp_path, capsys):
    pytest.importorskip("torch.utils.tensorboard")
    cfg = make_cfg(optimizer="galore", steps=4, log_every=2)
    board = tmp_path / "tb"
    assert cli_main(cli_args(cfg, "--tensorboard", str(board), "--eval-every", "2")) == 0
    records = read_log(cfg.out)
    events = _events(board / "run")                         # DIR/<run name>
    wanted = {}
    for rec in records:
        for tag, value in scalars(rec).items():
            wanted.setdefault(tag, {})[rec["step"]] = value
    assert set(events) == set(wanted)
    for tag, by_step in wanted.items():
        assert set(events[tag]) == set(by_step), tag
        assert all(_same(events[tag][s], v) for s, v in by_step.items()), (tag, events[tag], by_step)
    for tag in ("train/loss", "train/lr", "train/ppl", "train/tokens_per_s", "train/H", "eval/val_ppl"):
        assert tag in events, sorted(events)
    assert sorted(events["train/loss"]) == [1, 2, 4] and sorted(events["eval/val_ppl"]) == [2, 4]


def test_resume_replaces_the_events_of_the_steps_run_again(make_cfg, tmp_path, monkeypatch):
    pytest.importorskip("torch.utils.tensorboard")
    from discrete.validation import trainer

    board = tmp_path / "tb"
    cfg = make_cfg(steps=4, log_every=1, ckpt_every=2, tensorboard=str(board))
    real = trainer.lr_factor

    def crash_at_4(step, c):                    # step 3 is logged, the last checkpoint is step 2
        if step == 4:
            raise RuntimeError("killed")
        return real(step, c)

    monkeypatch.setattr(trainer, "lr_factor", crash_at_4)
    with pytest.raises(RuntimeError, match="killed"):
        trainer.train(cfg)
    monkeypatch.setattr(trainer, "lr_factor", real)
    trainer.train(dataclasses.replace(cfg, resume=True))
    loss = {r["step"]: r["loss"] for r in read_log(cfg.out) if r["kind"] == "train"}
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = accumulator.EventAccumulator(str(board / "run"), size_guidance={accumulator.SCALARS: 0})
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == [1, 2, 3, 4]                # step 3 once: the first run's event was purged
    assert all(_same(e.value, loss[e.step]) for e in acc.Scalars("train/loss"))


def test_without_the_extra_the_flag_is_a_one_line_error(make_cfg, cli_args, tmp_path, monkeypatch, capsys,
                                                        one_line_error):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)     # import now raises ImportError
    cfg = make_cfg(steps=1)
    assert cli_main(cli_args(cfg, "--tensorboard", str(tmp_path / "tb"))) == 2
    one_line_error("--tensorboard needs the tensorboard package", "osd-theory[tensorboard]")
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()
    assert cli_main(cli_args(cfg)) == 0                     # the base install runs without it
