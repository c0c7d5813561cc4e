"""Bad input at the core level: every mistake is a UserError that says what is allowed."""
from __future__ import annotations

import math

import pytest
import torch

from osd_theory.convex import CONVEX, make_convex
from osd_theory.errors import UserError
from osd_theory.hd import HD_SYSTEMS, make_system
from osd_theory.kernels import check_rank, parse_side
from osd_theory.problems import PROBLEMS, make_problem
from osd_theory.projections import PROJECTIONS, CallableRule, make_rule

DT = torch.float64


# -- ranks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rank", [0, -1, 5, 2.0, True])
def test_rank_outside_range_is_a_user_error_with_the_range(rank):
    with pytest.raises(UserError, match=r"\[1, 4\]"):
        check_rank(rank, (4, 6))


@pytest.mark.parametrize("rank", [0, 5])
def test_rule_bind_checks_rank(rank):
    with pytest.raises(UserError, match=r"\[1, 4\] for a 4x6 matrix"):
        make_rule("constant", rank=rank).bind((4, 6))


def test_valid_ranks_pass():
    assert [check_rank(r, (4, 6)) for r in (1, 4)] == [1, 4]


# -- unknown names in every registry --------------------------------------------------------
@pytest.mark.parametrize("registry,build", [
    (HD_SYSTEMS, lambda name: make_system(name)),
    (PROBLEMS, lambda name: make_problem(name)),
    (PROJECTIONS, lambda name: make_rule(name)),
    (CONVEX, lambda name: make_convex(name)),
])
def test_unknown_name_lists_valid_names(registry, build):
    with pytest.raises(UserError) as info:
        build("no_such_thing")
    msg = str(info.value)
    assert "no_such_thing" in msg
    assert all(name in msg for name in registry.names()), msg


def test_unknown_side_lists_valid_sides():
    with pytest.raises(UserError, match="'auto', 'left', 'reverse_std', 'right', 'std'"):
        parse_side("top", 3, 4)


def test_unknown_symbolic_system_lists_valid_names():
    from osd_theory.symbolic import SYMBOLIC, prove
    with pytest.raises(UserError) as info:
        prove("no_such_system", link=False)
    assert all(name in str(info.value) for name in SYMBOLIC.names())


# -- hyperparameters ------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw,pattern", [
    ("adam", {"a": 0.0}, "a > 0"),
    ("adam", {"a": -1.0}, "a > 0"),
    ("adam", {"b": 0.0}, "b > 0"),
    ("adam", {"e": -1e-3}, "e >= 0"),
    ("heavy_ball", {"a": 0.0}, "a > 0"),
    ("signum", {"a": -2.0}, "a > 0"),
    ("lion_k", {"a": -1.0}, "a >= 0"),
    ("lion_k_wd", {"wd": 0.0}, "wd > 0"),
    ("lion_k", {"kinetic_fn": "sign"}, "expected one of"),
    ("signum", {"delta": 0.0}, "delta"),
    ("adam", {"beta1": 0.9}, "valid ones are"),
])
def test_bad_hyperparameters_are_user_errors(name, kw, pattern):
    with pytest.raises(UserError, match=pattern):
        make_system(name, **kw)


def _first_float_field(name):
    import dataclasses
    return next((f.name for f in dataclasses.fields(HD_SYSTEMS.get(name)) if f.type in ("float", float)), None)


@pytest.mark.parametrize("name", [n for n in HD_SYSTEMS.names() if _first_float_field(n)])
@pytest.mark.parametrize("value", [math.nan, math.inf, "1.0"])
def test_non_finite_or_non_numeric_hyperparameters(name, value):
    with pytest.raises(UserError, match=f"{_first_float_field(name)} must be a finite number"):
        make_system(name, **{_first_float_field(name): value})


@pytest.mark.parametrize("b", [1.5, -0.2])
def test_lion_b_outside_unit_interval_is_reported_by_condition(b):
    cond = make_system("lion_k", b=b).condition()
    assert not cond.holds and "0 < b < 1" in cond.statement and "VIOLATED" in str(cond)


