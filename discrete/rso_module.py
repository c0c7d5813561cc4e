"""RSO, module form: frozen nn.Linear weights plus a trainable r-dimensional coordinate B.

For a linear layer y = x Wᵀ + b (W: out×in) and a random P (in×r), the RSO subproblem
(arXiv:2502.07222; THEORY.md §6) optimises B (out×r) in

.. math::  y = x(W + BP^\\top)^\\top + b = xW^\\top + (xP)B^\\top + b,

so the backward pass needs only **xP** (N×r) — never x (N×in) — and no weight gradient:

.. math::  \\partial_B = g_y^\\top (xP),\\qquad \\partial_x = g_y W + (g_y B) P^\\top .

:class:`ProjectedLinearFunction` is that custom autograd function; :class:`RSOLinear` wraps an
``nn.Linear``; :func:`wrap_linears` swaps a model's linears in place; :class:`RSOController`
ends a subproblem — merge W ← W + BPᵀ, resample P, zero B and drop B's optimizer state — and adds
the proximal gradient B/η when asked. Train B with any optimizer (e.g. ``discrete.AdamW``); call
``controller.merge_and_resample(optimizer)`` every K steps.

Choices for what the paper leaves open (THEORY.md §6 [?]): P on the input side (that is what
shrinks activations), Haar by default (``dist="gaussian"``: N(0, 1/r)), drawn from a generator
seeded by (seed, layer index, subproblem count) so a resumed run draws the same P; the bias stays
a trainable full-rank parameter; B's optimizer state is reset at each resample.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from discrete.projection import basis_generator
from osd_theory.projections import make_rule


class ProjectedLinearFunction(torch.autograd.Function):
    """y = x Wᵀ + (x P) Bᵀ + b, saving only x P (N×r) for backward (W, P, B are not activations)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, P: Tensor, B: Tensor) -> Tensor:
        xP = x @ P                                                   # (..., r): the only saved activation
        y = F.linear(x, weight, bias) + xP @ B.mT                    # (..., out)
        ctx.save_for_backward(xP, weight, P, B)
        ctx.bias_needs_grad = bias is not None and bias.requires_grad
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        xP, weight, P, B = ctx.saved_tensors
        grad_x = grad_B = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_y @ weight + (grad_y @ B) @ P.mT           # g_y (W + B Pᵀ)
        if ctx.needs_input_grad[4]:
            grad_B = grad_y.reshape(-1, grad_y.shape[-1]).mT @ xP.reshape(-1, xP.shape[-1])   # (out, r)
        if ctx.bias_needs_grad:
            grad_bias = grad_y.reshape(-1, grad_y.shape[-1]).sum(0)
        return grad_x, None, grad_bias, None, grad_B


class RSOLinear(nn.Module):
    """A frozen ``nn.Linear`` plus the RSO coordinate B (out×r) in the random subspace P (in×r)."""

    def __init__(self, linear: nn.Linear, rank: int, *, dist: str = "haar", seed: int = 0, index: int = 0):
        super().__init__()
        if not 1 <= rank <= min(linear.in_features, linear.out_features):
            raise ValueError(f"Invalid rank: {rank}; expected 1 <= rank <= {min(linear.in_features, linear.out_features)}")
        self.in_features, self.out_features, self.rank = linear.in_features, linear.out_features, rank
        self.dist, self.seed, self.index = dist, seed, index
        # the same rule as the optimizer form: a Haar (or Gaussian) P on the input side, one per subproblem
        self._rule = make_rule("random_jump", rank=rank, side="left", distribution=dist).bind(
            (linear.in_features, linear.out_features))
        self.weight = nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        w = self.weight
        self.register_buffer("proj", torch.empty(self.in_features, rank, dtype=w.dtype, device=w.device))
        self.register_buffer("subproblem", torch.zeros((), dtype=torch.long))
        self.B = nn.Parameter(torch.zeros(self.out_features, rank, dtype=w.dtype, device=w.device))
        self.resample_()

    def forward(self, x: Tensor) -> Tensor:
        return ProjectedLinearFunction.apply(x, self.weight, self.bias, self.proj, self.B)

    @torch.no_grad()
    def merge_(self) -> None:
        """W ← W + B Pᵀ and B ← 0 (the function the layer computes is unchanged)."""
        self.weight.add_((self.B.float() @ self.proj.float().mT).to(self.weight.dtype))
        self.B.zero_()

    @torch.no_grad()
    def resample_(self) -> None:
        """Draw a fresh P for the next subproblem (call after :meth:`merge_`)."""
        gen = basis_generator(self.seed, self.index, int(self.subproblem))
        self.proj.copy_(self._rule.jump_basis(self.proj, None, gen).to(self.proj.dtype))
        self.subproblem += 1

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, dist={self.dist}"


def wrap_linears(model: nn.Module, rank: int, *, select: Callable[[str, nn.Linear], bool] = lambda name, mod: True,
                 dist: str = "haar", seed: int = 0) -> list[str]:
    """Replace the selected ``nn.Linear`` submodules by :class:`RSOLinear` in place; return their names."""
    targets = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.Linear) and select(name, mod)]
    for index, (name, mod) in enumerate(targets):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, RSOLinear(mod, min(rank, mod.in_features, mod.out_features), dist=dist, seed=seed,
                                         index=index))
    return [name for name, _ in targets]


class RSOController:
    """Ends RSO subproblems for every :class:`RSOLinear` of a model."""

    def __init__(self, model: nn.Module, prox: float = 0.0):
        self.layers = [m for m in model.modules() if isinstance(m, RSOLinear)]
        self.prox = prox          # 1/η of the proximal term ‖B‖²/(2η)

    def parameters(self) -> list[nn.Parameter]:
        """The trainable coordinates B (pass them to the optimizer, with the biases and other params)."""
        return [layer.B for layer in self.layers]

    @torch.no_grad()
    def add_prox_grad_(self) -> None:
        """∇_B += B/η (call after backward, before the optimizer step)."""
        if self.prox:
            for layer in self.layers:
                if layer.B.grad is not None:
                    layer.B.grad.add_(layer.B, alpha=self.prox)

    @torch.no_grad()
    def merge_and_resample(self, optimizer: torch.optim.Optimizer | None = None) -> dict:
        """W ← W + BPᵀ, new P, B ← 0, and a fresh optimizer state for B (a new subproblem)."""
        for layer in self.layers:
            layer.merge_()
            layer.resample_()
            if optimizer is not None:
                optimizer.state.pop(layer.B, None)
        return {"rso_resampled_layers": len(self.layers)}
