"""Issue 9, item 7 (every flag checked) and the --projection contract with the optimizer core (issue 8)."""
from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch

from discrete.validation.config import RunConfig
from osd_theory.cli import main as cli_main

# each: a flag value the old code accepted silently or crashed on, and what the message must say
BAD_FLAGS = {
    "batch zero": (["--batch-size", "0"], "--batch-size 0: must be an integer >= 1"),
    "seq zero": (["--seq-len", "0"], "--seq-len 0: must be an integer >= 2"),
    "min lr above peak": (["--min-lr-frac", "5"], "--min-lr-frac 5: must be a finite number >= 0 and <= 1"),
    "clip nan": (["--grad-clip", "nan"], "--grad-clip nan: must be a finite number >= 0"),
    "clip negative": (["--grad-clip", "-1"], "--grad-clip -1: must be a finite number >= 0"),
    "seq beyond context": (["--seq-len", "100000"], "--seq-len 100000: must be at most the tiny model's context"),
    "log every zero": (["--log-every", "0"], "--log-every 0: must be an integer >= 1"),
    "lr nan": (["--lr", "nan"], "--lr nan: must be a finite number > 0"),
    "lr text": (["--lr", "fast"], "--lr fast: must be a finite number > 0"),
    "weight decay negative": (["--weight-decay", "-1"], "--weight-decay -1: must be a finite number >= 0"),
    "scale negative": (["--scale", "-1"], "--scale -1: must be a finite number > 0"),
    "alpha nan": (["--alpha", "nan"], "--alpha nan: must be a finite number >= 0"),
    "gap zero": (["--update-proj-gap", "0"], "--update-proj-gap 0: must be an integer >= 1"),
    "warmup nan": (["--warmup-frac", "nan"], "--warmup-frac nan: must be a finite number >= 0 and <= 1"),
    "betas": (["--betas", "0.9", "1.5"], "--betas 0.9 1.5: must be two values"),
    "micro batch": (["--batch-size", "4", "--micro-batch-size", "3"], "--micro-batch-size 3: must divide"),
    "nonfinite adamw": (["--nonfinite", "skip"], "--nonfinite skip applies to the subspace optimizers"),
    "resume and overwrite": (["--resume", "--overwrite"], "exclude each other"),
}
CUDA_FLAG = pytest.param(["--device", "cuda"], "--device cuda: no CUDA device is available", id="cuda without gpu",
                         marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present here"))


@pytest.mark.parametrize("args, message", [pytest.param(*v, id=k) for k, v in BAD_FLAGS.items()] + [CUDA_FLAG])
def test_bad_flag_is_one_line_exit_2_and_writes_nothing(make_cfg, tmp_path, cli_args, one_line_error, args, message):
    cfg = make_cfg(out=str(tmp_path / "run"))
    assert cli_main(cli_args(cfg) + args) == 2
    one_line_error(message)
    assert not (tmp_path / "run").exists()  # never changes state


def test_flags_are_generated_from_the_run_config():
    from discrete.validation.cli import add_arguments
    from discrete.validation.config import FIELDS, flag_of

    p = argparse.ArgumentParser()
    add_arguments(p)
    flags = {a.dest: a.option_strings[0] for a in p._actions if a.option_strings and a.dest != "help"}
    cli_fields = {n for n, f in FIELDS.items() if f.metadata["cli"]}
    assert set(flags) == cli_fields and all(flags[n] == flag_of(n) for n in cli_fields)
    # every flag name of the old hand-written parser still works
    old = ("--model --optimizer --rank --steps --batch-size --micro-batch-size --seq-len --lr --warmup-frac "
           "--min-lr-frac --grad-clip --weight-decay --update-proj-gap --scale --alpha --pca-lambda --nonfinite --data "
           "--train-files --valid-files --vocab-size --max-train-chars --val-tokens --cache-dir --seed --log-every "
           "--eval-every --ckpt-every --resume --device --compile --no-progress --out").split()
    assert set(old) <= set(flags.values())
    for name, f in FIELDS.items():  # every setting says what it is for and what it accepts
        assert f.metadata["help"] and str(f.metadata["rule"]), name


def test_projection_is_recorded_and_adamw_refuses_it(make_cfg, tmp_path, cli_args, one_line_error):
    from discrete.validation.cli import add_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--out", "x", "--optimizer", "osd", "--projection", "oja", "--proj-option", "alpha=2.0",
                         "--proj-option", "side=left", "--proj-option", "warm=true", "--proj-option", "k=3"])
    cfg = config_from_args(args)
    assert cfg.projection == "oja" and cfg.proj_options == {"alpha": 2.0, "side": "left", "warm": True, "k": 3}
    assert cfg.to_json()["projection"] == "oja" and cfg.to_json()["proj_options"]["alpha"] == 2.0
    assert RunConfig().projection is None and RunConfig().proj_options == {}
    run = make_cfg(out=str(tmp_path / "r"))
    assert cli_main(cli_args(run, "--optimizer", "adamw", "--projection", "oja")) == 2
    one_line_error("--projection needs a subspace optimizer")
    assert not (tmp_path / "r").exists()


def _param_groups(cfg: RunConfig) -> list[dict]:
    from discrete.validation.model import build_model
    from discrete.validation.optim import build_optimizer

    torch.manual_seed(0)
    return build_optimizer(build_model("tiny", vocab_size=64, max_seq_len=16), cfg).optimizer.param_groups


def test_projection_reaches_the_projected_param_group():
    import discrete

    if "projection" not in discrete.OPTIMIZERS["osd"].proj_keys:
        pytest.skip("the optimizer core does not take 'projection' yet (issue 8: discrete.OPTIMIZERS['osd'].proj_keys)")
    cfg = RunConfig(model="tiny", optimizer="osd", rank=4, projection="oja", proj_options={"alpha": 2.0})
    (proj,) = [g for g in _param_groups(cfg) if "rank" in g]
    assert proj["projection"] == "oja" and proj["proj_options"] == {"alpha": 2.0}
    # what the trainer hands over (the optimizer may fill its own defaults for keys it is not given)
    from discrete.validation.optim import projected_group_keys

    plain = projected_group_keys(dataclasses.replace(cfg, proj_options={}), 4)
    assert plain["projection"] == "oja" and "proj_options" not in plain
    preset = projected_group_keys(dataclasses.replace(cfg, projection=None, proj_options={}), 4)
    assert "projection" not in preset and "proj_options" not in preset  # unset: the preset's rule applies
    assert any("rank" in g for g in _param_groups(dataclasses.replace(cfg, projection=None, proj_options={})))
