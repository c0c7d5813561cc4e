"""Param groups from a model: which matrices are projected, and with which group keys.

A subspace optimizer projects exactly the parameters of its groups that have a ``rank``; a model's
``parameters()`` passed as they are (HF Trainer's ``optimizer_cls_and_kwargs``, a one-line
``OnlineSubspaceDescent(model.parameters())``) therefore train full rank with no memory saving.
:func:`param_groups` builds the groups by GaLore's protocol (arXiv:2403.03507 §5.1), the rule of the
validation track: the 2-D weights of the attention and MLP modules are projected (a parameter whose
dotted name has a part in ``target_modules``, e.g. ``model.layers.0.self_attn.q_proj.weight``);
embeddings, norms, biases and the output head take the full-rank path.

Example:
    >>> import torch
    >>> from discrete import GaLore
    >>> from discrete.groups import param_groups
    >>> block = torch.nn.ModuleDict({"self_attn": torch.nn.Linear(8, 8), "norm": torch.nn.LayerNorm(8)})
    >>> groups = param_groups(block, rank=2, update_proj_gap=200, scale=0.25)
    >>> [g["param_names"] for g in groups]
    [['self_attn.bias', 'norm.weight', 'norm.bias'], ['self_attn.weight']]
    >>> opt = GaLore(groups, lr=1e-2)
"""
from __future__ import annotations

from typing import Any

import torch

# module-name parts whose 2-D weights are projected (GaLore §5.1; HF LLaMA, Mistral, Qwen, GPT-NeoX
# name their blocks' attention and MLP so)
TARGET_MODULES = ("self_attn", "mlp")


def is_projected(name: str, p: torch.Tensor, target_modules: tuple[str, ...] = TARGET_MODULES) -> bool:
    """A 2-D parameter inside a module whose dotted name has a part in ``target_modules``."""
    return p.ndim == 2 and any(part in target_modules for part in name.split(".")[:-1])


def param_groups(model: torch.nn.Module, rank: int, *, target_modules: tuple[str, ...] = TARGET_MODULES,
                 **keys: Any) -> list[dict]:
    """``[full-rank group, projected group]`` of ``model``'s trainable parameters, for any optimizer here.

    ``rank`` and ``keys`` (``update_proj_gap``, ``scale``, ``proj_type``, ``clip_rank``, ``alpha``, ...,
    validated by the optimizer) go to the projected group; each group lists its ``param_names``, so
    ``opt.param_groups`` says what was projected. Raises ValueError when no parameter matches.
    """
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    full: list[tuple[str, torch.Tensor]] = []
    projected: list[tuple[str, torch.Tensor]] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (projected if is_projected(name, p, tuple(target_modules)) else full).append((name, p))
    if not projected:
        modules = sorted({n for n, m in model.named_modules() if n and not any(True for _ in m.children())})
        raise ValueError(f"param_groups: no 2-D parameter of {type(model).__name__} is in a module named by "
                         f"target_modules={tuple(target_modules)}; its leaf modules are {modules[:8]}"
                         f"{' ...' if len(modules) > 8 else ''}")
    return [{"params": [p for _, p in full], "param_names": [n for n, _ in full]},
            {"params": [p for _, p in projected], "param_names": [n for n, _ in projected], "rank": rank, **keys}]
