"""Issue 21, item 2: one place per setting; an option nothing reads is an error; unknown rule names list the
valid ones (docs/results/validation/README.md, "Settings: one place each")."""
from __future__ import annotations

import pytest

from discrete.validation.config import RunConfig, from_json
from discrete.validation.resolve import resolve
from osd_theory.cli import main as cli_main
from osd_theory.errors import UserError


def _resolve(**kw) -> RunConfig:
    return resolve(RunConfig(**{"model": "tiny", "out": "x", **kw}))


@pytest.mark.parametrize("kw, needles", [
    # a flag's setting given as a group option: both named (old code: the group option won silently)
    (dict(optimizer="galore", group_options={"rank": 4}), ("--group-option rank=4", "--rank")),
    (dict(optimizer="galore", group_options={"weight_decay": 0.1}), ("--group-option weight_decay=0.1", "--weight-decay")),
    (dict(optimizer="osd", group_options={"nonfinite": "skip"}), ("--group-option nonfinite=skip", "--nonfinite")),
    (dict(optimizer="galore", group_options={"lr": 0.5}), ("--group-option lr=0.5", "--lr")),
    (dict(optimizer="galore", group_options={"projection": "oja"}), ("--group-option projection=oja", "--projection")),
    (dict(optimizer="rso", group_options={"seed": 3}), ("--group-option seed=3", "--seed")),
    # nothing reads them
    (dict(optimizer="adamw", group_options={"switch": "rotate"}), ("--group-option switch", "no projected param group")),
    (dict(optimizer="galore", projection="oja", proj_options={"rank": 4}), ("--proj-option rank=4", "--rank")),
    (dict(optimizer="galore", projection="oja", proj_options={"side": "left"}), ("--proj-option side=left", "proj_type")),
    (dict(optimizer="galore", projection="periodic_svd", proj_options={"tau": 3.0}),
     ("--proj-option tau=3.0", "--update-proj-gap")),
    (dict(optimizer="galore", projection="oja", proj_options={"mu": 1.0}), ("has no option 'mu'", "'alpha'")),
    (dict(optimizer="galore", alpha=2.0), ("--alpha 2", "--optimizer galore does not read")),
    (dict(optimizer="adamw", pca_lambda=0.0), ("--pca-lambda 0", "--optimizer adamw")),
    # a rule option that a flag or a group key also sets
    (dict(optimizer="osd", projection="oja", proj_options={"alpha": 2.0}), ("--proj-option alpha=2.0", "--alpha 0.5")),
    (dict(optimizer="galore", projection="oja", proj_options={"init": "svd"}, group_options={"proj_init": "random"}),
     ("--proj-option init=svd", "--group-option proj_init=random")),
])
def test_a_setting_has_one_place(kw, needles):
    with pytest.raises(UserError) as err:
        _resolve(**kw)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_what_the_run_reads_is_accepted_and_recorded():
    cfg = _resolve(optimizer="galore", projection="oja", proj_options={"alpha": 2.0},
                   group_options={"switch": "rotate"})
    saved = cfg.to_json()
    assert saved["proj_options"] == {"alpha": 2.0} and saved["group_options"] == {"switch": "rotate"}
    assert saved["alpha"] is None and saved["pca_lambda"] is None  # galore reads neither: none recorded
    osd = _resolve(optimizer="osd").to_json()
    assert (osd["alpha"], osd["pca_lambda"]) == (0.5, 0.1)  # OSD's defaults, as before
    assert _resolve(optimizer="osd", alpha=2.0).alpha == 2.0
    assert _resolve(optimizer="galore", group_options={"seed": 3}).group_options == {"seed": 3}  # galore's group has no seed flag


def test_old_configs_read_without_osd_knobs_off_osd():
    """config.json files written before stored alpha 0.5 for every optimizer: read as None (not read) off OSD, so a
    resume of such a run is not refused and report groups it with new runs."""
    assert from_json({"optimizer": "galore", "alpha": 0.5, "pca_lambda": 0.1}).alpha is None
    assert from_json({"optimizer": "osd", "alpha": 2.0}).alpha == 2.0


def test_unknown_rule_name_lists_the_valid_names(make_cfg, cli_args, one_line_error, tmp_path):
    run = make_cfg(optimizer="galore", out=str(tmp_path / "r"))
    assert cli_main(cli_args(run, "--projection", "onlne_pca")) == 2
    err = one_line_error("--projection onlne_pca", "did you mean online_pca", "periodic_svd")
    assert "path/to/file.py:function, got" not in err
    assert not (tmp_path / "r").exists()


def test_unknown_rule_name_in_python_lists_the_valid_names():
    import torch

    import discrete

    w = torch.nn.Parameter(torch.randn(8, 8))
    with pytest.raises(UserError, match=r"unknown projection 'online_pac'; expected one of \[.*'online_pca'"):
        discrete.GaLore([{"params": [w], "rank": 2, "projection": "online_pac"}])
