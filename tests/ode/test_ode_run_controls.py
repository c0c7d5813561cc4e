"""How a run ends and reports: automatic stop at stationarity, the wall-clock cap, progress, the plot."""
from __future__ import annotations

import io

import torch

from ode import RunSpec, SimulationConfig, run_spec
from ode.plot import plot_trajectory, rise_masks, title
from ode.progress import Progress
from ode.trajectory import Trajectory

FAST_CONVERGING = dict(optimizer="heavy_ball", projection="identity", problem="box_quadratic", dim=(3, 4), rank=3,
                       side="left")


def test_auto_stop_is_the_stationarity_verdicts_tolerance():
    from osd_theory.verdicts import stationarity_verdict
    traj = run_spec(RunSpec(**FAST_CONVERGING, config=SimulationConfig(t_end=200.0)))
    tol = stationarity_verdict(traj).tolerance
    assert traj.meta["status"].startswith("stopped") and traj.meta["stop_residual_resolved"] == tol
    assert traj.final("residual") <= tol < float(traj["residual"][-2]) and stationarity_verdict(traj).stationary


def test_no_stop_runs_to_t_end_and_no_auto_stop_without_stationary_points():
    traj = run_spec(RunSpec(**FAST_CONVERGING, config=SimulationConfig(t_end=30.0, stop_residual=None)))
    assert traj.final("t") == 30.0 and traj.meta["status"] == "completed"
    log = run_spec(RunSpec(optimizer="gd", projection="identity", problem="logistic", dim=(2, 2), rank=2, side="left",
                           config=SimulationConfig(t_end=5.0, autodiff=False)))
    assert log.meta["stop_residual_resolved"] is None and log.final("t") == 5.0


def test_max_seconds_stops_without_failing():
    traj = run_spec(RunSpec(config=SimulationConfig(t_end=1e6, max_seconds=0.3, stop_residual=None, autodiff=False)))
    assert traj.meta["status"].startswith("stopped: max_seconds") and 0 < traj.final("t") < 1e6


def test_progress_line_has_t_fraction_steps_and_eta():
    out = io.StringIO()
    p = Progress(0.0, 100.0, stream=out)
    p.every = 0.0
    p.started -= 10.0                      # pretend 10 s have passed
    p.update(49.5, 0.5, 123)
    line = out.getvalue()
    assert "t = 50 / 100 (50 %)" in line and "123 steps" in line and "ETA 10 s" in line and line.endswith("\n")


def _traj(H, meta=None):
    n = len(H)
    cols = {"t": torch.arange(n, dtype=torch.float64), "H": torch.tensor(H, dtype=torch.float64),
            "residual": torch.ones(n, dtype=torch.float64), "proj_grad_norm": torch.ones(n, dtype=torch.float64)}
    return Trajectory(cols, meta=meta or {"config": {"rtol": 1e-8, "atol": 1e-10}, "adaptive": True})


def test_rises_are_marked_by_size():
    tr = _traj([3.0, 2.0, 2.0 + 1e-9, 1.0, 1.5, 1.0])
    rise, above = rise_masks(tr)
    assert rise.tolist() == [False, True, False, True, False]      # 1e-9 and 0.5 rise above rounding
    assert above.tolist() == [False, False, False, True, False]    # only 0.5 exceeds 10 (atol + rtol |H|)


def test_plot_handles_negative_H_and_user_rule_titles(tmp_path):
    tr = _traj([1.0, -0.5, -1.0, -0.7])
    assert plot_trajectory(tr, tmp_path / "neg.png").stat().st_size > 1000
    tr.meta["resolved"] = {"optimizer": {"name": "adam", "a": 1.0}, "problem": {"name": "quadratic", "m": 4, "n": 4},
                           "projection": {"name": "myrule.py:gamma", "rank": 2}}
    assert title(tr).startswith("adam(a=1) + myrule.py:gamma(rank=2") and "/" not in title(tr)
