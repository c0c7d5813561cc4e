"""galore-torch's names over our GaLore preset, so its README usage runs with only the import changed.

galore-torch 1.0 (``pip install galore-torch``, github.com/jiaweizzhao/GaLore) documents::

    from galore_torch import GaLoreAdamW, GaLoreAdamW8bit, GaLoreAdafactor
    param_groups = [{'params': non_galore_params},
                    {'params': galore_params, 'rank': 128, 'update_proj_gap': 200, 'scale': 0.25, 'proj_type': 'std'}]
    optimizer = GaLoreAdamW(param_groups, lr=0.01)

Here the first line becomes ``from discrete.galore_torch import GaLoreAdamW, GaLoreAdamW8bit, GaLoreAdafactor``
(also importable from ``discrete``). What the names add to :class:`discrete.GaLore`:

* galore-torch's constructor defaults (its AdamW: ``lr=1e-3``, ``eps=1e-6``, ``weight_decay=0.0``,
  ``correct_bias=True``), where ``GaLore`` has torch's ``eps=1e-8``;
* a ``rank`` above a matrix's min(m, n) is clipped to min(m, n) for that matrix, as galore-torch does
  silently (its SVD has only min(m, n) vectors to slice; e.g. the 64-row key/value projections of a
  grouped-query model at rank 128). Here the group default is ``clip_rank=True`` and the first clip
  warns once per optimizer. :class:`discrete.GaLore` keeps its explicit choice (an error unless the
  group sets ``clip_rank=True``).

Trajectory (``tests/discrete/test_galore_torch_dropin.py`` measures it on a small LLaMA): with one SVD
the two agree to float32 round-off amplified by Adam's normalisation; once P is refreshed every few
steps they drift apart as much as galore-torch drifts from itself when its weights move by 1e-7, since
the top-r SVD basis of a nearly degenerate spectrum is not a continuous function of G.
Weight decay follows torch's order (before the update; galore-torch decays after), so trajectories
match for ``weight_decay=0`` only.

:data:`DROP_INS` is the one table of names: each maps to constructor keywords over ``GaLore``; a name
whose keywords this version does not accept raises a NotImplementedError that says why (Adafactor: no
Hamiltonian-descent form). ``GaLoreAdamW8bit`` is GaLore with blockwise 8-bit Adam states
(``state_dtype="int8"``, :mod:`discrete.lowbit`) and bitsandbytes' AdamW8bit defaults; P stays float32 unless
the group asks for ``proj_dtype="bf16"`` (galore-torch keeps P in the weights' dtype).
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

from discrete.galore import GaLore


@dataclass(frozen=True)
class DropIn:
    """One galore-torch name: its constructor defaults and our keywords (None: never offered, ``why``)."""

    defaults: dict[str, Any]
    keywords: dict[str, Any] | None = field(default_factory=dict)
    why: str = ""


_ADAMW = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0}   # galore_torch.GaLoreAdamW
_ADAMW8BIT = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}   # bitsandbytes' AdamW8bit

DROP_INS: dict[str, DropIn] = {
    "GaLoreAdamW": DropIn(_ADAMW),
    # 8-bit blockwise Adam states (discrete.lowbit); the message stands for a build whose GaLore lacks the key
    "GaLoreAdamW8bit": DropIn(_ADAMW8BIT, {"state_dtype": "int8"},
                              "8-bit Adam states need GaLore's group key state_dtype='int8', which this build "
                              "does not accept; use GaLoreAdamW (float32 states)"),
    "GaLoreAdafactor": DropIn({}, None,
                              "Adafactor is not offered: its factored second moment with momentum has no "
                              "Hamiltonian-descent form (no Adam-type H, see discrete/inner.py), which every "
                              "inner optimizer here has; use GaLoreAdamW, or GaLore(..., inner='lion' or 'sgd')"),
}


def accepted_keywords(cls: type = GaLore) -> set[str]:
    """Constructor keywords ``cls`` takes: its signature's and its projection group keys."""
    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD} | set(cls.proj_keys)


def available(name: str) -> bool:
    entry = DROP_INS[name]
    return entry.keywords is not None and set(entry.keywords) <= accepted_keywords()


class GaLoreAdamW(GaLore):
    """``galore_torch.GaLoreAdamW``: :class:`discrete.GaLore` with galore-torch's defaults and rank clipping."""

    galore_torch_name: ClassVar[str] = "GaLoreAdamW"
    preset: ClassVar[dict] = {**GaLore.preset, "clip_rank": True}

    def __init__(self, params, lr: float | None = None, betas: tuple[float, float] | None = None,
                 eps: float | None = None, weight_decay: float | None = None, correct_bias: bool | None = None,
                 no_deprecation_warning: bool = False, **kwargs):
        entry = DROP_INS[self.galore_torch_name]
        if not available(self.galore_torch_name):
            raise NotImplementedError(f"{self.galore_torch_name}: {entry.why}")
        given = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        hyper = {k: entry.defaults[k] if v is None else v for k, v in given.items()}
        super().__init__(params, **hyper, correct_bias=correct_bias, no_deprecation_warning=no_deprecation_warning,
                         **{**entry.keywords, **kwargs})

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if "rank" not in group or not group["clip_rank"] or getattr(self, "_noted_clip", False):
            return
        clipped = sorted({tuple(p.shape) for p in group["params"] if p.ndim == 2 and min(p.shape) < group["rank"]})
        if clipped:
            self._noted_clip = True
            warnings.warn(f"{type(self).__name__}: rank {group['rank']} is above min(m, n) of the matrices of shape "
                          f"{', '.join(map(str, clipped))}; clipped to min(m, n) for them, as galore-torch does "
                          "(noted once; discrete.GaLore makes this an error unless clip_rank=True)",
                          UserWarning, stacklevel=3)


class GaLoreAdamW8bit(GaLoreAdamW):
    """``galore_torch.GaLoreAdamW8bit``: GaLoreAdamW with blockwise 8-bit Adam states (``state_dtype="int8"``)."""

    galore_torch_name: ClassVar[str] = "GaLoreAdamW8bit"


class GaLoreAdafactor(GaLoreAdamW):
    """``galore_torch.GaLoreAdafactor``: not offered (constructing it raises NotImplementedError saying why)."""

    galore_torch_name: ClassVar[str] = "GaLoreAdafactor"


__all__ = ["DROP_INS", "GaLoreAdamW", "GaLoreAdamW8bit", "GaLoreAdafactor"]
