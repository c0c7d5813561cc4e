"""Inner optimizers: the stateful update run on the (projected) gradient, as data.

``INNER`` maps a name to an :class:`InnerRule`: its state keys, how to create the state for a
gradient of a given shape, and its step (a pure function of :mod:`osd_theory.discrete_steps`,
which is the Euler step of the matching HD system plus the named departures). The same
registry serves the weight update in the subspace (``inner``) and OSD's P-optimizer
(``proj_optimizer``), whose state keys carry the ``proj_`` prefix.

| name    | HD system (osd_theory.hd) | state                      | update U (W ← W + lr·scale·P U)         |
|---------|---------------------------|----------------------------|-----------------------------------------|
| adamw   | Adam                      | exp_avg, exp_avg_sq        | −(√c₂/c₁) m/(√v + ε√c₂)   (torch)        |
| lion    | Lion-𝒦, 𝒦 = ‖·‖₁          | exp_avg (tracks −ĝ)        | sign(β₁m − (1−β₁)ĝ)                     |
| sgd     | heavy ball                | momentum_buffer (torch's)  | −buf = −M/(1−μ), M = (1−μ)·buf          |
| gd (P only) | gradient flow         | none                       | −ĝ                                      |

Each rule is stored in a ``state_dtype`` (:mod:`discrete.lowbit`: float32, bf16, blockwise 8-bit);
:func:`resolve_inner` returns the rule bound to one, and the step is float32 whatever the storage.

Adafactor is not offered: with momentum no Adam-type H exists for it (THEORY.md §3.6).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

import torch
from torch import Tensor

from discrete.lowbit import STATE_DTYPES, Storage
from osd_theory import discrete_steps as ds
from osd_theory.registry import Registry


@dataclass(frozen=True)
class Hyper:
    """Per-step hyperparameters of an inner rule (read from the param group)."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0
    bias_correction: bool = True
    torch_eps: bool = True   # ε placement of bias-corrected Adam (torch; False: HF / galore-torch)
    extra: tuple = ()        # (key, value) of the rule's own options (InnerRule.options: Muon's Newton–Schulz)


