"""The ``osd-theory simulate`` and ``osd-theory verify`` commands, through ``osd_theory.cli.main``.

Bad input must give one line on stderr, no traceback, exit status 2; a failed integration
exits 1 with the time reached; a completed run exits 0 whatever its verdicts.
"""
from __future__ import annotations

import json

import pytest

from osd_theory.cli import main

FAST = ["--t-end", "0.5", "--dim", "4x4"]


def _json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out            # exactly one JSON object
    return json.loads(out[0])


def test_simulate_default_runs(capsys):
    assert main(["simulate"]) == 0
    out = capsys.readouterr().out
    for key in ("final H", "max rel H increase", "final ||grad L||", "condition", "lyapunov", "stationary"):
        assert key in out


def test_simulate_json_fields(capsys):
    assert main(["simulate", "--json", *FAST, "--hp", "a=1,b=2"]) == 0
    d = _json(capsys)
    for key in ("final_H", "max_rel_H_increase", "final_grad_norm", "lyapunov", "stationary"):
        assert key in d
    assert d["lyapunov"] is True and d["max_rel_H_increase"] == 0.0 and "b=2" in d["optimizer"]


def test_simulate_reports_adam_violation_with_refinement(capsys):
    assert main(["simulate", "--json", "--hp", "a=1,b=8", "--t-end", "10", "--rtol", "1e-6", "--atol", "1e-8"]) == 0
    d = _json(capsys)
    assert d["lyapunov"] is False and d["max_rel_H_increase"] > 0
    assert d["condition_holds"] is False and d["refinement"]["kind"] == "real violation"


def test_simulate_plot_and_save(tmp_path, capsys):
    png, npz = tmp_path / "h.png", tmp_path / "t.npz"
    assert main(["simulate", *FAST, "--plot", str(png), "--save", str(npz)]) == 0
    assert png.stat().st_size > 1000 and npz.stat().st_size > 0


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
])
def test_bad_user_rule(tmp_path, capsys, body, needle):
    f = tmp_path / "rule.py"
    f.write_text("import torch\n" + body)
    assert main(["simulate", *FAST, "--projection", f"{f}:f"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


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
    assert main(["verify", "--claims", "C9"]) == 2
