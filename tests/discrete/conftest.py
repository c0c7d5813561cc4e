"""Fixtures over the optimizer table (see discrete_table.py)."""
from __future__ import annotations

import pytest
import torch

from discrete_table import PROJECTED, TABLE

# tiny tensors: one thread is much faster than two contending ones
torch.set_num_threads(1)


@pytest.fixture(params=TABLE, ids=[r.name for r in TABLE])
def row(request):
    return request.param


@pytest.fixture(params=PROJECTED, ids=[r.name for r in PROJECTED])
def prow(request):
    return request.param
