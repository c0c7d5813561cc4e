"""Stochastic rounding of a float32 update into bf16 weights (group key ``stochastic_rounding``).

bf16 weights without a float32 master copy lose every update smaller than half a unit in the last
place of W: with round to nearest, W ← bf16(W + δ) = W whenever |δ| < ulp(W)/2 (ulp = 2⁻⁷|W| for
bf16's 8-bit significand), so a small learning rate stalls training. Stochastic rounding rounds up
with probability equal to the fraction of the ulp that was cut off, so E[bf16(x)] = x and small
updates accumulate in expectation (Gupta et al., arXiv:1502.02551; the bf16-weight recipes of
Zamirai et al., arXiv:2010.06192).

Implementation: x = W + α·δ in float32; add 16 uniform random bits to the low half of x's bit
pattern and cut it off (truncation of a float32 to bf16). Adding to the magnitude bits is
sign-independent, so the rounding is unbiased for negative x too. Deterministic: the random bits
come from a generator seeded by (seed, parameter index, step) (:func:`rounding_generator`), never
from the global RNG, so a resumed run rounds the same way.
"""
from __future__ import annotations

import torch
from torch import Tensor


def rounding_generator(seed: int, index: int, step: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` that depends only on (seed, parameter index, step) (a stream of its own:
    the salt keeps it apart from :func:`discrete.projection.basis_generator`'s draws)."""
    gen = torch.Generator(device=device)
    return gen.manual_seed(((int(seed) * 1_000_003 + index) * 1_000_033 + step) ^ 0x5EED_0B16)


def stochastic_round_bf16(x: Tensor, generator: torch.Generator) -> Tensor:
    """bf16 of float32 ``x``, rounded up in magnitude with probability (cut-off bits)/2¹⁶ (E = x for finite x)."""
    bits = x.contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, x.shape, generator=generator, device=x.device, dtype=torch.int32)
    # -65536 = 0xFFFF0000 as int32: keep sign, exponent and the 7 significand bits bf16 has
    return ((bits + noise) & -65536).view(torch.float32).to(torch.bfloat16)


def add_stochastic_(W: Tensor, delta: Tensor, alpha: float, generator: torch.Generator, decay: float = 1.0) -> Tensor:
    """W ← SR(decay·W + alpha·delta), in place, for bf16 W (float32 sum, then :func:`stochastic_round_bf16`).

    ``decay`` = 1 − lr·λ folds AdamW's decoupled decay into the same rounding (a bf16 ``W.mul_(1 − lr·λ)``
    with lr·λ ~ 1e-5 would round back to W). A float32 (or float64) W takes the ordinary ops (nothing to
    round). ``delta`` is float32 of W's shape.
    """
    if W.dtype != torch.bfloat16:
        if decay != 1.0:
            W.mul_(decay)
        return W.add_(delta.to(W.dtype), alpha=alpha)
    x = W.float()
    if decay != 1.0:
        x.mul_(decay)
    x.add_(delta, alpha=alpha)
    return W.copy_(stochastic_round_bf16(x, generator))


def generators_for(enabled: bool, seed: int, params: list[Tensor], indices: list[int] | None,
                   step: int) -> list[torch.Generator] | None:
    """One :func:`rounding_generator` per parameter when stochastic rounding is on and some W is bf16, else None.

    ``indices``: the parameters' indices over all groups (as the basis draws); required when rounding applies.
    """
    if not enabled or not any(p.dtype == torch.bfloat16 for p in params):
        return None
    if indices is None:
        raise ValueError("stochastic_rounding=True: this step path passes no parameter index to seed the "
                         "rounding; train without stochastic_rounding here")
    return [rounding_generator(seed, i, step, p.device) for p, i in zip(params, indices)]
