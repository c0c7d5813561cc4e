"""Trajectory save/load round trips (npz and JSON), including NaN entries and jumps."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from osd_theory.errors import UserError
from ode.diagnostics import COLUMNS
from ode.trajectory import JUMP_COLUMNS, Trajectory

finite_or_nan = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64), st.just(math.nan))


@st.composite
def trajectories(draw):
    n = draw(st.integers(1, 20))
    j = draw(st.integers(0, 3))
    cols = {c: torch.tensor(draw(st.lists(finite_or_nan, min_size=n, max_size=n)), dtype=torch.float64) for c in COLUMNS}
    jumps = {c: torch.tensor(draw(st.lists(st.floats(-1e6, 1e6), min_size=j, max_size=j)), dtype=torch.float64)
             for c in JUMP_COLUMNS}
    meta = {"optimizer": draw(st.text(max_size=8)), "config": {"rtol": 1e-8}, "has_stationary_points": draw(st.booleans())}
    return Trajectory(cols, jumps, meta)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


@settings(max_examples=40)
@given(traj=trajectories(), suffix=st.sampled_from([".npz", ".json"]))
def test_round_trip(traj, suffix, tmp_path_factory):
    path = tmp_path_factory.mktemp("traj") / f"t{suffix}"
    back = Trajectory.load(traj.save(path))
    assert back.meta == traj.meta
    assert set(back.columns) == set(traj.columns)
    assert all(_same(back[c], traj[c]) for c in traj.columns)
    assert all(_same(back.jumps[c], traj.jumps[c]) for c in traj.jumps)


def test_bad_suffix_and_missing_file(tmp_path):
    traj = Trajectory({c: torch.zeros(2, dtype=torch.float64) for c in COLUMNS})
    with pytest.raises(UserError):
        traj.save(tmp_path / "t.txt")
    with pytest.raises(UserError):
        Trajectory.load(tmp_path / "missing.npz")