@dataclass(frozen=True)
class InnerRule:
    """An inner optimizer bound to a storage of its state (:data:`discrete.lowbit.STATE_DTYPES`).

    It owns its state: the moment names (``state_names``; ``nonneg`` those that are ≥ 0, Adam's v), the
    tensor keys and dtypes they take in storage (:meth:`layout`), their creation (:meth:`init_state`),
    the check of a loaded state (:meth:`check_state`) and the step (:meth:`step`: load float32, the
    float32 step function, store back in place). Every state tensor's leading dimensions are the
    gradient's (the codes have Ĝ's shape, the 8-bit block scales Ĝ's with the last dimension in
    blocks), so a stack (L, *shape) of same-shape states steps in one call (the batched path).
    """

    name: str
    state_names: tuple[str, ...]
    step_fn: Callable[..., Tensor]
    uses_betas: bool = True
    nonneg: frozenset[str] = frozenset()          # moments that are ≥ 0 (stored unsigned in 8 bits)
    state_dtype: str = "float32"
    matrices_only: bool = False      # its step needs whole 2-D matrices (Muon's orthogonalisation)
    options: tuple[str, ...] = ()    # group keys passed to its step function as they are (Hyper.extra)
    # each row of U depends only on that row of Ĝ and the state (elementwise rules): large steps may run on row
    # blocks (bounded temporaries); False for anything with a reduction over a matrix (Muon, a normalised step)
    rowwise: bool = False

    @property
    def storage(self) -> Storage:
        return STATE_DTYPES.get(self.state_dtype)

    def keys(self, prefix: str = "") -> tuple[str, ...]:
        """Every state tensor key of this rule (codes and block scales for 8-bit; :meth:`layout`'s keys for a
        matrix: an 8-bit moment of fewer than 2 dimensions keeps one float32 tensor)."""
        return tuple(prefix + k for name in self.state_names for k in self.storage.keys(name))

    def layout(self, shape: tuple[int, ...], prefix: str = "") -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """key -> (shape, dtype) of every state tensor for a gradient of ``shape``."""
        out: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        for name in self.state_names:
            out.update(self.storage.layout(prefix + name, tuple(shape), name in self.nonneg))
        return out

    def init_state(self, like: Tensor, prefix: str = "") -> dict[str, Tensor]:
        """Zero state for a gradient of ``like``'s shape, on its device (Adam's v₀ = 0, as torch)."""
        out: dict[str, Tensor] = {}
        for name in self.state_names:
            out.update(self.storage.init(prefix + name, like, name in self.nonneg))
        return out

    def check_state(self, state: dict, shape: tuple[int, ...], prefix: str = "", layout: dict | None = None) -> str | None:
        """What is wrong with ``state`` for a gradient of ``shape`` (one phrase), or None. ``layout``: this rule's
        :meth:`layout` for ``shape`` and ``prefix`` when the caller has it (a step checks many same-shape states)."""
        for key, (want_shape, want_dtype) in (self.layout(shape, prefix) if layout is None else layout).items():
            value = state.get(key)
            if not torch.is_tensor(value):
                saved = _saved_dtype(state, self.state_names, prefix)
                return (f"lacks the tensor {key!r} that state_dtype={self.state_dtype!r} keeps"
                        + (f" (saved with state_dtype={saved!r}?)" if saved else ""))
            if tuple(value.shape) != want_shape:
                return f"has {key} of shape {tuple(value.shape)}, expected {want_shape}"
            if value.dtype != want_dtype and not (want_dtype == torch.float32 and value.dtype == torch.float64):
                saved = _saved_dtype(state, self.state_names, prefix)
                return (f"has {key} of dtype {value.dtype}, expected {want_dtype}"
                        + (f" (saved with state_dtype={saved!r}?)" if saved else ""))
        return None

    def tensors(self, state: dict, prefix: str = "") -> list[Tensor]:
        """The moments as float32 tensors (the state's own tensors for float32 storage; copies otherwise).

        A state kept in another dtype (the group's ``state_dtype`` changed after the state was made) is a
        ValueError naming both, not a KeyError or a silent reinterpretation of codes as values.
        """
        storage = self.storage
        for name in self.state_names:
            x = state.get(prefix + name)
            # a bucket stacks 1-D moments into 2-D ones: any dtype the storage keeps for this moment is fine
            allowed = {storage.dtype(name in self.nonneg, 1), storage.dtype(name in self.nonneg, 2), torch.float64}
            if x is None or x.dtype not in allowed:
                problem = self.check_state(state, tuple(x.shape) if x is not None else (), prefix)
                raise ValueError(f"inner optimizer {self.name!r}: the state {problem}; convert it with "
                                 "InnerRule.convert_state (discrete.inner) (or keep the state_dtype it was made with)")
        return [storage.load(state, prefix + k, k in self.nonneg) for k in self.state_names]

    def convert_state(self, state: dict, source: "InnerRule", prefix: str = "") -> None:
        """Rewrite ``state`` (kept by ``source``, the same rule in another storage) into this rule's storage,
        in place: dequantise, store (requantise). float32 → int8 → float32 is not the identity (8-bit codes)."""
        if source.name != self.name:
            raise ValueError(f"cannot convert the state of inner optimizer {source.name!r} into {self.name!r}")
        moments = [x.clone() for x in source.tensors(state, prefix)]
        for key in source.keys(prefix):
            state.pop(key, None)
        state.update(self.init_state(moments[0], prefix) if moments else {})
        for name, x in zip(self.state_names, moments):
            self.storage.store_(state, prefix + name, x, name in self.nonneg)

    def step(self, state: dict, g_hat: Tensor, hp: Hyper, step: int, prefix: str = "") -> Tensor:
        """Advance the state in place; return U (float32; W ← W + lr·scale·back_project(P, U)).

        Load the moments as float32, take the float32 step of :mod:`osd_theory.discrete_steps`, store them
        back (requantise) in place. Works on a stacked (L, ·, ·) state and Ĝ alike.
        """
        rows = _row_chunks(self, state, g_hat, prefix)
        if rows is not None:
            return self._step_in_chunks(state, g_hat, hp, step, prefix, rows)
        return self._step(state, g_hat, hp, step, prefix)

    def _step(self, state: dict, g_hat: Tensor, hp: Hyper, step: int, prefix: str) -> Tensor:
        S = self.tensors(state, prefix)
        if g_hat.dtype == torch.float64:    # float64 parameters step in float64 whatever the moments are kept in
            S = [x.double() for x in S]
        U = self.step_fn(S, g_hat, lr=hp.lr, beta1=hp.beta1, beta2=hp.beta2, eps=hp.eps, momentum=hp.momentum,
                         step=step, bias_correction=hp.bias_correction, torch_eps=hp.torch_eps, **dict(hp.extra))
        for name, x in zip(self.state_names, S):
            self.storage.store_(state, prefix + name, x, name in self.nonneg)
        return U

    def _step_in_chunks(self, state: dict, g_hat: Tensor, hp: Hyper, step: int, prefix: str, rows: int) -> Tensor:
        """:meth:`_step` on row blocks of ``rows`` rows of the (-1, last) views: an elementwise rule gives the same
        values (8-bit blocks run along the last dimension, so no block is cut), and the float32 copies, the 8-bit
        codes' index tensors and the step's temporaries exist for one block at a time (a 7B embedding bucket
        dequantised whole was 4 GB of temporaries)."""
        keys = [k for k in self.keys(prefix) if torch.is_tensor(state.get(k))]
        flat = {k: state[k].view(-1, state[k].shape[-1]) for k in keys}
        g2 = g_hat.view(-1, g_hat.shape[-1])
        U = None
        for start in range(0, g2.shape[0], rows):
            sub = {k: v[start:start + rows] for k, v in flat.items()}
            block = self._step(sub, g2[start:start + rows], hp, step, prefix)
            if U is None:
                U = block.new_empty(g2.shape)
            U[start:start + rows] = block
        return U.view(g_hat.shape)


