"""Param groups from a model: which matrices are projected, and with which group keys.

A subspace optimizer projects exactly the parameters of its groups that have a ``rank``; a model's
``parameters()`` passed as they are (HF Trainer's ``optimizer_cls_and_kwargs``, a one-line
``OnlineSubspaceDescent(model.parameters())``) therefore train full rank with no memory saving.
:func:`param_groups` builds the groups by GaLore's protocol (arXiv:2403.03507 §5.1), the rule of the
validation track: the 2-D weights of the attention and MLP modules are projected (a parameter whose
dotted name has a part in ``target_modules``, e.g. ``model.layers.0.self_attn.q_proj.weight``);
embeddings, norms, biases and the output head take the full-rank path.

Inside each path the groups keep HF Trainer's weight-decay split (``Trainer.get_decay_parameter_names``):
biases and norm weights get ``weight_decay=0.0``, everything else the given ``weight_decay`` (or the
optimizer's when none is given), as ``Trainer(optimizer_cls_and_kwargs=...)`` would have done had it
built the groups itself.

Example:
    >>> import torch
    >>> from discrete import GaLore
    >>> from discrete.groups import param_groups
    >>> block = torch.nn.ModuleDict({"self_attn": torch.nn.Linear(8, 8), "norm": torch.nn.LayerNorm(8),
    ...                              "embed": torch.nn.Embedding(4, 8)})
    >>> groups = param_groups(block, rank=2, update_proj_gap=200, scale=0.25, weight_decay=0.1)
    >>> [(g["param_names"], g["weight_decay"]) for g in groups]
    [(['embed.weight'], 0.1), (['self_attn.bias', 'norm.weight', 'norm.bias'], 0.0), (['self_attn.weight'], 0.1)]
    >>> opt = GaLore(groups, lr=1e-2)
"""
from __future__ import annotations

import re
from typing import Any

import torch

# module-name parts whose 2-D weights are projected (GaLore §5.1; HF LLaMA, Mistral, Qwen, GPT-NeoX
# name their blocks' attention and MLP so)
TARGET_MODULES = ("self_attn", "mlp")

# HF Trainer.get_decay_parameter_names (transformers 4.4x-5.x): no weight decay for the parameters of
# nn.LayerNorm modules and for those whose lower-cased dotted name matches one of these patterns
NO_DECAY_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")
NO_DECAY_MODULES = (torch.nn.LayerNorm,)


def decay_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names of ``model``'s parameters that weight decay applies to, by HF Trainer's rule (not biases or norms)."""
    patterns = [re.compile(p) for p in NO_DECAY_PATTERNS]
    in_norm = {f"{prefix}.{n}" if prefix else n for prefix, m in model.named_modules()
               if isinstance(m, NO_DECAY_MODULES) for n, _ in m.named_parameters()}
    return {name for name, _ in model.named_parameters()
            if name not in in_norm and not any(p.search(name.lower()) for p in patterns)}


def is_projected(name: str, p: torch.Tensor, target_modules: tuple[str, ...] = TARGET_MODULES) -> bool:
    """A 2-D parameter inside a module whose dotted name has a part in ``target_modules``."""
    return p.ndim == 2 and any(part in target_modules for part in name.split(".")[:-1])


def param_groups(model: torch.nn.Module, rank: int, *, target_modules: tuple[str, ...] = TARGET_MODULES,
                 weight_decay: float | None = None, **keys: Any) -> list[dict]:
    """The param groups of ``model``'s trainable parameters, for any optimizer here, in this order:
    full-rank decayed, full-rank not decayed, projected decayed, projected not decayed (empty ones left out).

    ``rank`` and ``keys`` (``update_proj_gap``, ``scale``, ``proj_type``, ``clip_rank``, ``alpha``, ...,
    validated by the optimizer) go to the projected groups. The not-decayed groups (biases and norms,
    :func:`decay_parameter_names`) set ``weight_decay=0.0``; the others set ``weight_decay`` when it is
    given, else take the optimizer's. Each group lists its ``param_names``, so ``opt.param_groups`` says
    what was projected and decayed. Raises ValueError when no parameter is projected.
    """
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    decayed = decay_parameter_names(model)
    buckets: dict[tuple[bool, bool], list[tuple[str, torch.Tensor]]] = {
        (False, True): [], (False, False): [], (True, True): [], (True, False): []}   # (projected, decayed)
    for name, p in model.named_parameters():
        if p.requires_grad:
            buckets[(is_projected(name, p, tuple(target_modules)), name in decayed)].append((name, p))
    if not buckets[(True, True)] and not buckets[(True, False)]:
        modules = sorted({n for n, m in model.named_modules() if n and not any(True for _ in m.children())})
        raise ValueError(f"param_groups: no 2-D parameter of {type(model).__name__} is in a module named by "
                         f"target_modules={tuple(target_modules)}; its leaf modules are {modules[:8]}"
                         f"{' ...' if len(modules) > 8 else ''}")
    groups = []
    for (projected, decay), named in buckets.items():
        if named:
            wd = {} if decay and weight_decay is None else {"weight_decay": weight_decay if decay else 0.0}
            groups.append({"params": [p for _, p in named], "param_names": [n for n, _ in named],
                           **({"rank": rank, **keys} if projected else {}), **wd})
    return groups
