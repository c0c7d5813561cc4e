"""The ``osd-theory simulate`` and ``osd-theory verify`` commands, through ``osd_theory.cli.main``.

Bad input must give one line on stderr, no traceback, exit status 2; a failed integration
exits 1 with the time reached; a completed run exits 0 whatever its verdicts.
"""
from __future__ import annotations

import json

import pytest

from osd_theory.cli import main

FAST = ["--t-end", "0.5", "--dim", "4x4", "--no-progress"]


def _json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out            # exactly one JSON object
    return json.loads(out[0])


def test_simulate_default_runs_to_a_clear_outcome(capsys):
    """A newcomer's first run: it prints what it uses, converges, and says so in one line."""
    assert main(["simulate", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for key in ("final H", "max rel H increase", "final ||grad L||", "condition", "lyapunov", "stationary", "outcome"):
        assert key in out
    assert "alpha=5" in out and "side=auto -> right" in out and "t_end=100" in out   # every hyperparameter used
    assert "outcome    converged: stationary at t=" in out and "H never rose" in out


def test_cli_defaults_are_the_python_api_defaults():
    import argparse

    from discrete import OnlineSubspaceDescent
    from ode.cli import add_arguments
    from ode.integrate import SimulationConfig
    from ode.spec import RunSpec
    from osd_theory.projections.rules import OnlinePCA
    p = argparse.ArgumentParser()
    add_arguments(p)
    a, spec, cfg = p.parse_args([]), RunSpec(), SimulationConfig()
    assert (a.optimizer, a.projection, a.problem, a.dim, a.rank, a.side, a.seed) == \
        (spec.optimizer, spec.projection, spec.problem, f"{spec.dim[0]}x{spec.dim[1]}", spec.rank, spec.side, spec.seed)
    assert (a.t_end, a.method, a.rtol, a.atol, a.step_size, a.stop_residual, a.max_seconds) == \
        (cfg.t_end, cfg.method, cfg.rtol, cfg.atol, cfg.step_size, str(cfg.stop_residual), cfg.max_seconds)
    assert a.hp is a.proj_hp is a.problem_hp is None                    # the classes' own defaults apply
    assert OnlinePCA().alpha == OnlineSubspaceDescent.proj_keys["alpha"] == 5.0


def test_header_shows_the_hyperparameters_actually_used(capsys):
    assert main(["simulate", "--no-progress", *FAST]) == 0
    default = capsys.readouterr().out
    assert main(["simulate", "--no-progress", *FAST, "--proj-hp", "alpha=1"]) == 0
    changed = capsys.readouterr().out
    head = lambda out: out.split("status")[0]
    assert head(default) != head(changed) and "alpha=1" in head(changed) and "alpha=5" in head(default)
    for key in ("pca_lambda=0.1", "rank=2", "t_end=0.5", "rtol=1e-08", "condition=100"):
        assert key in head(default)


def test_simulate_help_lists_the_valid_names(capsys):
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("heavy_ball", "lion_k_wd", "online_pca", "periodic_svd", "lowrank_regression", "implicit_midpoint"):
        assert name in out


def test_version(capsys):
    from osd_theory import __version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"osd-theory {__version__}"


def test_max_seconds_caps_a_stiff_user_rule(tmp_path, capsys):
    f = tmp_path / "grow.py"
    f.write_text("def f(t, P, G):\n    return 50 * P\n")        # P grows like e^{50t}: stiff, slow
    assert main(["simulate", "--no-progress", "--json", "--projection", f"{f}:f", "--max-seconds", "1"]) == 0
    d = _json(capsys)
    assert d["status"].startswith("stopped: max_seconds") and d["wall_s"] < 5 and "--max-seconds" in d["outcome"]


def test_simulate_json_fields(capsys):
    assert main(["simulate", "--json", *FAST, "--hp", "a=1,b=2"]) == 0
    d = _json(capsys)
    for key in ("final_H", "max_rel_H_increase", "final_grad_norm", "lyapunov", "stationary"):
        assert key in d
    assert d["lyapunov"] is True and d["max_rel_H_increase"] == 0.0 and "b=2" in d["optimizer"]
    assert d["outcome"].startswith("not stationary by t=0.5") and "over the second half" in d["outcome"]
    assert d["resolved"]["optimizer"] == {"name": "adam", "a": 1, "b": 2, "e": 0.01, "v0": 0.01, "wd": 0.0}


def test_simulate_reports_adam_violation_with_refinement(capsys):
    assert main(["simulate", "--json", "--hp", "a=1,b=8", "--t-end", "10", "--rtol", "1e-6", "--atol", "1e-8"]) == 0
    d = _json(capsys)
    assert d["lyapunov"] is False and d["max_rel_H_increase"] > 0
    assert d["condition_holds"] is False and d["refinement"]["kind"] == "real violation"


def test_simulate_plot_and_save(tmp_path, capsys):
    png, npz = tmp_path / "h.png", tmp_path / "t.npz"
    assert main(["simulate", *FAST, "--plot", str(png), "--save", str(npz)]) == 0
    assert png.stat().st_size > 1000 and npz.stat().st_size > 0


@pytest.mark.parametrize("flag,path,needle", [
    ("--save", "no/such/dir/t.npz", "does not exist"), ("--save", "t.txt", ".npz"),
    ("--plot", "h.xyz", ".png"), ("--plot", "no/such/dir/h.png", "does not exist"),
])
def test_bad_output_paths_fail_before_integrating(tmp_path, monkeypatch, capsys, flag, path, needle):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", *FAST, flag, path]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "status" not in captured.out                                 # nothing was integrated


def test_user_rule_file(tmp_path, capsys):
    f = tmp_path / "rule.py"
    f.write_text("import torch\ndef spin(t, P, G):\n    return 0.1 * torch.ones_like(P)\n")
    assert main(["simulate", "--json", *FAST, "--projection", f"{f}:spin"]) == 0
    assert _json(capsys)["lyapunov"] is True


BAD = {
    "rank zero": ["--rank", "0"],
    "rank too big": ["--rank", "5"],
    "unknown optimizer": ["--optimizer", "adamw9"],
    "unknown projection": ["--projection", "pca"],
    "unknown problem": ["--problem", "moons"],
    "bad dim": ["--dim", "8by8"],
    "zero dim": ["--dim", "0x4"],
    "bad hp": ["--hp", "a"],
    "unknown hp": ["--hp", "zeta=1"],
    "bad t_end": ["--t-end", "-1"],
    "unknown method": ["--method", "rk45"],
    "missing file": ["--projection", "nope/rule.py:f"],
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_line_exit_2(name, capsys):
    args = ["simulate", "--dim", "4x4", "--t-end", "0.5", *BAD[name]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("osd-theory simulate: error:") and len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_unknown_names_list_valid_ones(capsys):
    assert main(["simulate", "--optimizer", "adamw9"]) == 2
    assert "heavy_ball" in capsys.readouterr().err


@pytest.mark.parametrize("body,needle", [
    ("def f(t, P, G):\n    return torch.zeros(3, 3, 3)\n", "shape"),
    ("def f(t, P, G):\n    return P * float('nan')\n", "non-finite"),
    ("def g(t, P, G):\n    return P\n", "no function"),
    ("def f(t, P, G):\n    raise RuntimeError('boom')\n", "raised RuntimeError: boom"),
    ("import sys\nsys.exit(3)\ndef f(t, P, G):\n    return P\n", "sys.exit(3)"),
    ("def f(t, P, G):\n    raise SystemExit(0)\n", "sys.exit(0)"),
    ("raise ImportError('no such thing')\n", "ImportError: no such thing"),
    ("from osd_theory.projections.base import ProjectionRule\nclass f(ProjectionRule):\n"
     "    def __post_init__(self):\n        raise ValueError('bad options')\n", "ValueError: bad options"),
    ("from osd_theory.projections.base import ProjectionRule\nclass f(ProjectionRule):\n    smooth = True\n"
     "    def rate(self, t, P, G):\n        return P[:1]\n", "expected a tensor of P's shape"),
])
def test_bad_user_rule_is_one_line_naming_it(tmp_path, capsys, body, needle):
    f = tmp_path / "rule.py"
    f.write_text("import torch\n" + body)
    assert main(["simulate", *FAST, "--projection", f"{f}:f"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "rule.py:f" in err


def test_non_finite_state_exits_1_with_time(capsys):
    # explicit Euler at h = 10 on heavy ball diverges to inf
    args = ["simulate", "--optimizer", "heavy_ball", "--projection", "constant", "--method", "euler",
            "--step-size", "10", "--t-end", "5000", "--dim", "4x4"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "stopped at t=" in err and "non-finite" in err and "Traceback" not in err


def test_verify_quick_json(capsys):
    assert main(["verify", "--quick", "--json", "--claims", "C6"]) == 0
    d = _json(capsys)
    assert d[0]["claim"] == "C6" and d[0]["verdict"] == d[0]["expected"] == "holds" and d[0]["as_expected"]


def test_verify_reports_progress_on_stderr(capsys):
    assert main(["verify", "--quick", "--claims", "C6"]) == 0
    captured = capsys.readouterr()
    assert "[1/1] C6 holds (ok)" in captured.err
    assert "C6" in captured.out and "1/1 claims gave their predicted verdict" in captured.out


def test_verify_exits_1_when_a_verdict_differs_from_its_prediction(monkeypatch, capsys):
    import osd_theory.claims as claims
    monkeypatch.setitem(claims.EXPECTED, "C6", "violated")       # the run says "holds"
    assert main(["verify", "--quick", "--json", "--claims", "C6"]) == 1
    d = _json(capsys)
    assert d[0]["verdict"] == "holds" and d[0]["expected"] == "violated" and not d[0]["as_expected"]


def test_verify_unavailable_claim_is_inconclusive_and_fails(monkeypatch, capsys):
    import osd_theory.claims as claims
    monkeypatch.setitem(claims.CLAIMS, "C5", "no_such_pkg_xyz.claims:c5")
    assert main(["verify", "--json", "--claims", "C5"]) == 1
    d = _json(capsys)
    assert d[0]["verdict"] == "inconclusive" and "not available" in d[0]["evidence"] and not d[0]["as_expected"]


def test_verify_crashing_claim_exits_1(monkeypatch, capsys):
    import osd_theory.claims as claims
    monkeypatch.setitem(claims.CLAIMS, "C1", "json:loads")     # loads(True) raises TypeError: a crash
    assert main(["verify", "--json", "--claims", "C1"]) == 1
    assert "ERROR: TypeError" in _json(capsys)[0]["evidence"]


def test_verify_unknown_claim(capsys):
    assert main(["verify", "--claims", "C99"]) == 2


def test_a_closed_pipe_is_a_quiet_exit_not_a_traceback():
    """`osd-theory report ... | head`: the reader closes the pipe before the output is written."""
    import subprocess
    import sys
    from pathlib import Path

    runs = sorted(str(d) for d in (Path(__file__).resolve().parents[1] / "docs/results/validation/osd_vs_galore/runs_1000").iterdir())
    code = "import sys; from osd_theory.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "report", "--json", *runs], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()                     # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141