# an inner step on more entries than this runs on row blocks (InnerRule._step_in_chunks): 32M float32 entries are
# 128 MiB per temporary, large enough that a block's launches cost nothing beside its memory traffic
CHUNK_ENTRIES = 1 << 25


def _row_chunks(rule: InnerRule, state: dict, g_hat: Tensor, prefix: str) -> int | None:
    """Rows per block for a chunked step of ``rule`` on ``g_hat``, or None (a step in one piece): small tensors,
    rules that are not ``rowwise`` (Muon), 1-D moments, and any state tensor that is not a contiguous (-1, last)
    view of itself (a chunk must write into the state, never into a copy)."""
    if not rule.rowwise or g_hat.dim() < 2 or g_hat.numel() <= CHUNK_ENTRIES or not g_hat.is_contiguous():
        return None
    for key in rule.keys(prefix):
        value = state.get(key)
        if torch.is_tensor(value) and (value.dim() < 2 or not value.is_contiguous()
                                       or value.shape[:-1] != g_hat.shape[:-1]):
            return None
    return max(1, CHUNK_ENTRIES // g_hat.shape[-1])


def _saved_dtype(state: dict, names: tuple[str, ...], prefix: str) -> str | None:
    """The state_dtype a state was saved with, read from its tensors (for the error message)."""
    for name in names:
        value = state.get(prefix + name)
        if torch.is_tensor(value):
            return {torch.float32: "float32", torch.bfloat16: "bf16", torch.int8: "int8", torch.uint8: "int8"}.get(
                value.dtype)
    return None


INNER: Registry[InnerRule] = Registry("inner optimizer")
INNER.add("adamw", InnerRule("adamw", ("exp_avg", "exp_avg_sq"), ds.adam_step, nonneg=frozenset({"exp_avg_sq"}),
                             rowwise=True))
INNER.add("lion", InnerRule("lion", ("exp_avg",), ds.lion_step, rowwise=True))
INNER.add("sgd", InnerRule("sgd", ("momentum_buffer",), ds.sgd_step, uses_betas=False, rowwise=True))
INNER.add("muon", InnerRule("muon", ("momentum_buffer",), ds.muon_step, uses_betas=False, matrices_only=True,
                            options=("nesterov", "ns_coefficients", "ns_steps", "adjust_lr_fn", "orthogonalize")))  # Lion-𝒦, 𝒦 = ‖·‖_*

# OSD's P-optimizer: the same rules; its weight decay λ^P is applied outside (THEORY.md §4.2).
PROJ_OPTIMIZERS: Registry[InnerRule] = Registry("projection optimizer")
PROJ_OPTIMIZERS.add("adam", INNER.get("adamw"))
PROJ_OPTIMIZERS.add("lion", INNER.get("lion"))
PROJ_OPTIMIZERS.add("sgd", INNER.get("sgd"))
PROJ_OPTIMIZERS.add("gd", InnerRule("gd", (), ds.gd_step, uses_betas=False, rowwise=True))   # stateless: OSD's state = GaLore's


@lru_cache(maxsize=None)
def resolve_inner(name: str, state_dtype: str = "float32") -> InnerRule:
    """The inner optimizer ``name`` (:data:`INNER`) bound to the storage ``state_dtype`` (cached; UserError if unknown)."""
    STATE_DTYPES.get(state_dtype)
    return replace(INNER.get(name), state_dtype=state_dtype)


@lru_cache(maxsize=None)
def resolve_proj_optimizer(name: str, state_dtype: str = "float32") -> InnerRule:
    """OSD's P-optimizer ``name`` (:data:`PROJ_OPTIMIZERS`) bound to the storage ``state_dtype`` (cached)."""
    STATE_DTYPES.get(state_dtype)
    return replace(PROJ_OPTIMIZERS.get(name), state_dtype=state_dtype)
