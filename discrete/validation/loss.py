"""The language-model loss: output head + cross-entropy, optionally a chunk of tokens at a time.

At a 32k vocabulary the float32 logits of one batch are the largest transient of a training step
(batch 16 × 256 tokens: 4096 × 32000 × 4 B = 0.5 GB for the logits, as much again for their log-softmax
and for its gradient). With activation checkpointing and per-layer updates that transient, not the weights
or the state, sets the peak (docs/scaling.md). Chunking computes the head and the loss ``chunk`` tokens at
a time and recomputes each chunk's logits in backward (``torch.utils.checkpoint``), so at most one chunk's
logits are alive; the result is the same mean cross-entropy up to float32 summation order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100  # F.cross_entropy's default: such targets count neither in the sum nor in the mean


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits (..., V) against targets (...), in at least float32: bf16/fp16 logits (autocast)
    are upcast, float64 ones kept (the float64 reference runs of the tests)."""
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction,
                           ignore_index=IGNORE_INDEX)


def _summed_ce(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return cross_entropy(F.linear(h, weight), targets, reduction="sum")


def lm_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 0) -> torch.Tensor:
    """Mean cross-entropy of the logits ``h @ weightᵀ`` against ``targets``.

    h: (..., C) final hidden states; weight: (V, C) output head; targets: (...) int64 token ids
    (``IGNORE_INDEX`` skipped). ``chunk``: tokens per piece; 0 computes all N tokens at once.
    Returns the scalar L = (1/N') Σ_n −log softmax(h_n Wᵀ)[y_n] over the N' counted tokens.
    """
    if chunk < 0:
        raise ValueError(f"loss chunk must be >= 0 tokens (0 = unchunked), got {chunk}")
    h = h.reshape(-1, h.size(-1))
    targets = targets.reshape(-1)
    if chunk == 0 or chunk >= h.size(0):
        return cross_entropy(F.linear(h, weight), targets)
    total = None
    for i in range(0, h.size(0), chunk):
        # the weight is passed in (not read from the module) so a recompute in backward sees the tensor the
        # forward used, also when a wrapper (FSDP2) swaps the module's parameter between forward and backward
        part = checkpoint(_summed_ce, h[i:i + chunk], weight, targets[i:i + chunk], use_reentrant=False)
        total = part if total is None else total + part
    # no clamp: with every target ignored the mean is 0/0 = nan, as F.cross_entropy's
    return total / (targets != IGNORE_INDEX).sum()
