"""How a step lays tensors out: chunks of a bucket, stacked copies, stacked state views. No maths.

A *bucket* is a list of same-shape matrices that share a rule, a plan, a step count and a side. Its state
lives in one stacked (L, ·, ·) buffer per key; each parameter's state entry is a view of its slice, so the
state contract is unchanged (a loaded or replaced entry is detected and the bucket re-stacked).

Why chunks and not one launch per matrix: on LLaMA-1B the ~2000 per-matrix launches of a step cost more
host time than the GPU needs for the products (docs/results/benchmarks/README.md).
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

# A chunk of a bucket stacks its gradients into one (c, m, n) buffer so that each big product is one
# batched launch; the buffer holds at most this many elements (512 MiB in float32).
CHUNK_ELEMS = 1 << 27

# A matrix of at least this many entries is multiplied on its own (no stacked copy of its gradient, the weight
# update accumulated into it by one addmm_): its products keep a GPU busy far longer than their launch takes
# (2048 x 2048 at r = 512 is ~4 GFLOP), so batching saves no host time there, while stacking costs a copy of G
# and an (L, m, n) product buffer, two full passes over the bucket's memory.
PER_MATRIX_ELEMS = 1 << 21

# plain scalars a bucket's members share (the bucket key guarantees it); copied into the stacked state
SHARED_SCALARS = ("subproblem_start", "proj_side")


def chunks(L: int, numel: int) -> Iterator[slice]:
    """Slices of a bucket of L matrices of ``numel`` elements each, ≤ CHUNK_ELEMS elements per slice."""
    c = max(1, CHUNK_ELEMS // max(1, numel))
    for i in range(0, L, c):
        yield slice(i, min(L, i + c))


def stack_cast(tensors: list[Tensor], dtype: torch.dtype) -> Tensor:
    """One (c, ·…) copy of same-shape tensors in ``dtype`` (a view for a single tensor of that dtype)."""
    if len(tensors) == 1 and tensors[0].dtype == dtype:
        return tensors[0][None]
    out = torch.empty((len(tensors), *tensors[0].shape), dtype=dtype, device=tensors[0].device)
    torch._foreach_copy_(list(out.unbind(0)), tensors)                    # one pass, one launch: copy (and cast)
    return out


def stacked(states: list[dict], key: str, cache: dict) -> Tensor:
    """The (L, ·…) buffer whose slices are ``states[i][key]``; (re)built when an entry was replaced.

    Rebuilding replaces each entry by a view of the new buffer with the same values (bit for bit).
    """
    tag = (key, tuple(id(s) for s in states))
    hit = cache.get(tag)
    if hit is not None and all(s[key] is view for s, view in zip(states, hit[1])):
        return hit[0]
    buf = torch.stack([s[key] for s in states])
    views = list(buf.unbind(0))
    for s, view in zip(states, views):
        s[key] = view
    cache[tag] = (buf, views)
    return buf


def stacked_state(states: list[dict], keys: list[str], cache: dict) -> dict:
    """A state dict of the bucket: each tensor key maps to its stacked buffer (plus the shared scalars)."""
    out = {k: stacked(states, k, cache) for k in keys}
    for k in SHARED_SCALARS:
        if k in states[0]:
            out[k] = states[0][k]
    return out


def tensor_keys(state: dict) -> list[str]:
    """The keys of a state that a bucket stacks: every tensor but the (CPU, per-parameter) step count."""
    return [k for k, v in state.items() if torch.is_tensor(v) and k != "step"]
