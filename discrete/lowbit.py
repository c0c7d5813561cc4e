"""Low-precision storage of optimizer moments: float32, bf16, and blockwise 8-bit codes.

An inner optimizer (:mod:`discrete.inner`) keeps each moment in one :class:`Storage` of
:data:`STATE_DTYPES` (the group key ``state_dtype``). The step itself is always float32: the
storage *loads* a float32 tensor (the state tensor itself for float32, a dequantised copy
otherwise), the float32 step function of :mod:`osd_theory.discrete_steps` advances it, and the
storage *stores* it back in place (nothing to do for float32, so that path is bit-identical to a
float32-only optimizer).

8-bit ("int8")
--------------
Blockwise dynamic quantisation (Dettmers et al., arXiv:1511.04561 and arXiv:2110.02861): a moment
x of shape (*lead, n) is cut into blocks of :data:`BLOCK` consecutive entries along its LAST
dimension (the last block of a row may be shorter); each block keeps its absmax
s = max|x| (float32, shape (*lead, ceil(n / BLOCK))) and each entry the index of the nearest value
of a fixed code map to x / s. Blocks never cross a row, so a row-sharded moment (FSDP2, Shard(0))
and a stack of same-shape moments (the batched path, (L, *shape)) keep every block whole.

* Block size 256. Smaller blocks follow the local scale of a moment more closely (rows of Ĝ differ
  by orders of magnitude, and one large entry flattens the codes of its whole block); the absmax
  costs 4 bytes per block, 1.6 % of the 1-byte codes at 256 (bitsandbytes' 2048 on flat tensors:
  0.2 %). 256 also divides every LLaMA width and rank we train, so rows split into whole blocks.
* Code map: dynamic (:func:`dynamic_map`): values 10⁻ʲ·f for decades j = 0..6 and fractions f on a
  linear grid of (0.1, 1], the top decade finest (64 values signed, 128 unsigned) — relative
  precision where the entries are large, and seven decades of range for small ones. A linear map
  is offered for comparison (:data:`CODE_MAPS`); benchmarks/lowbit_error.py measures both on Adam
  moments of a small LLaMA (docs/results/benchmarks/lowbit_error.json: with √v storage both track,
  linear marginally closer there; linear with v itself diverged). ``int8`` uses the dynamic map: the
  small model's rows are shorter than a block, and bitsandbytes found linear states unstable at scale
  (arXiv:2110.02861); docs/scaling.md states this judgement.
* First moments (signed): int8 codes −127..127 into the signed map (code 0 is exactly 0, so a
  state zeroed in place, e.g. by the ``reset`` jump policy, reads as 0).
* Second moments (non-negative, :attr:`InnerRule.nonneg`): uint8 codes of √v into the unsigned
  map, squared on load. The unsigned map has no negative value, so v̂ ≥ 0 always; storing √v halves
  the dynamic range to cover (√v spans the decades of |g|, v twice as many), so an entry of v
  10⁻¹² below its block's maximum still reads non-zero, where storing v itself rounds it to 0 and
  Adam's step m/(√v̂ + ε) jumps to m/ε (measured in benchmarks/lowbit_error.py).
* Deterministic: round to nearest (ties to the lower code), no random state.

bf16
----
Moments stored in bf16 (round to nearest), the step in float32. With β₂ = 0.999, v changes by
0.1 % a step, under bf16's half-ulp (0.2–0.4 %), so a v that should decay stays where it is (the
8-bit blocks do not have this stall: the block's absmax is recomputed every step and carries the
decay). The trade-off is measured in tests/discrete/test_lowbit.py and docs/optimizers.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from osd_theory.registry import Registry

BLOCK = 256


# -- code maps ----------------------------------------------------------------------------------
def dynamic_map(signed: bool) -> Tensor:
    """The dynamic code map, sorted, float64: 255 values in [−1, 1] (signed) or [0, 1] (unsigned), 0 and 1 included.

    Decade j (values in (10⁻ʲ⁻¹, 10⁻ʲ]) holds 2^(6−j) values (signed, per sign) or 2^(7−j) (unsigned) on a
    linear grid of (0.1, 1]·10⁻ʲ, right ends included: the largest value of each decade is 10⁻ʲ exactly.
    """
    mags = []
    for j in range(7):
        k = 2 ** (6 - j) if signed else 2 ** (7 - j)
        mags.append(torch.linspace(0.1, 1.0, k + 1, dtype=torch.float64)[1:] * 10.0 ** (-j))
    pos = torch.cat(mags).sort().values                        # 127 (signed) or 254 (unsigned) values
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([-pos.flip(0), zero, pos]) if signed else torch.cat([zero, pos])


def linear_map(signed: bool) -> Tensor:
    """The linear code map: k/127 for k = −127..127 (signed) or k/254 for k = 0..254 (unsigned), float64."""
    return torch.linspace(-1.0, 1.0, 255, dtype=torch.float64) if signed else torch.linspace(0.0, 1.0, 255,
                                                                                             dtype=torch.float64)


CODE_MAPS: Registry = Registry("8-bit code map")
CODE_MAPS.add("dynamic", dynamic_map)
CODE_MAPS.add("linear", linear_map)


@lru_cache(maxsize=64)
def _tables(kind: str, signed: bool, device: torch.device) -> tuple[Tensor, Tensor]:
    """(values, midpoints) float32 on ``device``: the code map and the rounding thresholds between its values."""
    values = CODE_MAPS.get(kind)(signed)
    mids = (values[1:] + values[:-1]) / 2
    return values.to(device=device, dtype=torch.float32), mids.to(device=device, dtype=torch.float32)


# -- blockwise quantisation ---------------------------------------------------------------------
def n_blocks(last: int, block: int = BLOCK) -> int:
    return math.ceil(last / block)


def _blocked(x: Tensor, block: int) -> Tensor:
    """x (*lead, n) as (*lead, nb, block), the last block zero-padded (a copy only when n % block != 0)."""
    n = x.shape[-1]
    pad = n_blocks(n, block) * block - n
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.reshape(*x.shape[:-1], n_blocks(n, block), block)       # explicit: an empty shard has 0 rows


def quantize_(codes: Tensor, absmax: Tensor, x: Tensor, *, signed: bool, kind: str = "dynamic",
              block: int = BLOCK) -> None:
    """Write x (float32, (*lead, n)) into ``codes`` (int8 signed / uint8 unsigned, x's shape) and ``absmax``
    ((*lead, ceil(n / block)) float32), in place: absmax = max|x| per block, code = nearest map value to x/absmax."""
    n = x.shape[-1]
    xb = _blocked(x, block)
    amax = xb.abs().amax(dim=-1)
    absmax.copy_(amax)
    scale = torch.where(amax > 0, amax, torch.ones_like(amax))      # an all-zero block: codes of 0
    values, mids = _tables(kind, signed, x.device)
    # int32 indices (not bucketize's default int64): half the bytes of the largest temporary
    idx = torch.bucketize(xb / scale[..., None], mids, out_int32=True).flatten(-2)[..., :n]
    offset = (values.numel() - 1) // 2 if signed else 0             # signed: index 127 is the value 0
    codes.copy_(idx.sub_(offset) if offset else idx)


def dequantize(codes: Tensor, absmax: Tensor, *, signed: bool, kind: str = "dynamic", block: int = BLOCK) -> Tensor:
    """The float32 tensor of ``codes`` (*lead, n) and ``absmax`` (*lead, nb): map value × its block's absmax."""
    n = codes.shape[-1]
    values, _ = _tables(kind, signed, codes.device)
    offset = (values.numel() - 1) // 2 if signed else 0
    # index_select takes int32 indices: no int64 copy of the codes (8 bytes per entry)
    x = values.index_select(0, (codes.to(torch.int32) + offset).reshape(-1)).view(codes.shape)
    xb = _blocked(x, block).mul_(absmax[..., None])            # x is this function's own tensor: in place
    return xb.flatten(-2)[..., :n]


# -- storages -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Storage:
    """How a moment is kept between steps. Subclasses: float32 (as is), bf16, int8 (codes + absmax)."""

    name: str

    def keys(self, key: str) -> tuple[str, ...]:
        """The state tensor keys one moment ``key`` takes."""
        return (key,)

    def dtype(self, nonneg: bool, ndim: int = 2) -> torch.dtype:
        """The dtype of the moment's own key for a moment of ``ndim`` dimensions (a cheap check at step time)."""
        return torch.float32

    def layout(self, key: str, shape: tuple[int, ...], nonneg: bool) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return {key: (tuple(shape), self.dtype(nonneg, len(shape)))}

    def init(self, key: str, like: Tensor, nonneg: bool) -> dict[str, Tensor]:
        """Zero state of ``like``'s shape (dequantises to exact zeros); float32 storage of a float64 ``like`` is
        float64 (full precision for float64 parameters, as torch's optimizers)."""
        return {k: torch.zeros(shape, dtype=torch.float64 if dtype == torch.float32 and like.dtype == torch.float64
                               else dtype, device=like.device)
                for k, (shape, dtype) in self.layout(key, tuple(like.shape), nonneg).items()}

    def load(self, state: dict, key: str, nonneg: bool) -> Tensor:
        """The moment as float32: the state tensor itself (float32: the step mutates it in place) or a copy."""
        return state[key]

    def store_(self, state: dict, key: str, x: Tensor, nonneg: bool) -> None:
        """Write the stepped float32 moment ``x`` (from :meth:`load`) back into the state, in place."""
        if state[key] is not x:          # x is the state tensor itself after a float32 step: nothing to do
            state[key].copy_(x)


@dataclass(frozen=True)
class BF16(Storage):
    def dtype(self, nonneg, ndim=2):
        return torch.bfloat16

    def load(self, state, key, nonneg):
        return state[key].float()

    def store_(self, state, key, x, nonneg):
        state[key].copy_(x)                        # round to nearest even


@dataclass(frozen=True)
class Int8(Storage):
    """Blockwise 8-bit (module docstring): ``key`` holds the codes, ``key + '_absmax'`` the block scales.

    Moments of fewer than 2 dimensions (norm weights, biases) stay float32, as bitsandbytes keeps small
    tensors 32-bit: they are a negligible part of the state, and under FSDP2 a 1-D tensor is sharded along
    its only (the blocks') dimension, which would cut blocks; a matrix is sharded by rows and keeps them whole.
    """

    kind: str = "dynamic"
    block: int = BLOCK
    sqrt_nonneg: bool = True        # second moments stored as codes of √v (squared on load)

    def keys(self, key):
        return (key, key + "_absmax")

    def dtype(self, nonneg, ndim=2):
        return torch.float32 if ndim < 2 else torch.uint8 if nonneg else torch.int8

    def layout(self, key, shape, nonneg):
        shape = tuple(shape)
        if len(shape) < 2:
            return {key: (shape, torch.float32)}
        return {key: (shape, self.dtype(nonneg)),
                key + "_absmax": ((*shape[:-1], n_blocks(shape[-1], self.block)), torch.float32)}

    def load(self, state, key, nonneg):
        if state[key].is_floating_point():       # a moment of < 2 dims kept as is (also stacked into a bucket)
            return state[key]
        x = dequantize(state[key], state[key + "_absmax"], signed=not nonneg, kind=self.kind, block=self.block)
        return x.square_() if nonneg and self.sqrt_nonneg else x

    def store_(self, state, key, x, nonneg):
        if state[key].is_floating_point():
            return super().store_(state, key, x, nonneg)
        x = x.float()                              # a float64 step's moments (float64 parameters)
        if nonneg:
            # v ≥ 0 in exact arithmetic; clamp a round-off negative before the square root
            x = x.clamp(min=0).sqrt_() if self.sqrt_nonneg else x.clamp(min=0)
        quantize_(state[key], state[key + "_absmax"], x, signed=not nonneg, kind=self.kind, block=self.block)


STATE_DTYPES: Registry[Storage] = Registry("state_dtype")
STATE_DTYPES.add("float32", Storage("float32"))
STATE_DTYPES.add("bf16", BF16("bf16"))
STATE_DTYPES.add("int8", Int8("int8"))
