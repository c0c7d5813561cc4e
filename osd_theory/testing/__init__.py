"""Property tests for the math core and for your own rules: hypothesis strategies and :func:`check_rule`.

    from hypothesis import given
    from osd_theory.testing import check_rule, rule_cases, rule_settings

    @rule_settings()
    @given(rule_cases(my_gamma))
    def test_my_rule(case):
        check_rule(case)

:mod:`osd_theory.testing.strategies` — dimensions, spectra, bases, problems, HD systems and their
hyperparameters, states, whole (system, problem, W, P, S) cases; :mod:`osd_theory.testing.rules` —
:class:`RuleCase`, :func:`rule_cases` (your Γ in drawn runs), :func:`check_rule` and the exceptions it
raises (:class:`RuleBlewUp` carries the partial trajectory). See docs/property-tests.md.

Needs ``hypothesis`` (``pip install 'osd-theory[testing]'``); ``import osd_theory`` does not import this.
"""
from __future__ import annotations

try:
    import hypothesis  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("osd_theory.testing needs hypothesis: pip install 'osd-theory[testing]' "
                      "(or pip install hypothesis)") from exc

from hypothesis import HealthCheck, settings

from osd_theory.testing.rules import (BLIND_SET_MODES, RuleBlewUp, RuleCase, RuleCheckFailed, RuleReport, check_rule,
                                      make_case, rule_cases)
from osd_theory.testing.strategies import (KINETIC_FNS, MAX_DIM, SYSTEMS, VIOLABLE, HDCase, bases, dims, fit_dims,
                                           floats_in, hd_cases, hyperparameters, problems, spectrum_matrix, states,
                                           systems)


def rule_settings(max_examples: int = 25, **kw) -> settings:
    """Hypothesis settings for :func:`check_rule` tests: few examples, no per-example deadline (the
    budget is ``check_rule``'s ``max_steps``), the too-slow health check off (each example is an ODE solve)."""
    return settings(max_examples=max_examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], **kw)


__all__ = ["BLIND_SET_MODES", "HDCase", "KINETIC_FNS", "MAX_DIM", "RuleBlewUp", "RuleCase", "RuleCheckFailed",
           "RuleReport", "SYSTEMS", "VIOLABLE", "bases", "check_rule", "dims", "fit_dims", "floats_in", "hd_cases",
           "hyperparameters", "make_case", "problems", "rule_cases", "rule_settings", "spectrum_matrix", "states",
           "systems"]
