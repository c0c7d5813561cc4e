"""Matmul precision of the products that touch an (m, n) matrix, as a registry of modes.

Only the three big products of a subspace step (Ĝ = PᵀG, the online-PCA second pass G̃Aᵀ, and
W += lr·scale·P U) take the mode; every state tensor stays float32 and every r×r product (PᵀP in
particular, a small difference of O(1) numbers) runs in full float32.

| mode      | what                                                   |
|-----------|--------------------------------------------------------|
| highest   | float32 products                                       |
| tf32      | TF32 tensor cores on CUDA (10-bit mantissa inputs, float32 accumulate); float32 on CPU |
| bf16      | batched path: bf16 operands (each Gᵢ cast once per step), float32 accumulate and state; the W update is formed in bf16 and added to W |
| auto      | the default: ``tf32`` on CUDA, ``highest`` on CPU (docs/results/benchmarks/README.md says why) |

The per-matrix reference path honours the TF32 switch but never casts operands.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from osd_theory.registry import Registry


@dataclass(frozen=True)
class MatmulMode:
    """Whether the big products may use TF32 on CUDA, and the operand dtype of the batched path."""

    tf32: bool
    dtype: torch.dtype | None = None     # None: the tensors' own (float32)

    def cast(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.dtype is None or x.dtype == self.dtype else x.to(self.dtype)

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
MATMUL_PRECISION.add("bf16", MatmulMode(True, torch.bfloat16))
MATMUL_PRECISION.add("auto", MatmulMode(True))      # TF32 only matters on CUDA: CPU matmuls are float32 anyway


def matmul_mode(name: str) -> MatmulMode:
    return MATMUL_PRECISION.get(name)
