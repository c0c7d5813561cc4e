"""Issue 21, item 5: failures in a run are one-line errors that say the step and what failed (exit 2), never a
traceback, a silent exit or a diverged run that ends "done"; what was written stays."""
from __future__ import annotations

import json
import os

import pytest

from discrete.validation.runlog import read_log
from osd_theory.cli import main as cli_main


def _events(out: str) -> list[dict]:
    return [json.loads(ln) for ln in open(os.path.join(out, "events.jsonl"))]


def test_nonfinite_raise_on_divergence_is_a_one_line_error(make_cfg, cli_args, one_line_error):
    cfg = make_cfg(optimizer="galore", steps=4)
    assert cli_main(cli_args(cfg, "--lr", "1e30", "--nonfinite", "raise")) == 2  # old code: a traceback
    one_line_error("training diverged at step 2", "NaN or Inf", "lower --lr")
    assert [r["step"] for r in read_log(cfg.out)] == [1]  # the records before the failure are kept
    assert _events(cfg.out)[-1]["event"] == "failed"


def test_nonfinite_skip_on_a_collapsed_run_does_not_end_done(make_cfg, cli_args, capsys):
    cfg = make_cfg(optimizer="galore", steps=6)
    assert cli_main(cli_args(cfg, "--lr", "1e4", "--nonfinite", "skip")) == 2  # old code: "done", exit 0
    captured = capsys.readouterr()
    assert "done:" not in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "training diverged by step 2" in err and "gradient is exactly 0" in err, err
    assert [r["step"] for r in read_log(cfg.out)] == [1, 2]
    assert _events(cfg.out)[-1]["event"] == "failed"


RULE_BODIES = {
    "raises": ("raise ZeroDivisionError('boom')", "ZeroDivisionError: boom"),
    "exits": ("sys.exit(3)", "called sys.exit(3)"),
    "runs out of memory": ("raise MemoryError('cannot allocate 80 GiB')", "MemoryError: cannot allocate 80 GiB"),
}


@pytest.mark.parametrize("case", sorted(RULE_BODIES))
def test_a_user_rule_that_fails_is_a_one_line_error(case, make_cfg, cli_args, one_line_error, tmp_path):
    body, needle = RULE_BODIES[case]
    rule = tmp_path / "bad_rule.py"
    rule.write_text(f"import sys\n\n\ndef gamma(t, P, G):\n    {body}\n")
    cfg = make_cfg(optimizer="galore", steps=3)
    assert cli_main(cli_args(cfg, "--projection", f"{rule}:gamma")) == 2  # old code: traceback, or exit 3 silently
    one_line_error(f"user projection rule {rule}:gamma failed at step 1", needle)
    assert _events(cfg.out)[-1]["event"] == "failed"


def test_unwritable_cache_is_a_one_line_error(make_cfg, cli_args, one_line_error, tmp_path, monkeypatch):
    import tokenizers

    def read_only(self, path, *a, **k):  # what the Rust tokenizer raises on a read-only file system
        raise Exception("Read-only file system (os error 30)")

    monkeypatch.setattr(tokenizers.Tokenizer, "save", read_only)
    cfg = make_cfg(cache_dir=str(tmp_path / "fresh_cache"))
    assert cli_main(cli_args(cfg)) == 2  # old code: a traceback
    one_line_error("--cache-dir", "Read-only file system")


def test_nonfinite_skip_that_skips_the_last_steps_does_not_end_done(make_cfg, cli_args, monkeypatch, one_line_error):
    """A run shorter than --max-skipped-steps whose final steps skipped every update (old code: "done", exit 0)."""
    from discrete.validation import trainer

    real = trainer._nonfinite_grads

    def all_bad_from_step_2(params):
        bad, n = real(params)
        all_bad_from_step_2.calls += 1
        return (n, n) if all_bad_from_step_2.calls >= 2 else (bad, n)

    all_bad_from_step_2.calls = 0
    monkeypatch.setattr(trainer, "_nonfinite_grads", all_bad_from_step_2)
    cfg = make_cfg(optimizer="galore", steps=3)
    assert cli_main(cli_args(cfg, "--nonfinite", "skip")) == 2
    one_line_error("every parameter update of the last 2 step(s) (2..3) was skipped")
    assert [r["step"] for r in read_log(cfg.out) if r["kind"] == "train"] == [1, 2, 3]  # all records kept
