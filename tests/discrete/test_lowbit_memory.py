"""The analytic state bytes of benchmarks/memory.py (issue 22 item 4) equal what the optimizers hold, for every
optimizer × state dtype × weight dtype on the tiny model (so the formula rows recorded for 1B and 7B, computed
on the meta device, are the formula that is checked here), and 8-bit states are the smallest."""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import scaling_common as C  # noqa: E402


@pytest.mark.parametrize("weights", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["adamw", "galore", "osd", "rso"])
def test_formula_state_bytes_equal_the_optimizers(name, weights):
    got = {}
    for state_dtype in ("float32", "bf16", "int8"):
        model = C.llama(C.SMOKE_MODEL, C.SMOKE_VOCAB, 16, torch.device("cpu"), False, dtype=weights)
        assert {p.dtype for p in model.parameters()} == {weights}
        per_layer = "in_backward" if name == "adamw" else "off"       # adamw "off" with float32 is torch's AdamW
        opt, layers = C.make_optimizer(model, name, per_layer, C.SMOKE_RANK, fused=False, state_dtype=state_dtype)
        x, y = C.random_batch(2, 16, C.SMOKE_VOCAB, "cpu")
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        formula = C.analytic(model, name, per_layer, C.SMOKE_RANK, state_dtype, "float32")
        assert C.state_bytes(opt) == formula.state, state_dtype
        assert formula.weights == sum(p.numel() for p in model.parameters()) * weights.itemsize
        got[state_dtype] = formula.state
    assert got["int8"] < got["bf16"] < got["float32"]
