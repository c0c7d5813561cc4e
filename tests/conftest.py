"""Shared test configuration.

Hypothesis profiles: ``ci`` is derandomised (fixed seed, reproducible on every run) and
is selected automatically when ``CI`` is set; ``dev`` draws fresh examples. Property
tests state their own ``max_examples``; together they generate 500+ cases under ``ci``
(``pytest --hypothesis-show-statistics`` prints the counts).
"""
from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# Tests are float64 references unless they say otherwise; keep CPU threads modest on 2-core CI.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