@pytest.mark.parametrize("b", [0.0, 1.0])
def test_lion_b_where_H_is_undefined_is_refused(b):
    # H has K((1-b)M)/(1-b) and Delta has a/b: at b = 0 or 1 there is no H to report on
    with pytest.raises(UserError, match="b != 0 and b != 1"):
        make_system("lion_k", b=b)


def test_adam_condition_reports_b_above_4a_with_numbers():
    cond = make_system("adam", a=1.0, b=5.0).condition()
    assert not cond.holds and "5 <= 4" in cond.statement
    assert make_system("adam", a=1.0, b=4.0).condition().holds


def test_lion_k_wd_epsilon_gamma_above_one_is_reported():
    assert not make_system("lion_k_wd", gamma=2.0, eps=1.0).condition().holds
    assert make_system("lion_k_wd", gamma=1.0, eps=1.0).condition().holds


# -- user projection rules ------------------------------------------------------------------
def _bound(rule, shape=(4, 6), rank=2):
    rule.rank = rank
    return rule.bind(shape)


@pytest.mark.parametrize("fn,pattern", [
    (lambda t, P, G: torch.zeros(P.shape[0] + 1, P.shape[1], dtype=P.dtype), r"returned shape \(5, 2\), expected \(4, 2\)"),
    (lambda t, P, G: torch.full_like(P, math.nan), "non-finite"),
    (lambda t, P, G: torch.full_like(P, math.inf), "non-finite"),
    (lambda t, P, G: P.tolist(), "returned list"),
])
def test_callable_rule_bad_output_names_the_rule(fn, pattern):
    rule = _bound(CallableRule(fn=fn, label="my_gamma", rank=2))
    P = torch.randn(4, 2, dtype=DT)
    with pytest.raises(UserError, match=pattern) as info:
        rule.rate(0.0, P, torch.randn(4, 6, dtype=DT))
    assert "my_gamma" in str(info.value)


def test_callable_rule_not_callable():
    with pytest.raises(UserError, match="not callable"):
        CallableRule(fn=3, label="three")


@pytest.fixture
def rule_file(tmp_path):
    path = tmp_path / "rules.py"
    path.write_text(
        "import torch\n"
        "def good(t, P, G):\n    return -P\n"
        "def wrong_shape(t, P, G):\n    return P[:, :1]\n"
        "def nan(t, P, G):\n    return P * float('nan')\n")
    return path


def test_user_rule_from_file_works(rule_file):
    rule = make_rule(f"{rule_file}:good", rank=2).bind((4, 6))
    P = torch.ones(4, 2, dtype=DT)
    assert torch.equal(rule.rate(0.0, P, torch.zeros(4, 6, dtype=DT)), -P)


@pytest.mark.parametrize("fn,pattern", [("wrong_shape", r"shape \(4, 1\)"), ("nan", "non-finite")])
def test_user_rule_from_file_bad_output(rule_file, fn, pattern):
    spec = f"{rule_file}:{fn}"
    rule = make_rule(spec, rank=2).bind((4, 6))
    with pytest.raises(UserError, match=pattern) as info:
        rule.rate(0.0, torch.ones(4, 2, dtype=DT), torch.zeros(4, 6, dtype=DT))
    assert spec in str(info.value)


def test_user_rule_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        make_rule(f"{tmp_path / 'nope.py'}:gamma")


def test_user_rule_missing_function_lists_callables(rule_file):
    with pytest.raises(UserError, match="no function 'gamma'") as info:
        make_rule(f"{rule_file}:gamma")
    assert "good" in str(info.value)


def test_user_rule_file_that_fails_to_import(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(UserError, match="could not import.*boom"):
        make_rule(f"{path}:gamma")


def test_haar_basis_wider_than_its_dimension_is_refused():
    """Regression: QR silently returned (dim, dim) for rank > dim."""
    from osd_theory.kernels import random_basis
    with pytest.raises(UserError, match="at most dim = 3"):
        random_basis(3, 5)
    assert random_basis(3, 5, distribution="gaussian").shape == (3, 5)
