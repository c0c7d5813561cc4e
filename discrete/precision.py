"""Matmul precision of the products that touch an (m, n) matrix, as a registry of modes.

Only the three big products of a subspace step (Ĝ = PᵀG, the online-PCA second pass G̃Aᵀ, and
W += lr·scale·P U) take the mode; every state tensor stays float32 and every r×r product (PᵀP in
particular, a small difference of O(1) numbers) runs in full float32.

| mode      | what                                                   |
|-----------|--------------------------------------------------------|
| highest   | float32 products                                       |
| tf32      | TF32 tensor cores on CUDA (10-bit mantissa inputs, float32 accumulate); float32 on CPU |
| auto      | the default: ``tf32`` on CUDA, ``highest`` on CPU (docs/results/benchmarks/README.md says why) |

``bf16`` (bf16 operands) was offered by the first release's batched path; it is accepted and
mapped to ``tf32``, because an in-place ``W.addmm_`` needs operands of W's dtype and a bf16
copy of each G costs a full extra pass over it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from osd_theory.registry import Registry


@dataclass(frozen=True)
class MatmulMode:
    """Whether the big products may use TF32 on CUDA."""

    tf32: bool

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old


MATMUL_PRECISION: Registry[MatmulMode] = Registry("matmul_precision")
MATMUL_PRECISION.add("highest", MatmulMode(False))
MATMUL_PRECISION.add("tf32", MatmulMode(True))
MATMUL_PRECISION.add("bf16", MatmulMode(True))      # accepted for old state dicts; see the module docstring
MATMUL_PRECISION.add("auto", MatmulMode(True))      # TF32 only matters on CUDA: CPU matmuls are float32 anyway


def matmul_mode(name: str) -> MatmulMode:
    return MATMUL_PRECISION.get(name)
