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

Adafactor is not offered: with momentum no Adam-type H exists for it (THEORY.md §3.6).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

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


@dataclass(frozen=True)
class InnerRule:
    name: str
    state_names: tuple[str, ...]
    step_fn: Callable[..., Tensor]
    uses_betas: bool = True
    matrices_only: bool = False      # its step needs whole 2-D matrices (Muon's orthogonalisation)

    def init_state(self, like: Tensor, prefix: str = "") -> dict[str, Tensor]:
        """Zero float32 state of ``like``'s shape (Adam's v₀ = 0, as torch)."""
        return {prefix + k: torch.zeros(like.shape, dtype=torch.float32, device=like.device) for k in self.state_names}

    def tensors(self, state: dict, prefix: str = "") -> list[Tensor]:
        return [state[prefix + k] for k in self.state_names]

    def step(self, state: dict, g_hat: Tensor, hp: Hyper, step: int, prefix: str = "") -> Tensor:
        """Advance the state in place; return U (W ← W + lr·scale·back_project(P, U))."""
        return self.step_fn(self.tensors(state, prefix), g_hat, lr=hp.lr, beta1=hp.beta1, beta2=hp.beta2,
                            eps=hp.eps, momentum=hp.momentum, step=step, bias_correction=hp.bias_correction,
                            torch_eps=hp.torch_eps)


INNER: Registry[InnerRule] = Registry("inner optimizer")
INNER.add("adamw", InnerRule("adamw", ("exp_avg", "exp_avg_sq"), ds.adam_step))
INNER.add("lion", InnerRule("lion", ("exp_avg",), ds.lion_step))
INNER.add("sgd", InnerRule("sgd", ("momentum_buffer",), ds.sgd_step, uses_betas=False))
INNER.add("muon", InnerRule("muon", ("momentum_buffer",), ds.muon_step, uses_betas=False, matrices_only=True))  # Lion-𝒦, 𝒦 = ‖·‖_*

# OSD's P-optimizer: the same rules; its weight decay λ^P is applied outside (THEORY.md §4.2).
PROJ_OPTIMIZERS: Registry[InnerRule] = Registry("projection optimizer")
PROJ_OPTIMIZERS.add("adam", INNER.get("adamw"))
PROJ_OPTIMIZERS.add("lion", INNER.get("lion"))
PROJ_OPTIMIZERS.add("sgd", INNER.get("sgd"))
PROJ_OPTIMIZERS.add("gd", InnerRule("gd", (), ds.gd_step, uses_betas=False))   # stateless: OSD's state = GaLore's
