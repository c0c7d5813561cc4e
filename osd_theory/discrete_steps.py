"""Discrete optimizer steps as Euler steps of the HD systems, with the departures named.

One core, two uses: the discrete optimizers in :mod:`discrete` call these pure
functions, and these call the HD systems of :mod:`osd_theory.hd`. Without the departures,
one discrete step *is* one semi-implicit Euler step of size h of the field (state first,
then W with the new state; THEORY.md §3):

.. math::
    S \\leftarrow S + hρ(τ(ĝ) - S),\\qquad W \\leftarrow W + h\\,\\mathcal P\\big(D(S, ĝ)\\big).

For Adam, h = lr and ``Adam.from_discrete(lr, β₁, β₂, ε)`` has a = (1−β₁)/lr, b = (1−β₂)/lr,
so ``S ← S + hρ(τ − S)`` is exactly the EMA ``m ← β₁m + (1−β₁)ĝ``, ``v ← β₂v + (1−β₂)ĝ²``.

Where the published discrete methods depart from that Euler step, one named function says so:

* :func:`adam_bias_correction` — Adam's bias correction (non-autonomous, THEORY.md §3.2);
  torch and HF place ε differently, both are offered.
* :func:`galore_scale` — GaLore's α ("scale") multiplies the back-projected update (§5).
* :func:`decoupled_weight_decay_` — AdamW's W ← (1 − lr·λ)W, taken before the update as torch.
* :func:`sgd_time_step` — torch's SGD buffer is undamped (buf = M/(1−μ)), so torch's lr is the
  Euler step h = lr/(1−μ) of the heavy-ball field.
* Lion uses the *old* momentum in its direction (``direction_uses_new_state = False`` on the
  Lion-𝒦 system) and 𝒦 = ‖·‖₁ (∇𝒦 = sign, the δ → 0 limit of the smoothed systems).
* Muon (:func:`muon_step`) is Lion-𝒦 with 𝒦 = ‖·‖_* (∇𝒦 = the polar factor UVᵀ; ``muon`` of
  :mod:`osd_theory.hd.spectral`): torch's buffer buf = −M relaxes as heavy ball's momentum, the
  look-ahead μ²·buf_old + (1−μ²)ĝ is formed as torch does (ĝ.lerp(buf_new, μ)), the polar factor is
  approximated by torch's Newton–Schulz (``orthogonalize="svd"``: exact) and the step carries
  torch's shape factor s (:func:`osd_theory.hd.spectral.lr_factor`).

Every ``*_step`` function mutates the state tensors in place (they are the optimizer state)
and returns the subspace velocity ``U`` such that the caller moves
``W ← W + lr · scale · back_project(P, U)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch
from torch import Tensor

from osd_theory.hd.adam import Adam
from osd_theory.hd.base import HDSystem
from osd_theory.hd.gd import GradientFlow
from osd_theory.hd.heavy_ball import HeavyBall
from osd_theory.hd.lion_k import LionK
from osd_theory.hd.spectral import NS_COEFFICIENTS, NS_EPS, NS_STEPS, ORTHOGONALIZERS, MuonPolar, lr_factor


# -- the time step -------------------------------------------------------------------------
def time_step(lr: float) -> float:
    """h = lr, the ODE time advanced by one iteration (THEORY.md notation).

    With lr = 0 the ODE time does not advance, but torch's optimizers still update their
    moments (torchtitan materialises state with a zero-lr step). The state update only
    depends on h·ρ = 1 − β, so any h > 0 gives the same moments: we take h = 1 then.
    """
    return lr if lr > 0 else 1.0


# -- the HD systems behind the discrete steps (cached: schedulers revisit the same lr) -----
@lru_cache(maxsize=1024)
def adam_system(h: float, beta1: float, beta2: float, eps: float) -> Adam:
    """The Adam field whose Euler step of size h is (uncorrected) Adam: a = (1−β₁)/h, b = (1−β₂)/h, e = ε."""
    return Adam.from_discrete(h, beta1, beta2, eps)


@lru_cache(maxsize=1024)
def heavy_ball_system(h: float, momentum: float) -> HeavyBall:
    """Heavy ball with a = (1−μ)/h: M ← μM + (1−μ)ĝ."""
    return HeavyBall.from_discrete(h, momentum)


class _SignK:
    """𝒦 = ‖·‖₁ with ∇𝒦 = sign: discrete Lion (the δ → 0 limit of the convex smoothings)."""

    delta = 0.0

    @staticmethod
    def value(z: Tensor) -> Tensor:
        return z.abs().sum()

    @staticmethod
    def grad(z: Tensor) -> Tensor:
        return torch.sign(z)


@dataclass(frozen=True)
class LionSign(LionK):
    """Lion-𝒦 (OSD form, no weight decay) with 𝒦 = ‖·‖₁: ∇𝒦 = sign, as the discrete Lion."""

    name = "lion_sign"

    @property
    def K(self):
        return _SignK


@lru_cache(maxsize=1024)
def lion_system(h: float, beta1: float, beta2: float) -> LionSign:
    """Lion-𝒦 with a = (1−β₂)/h, b = 1−β₁, 𝒦 = ‖·‖₁ (m tracks −ĝ; direction from the old m)."""
    return LionSign(a=(1 - beta2) / h, b=1 - beta1)


@lru_cache(maxsize=1024)
def muon_system(h: float, momentum: float, nesterov: bool = True) -> MuonPolar:
    """Lion-𝒦 with 𝒦 = ‖·‖_*: a = (1−μ)/h, b = 1 − μ² (Nesterov) or 1 − μ; its M is −(torch's buffer).

    Needs 0 < μ < 1 (b ∈ (0, 1)); :func:`muon_step` itself also runs at μ = 0 (no momentum).
    """
    return MuonPolar.from_discrete(h, momentum, nesterov)


# -- the Euler step itself -----------------------------------------------------------------
def hd_euler_step(system: HDSystem, S: Sequence[Tensor], g_hat: Tensor, h: float) -> Tensor:
    """One semi-implicit Euler step of the state; returns the subspace velocity D.

    ``S ← S + hρ(τ(ĝ) − S)`` (in place, :meth:`HDSystem.euler_state_`), and D = D(S_new, ĝ)
    — or D(S_old, ĝ) when the method's published form uses the old state (Lion).
    The caller moves W by h·back_project(P, D).
    """
    if system.direction_uses_new_state:
        system.euler_state_(S, g_hat, h)
        return system.direction(0.0, tuple(S), g_hat)
    D = system.direction(0.0, tuple(S), g_hat)
    system.euler_state_(S, g_hat, h)
    return D


# -- the named departures ------------------------------------------------------------------
def adam_bias_correction(step: int, beta1: float, beta2: float, eps: float, *, torch_eps: bool = True) -> tuple[float, float]:
    """Adam's bias correction as (step factor, ε to use in the HD direction).

    With c₁ = 1 − β₁ᵗ, c₂ = 1 − β₂ᵗ (t ≥ 1), bias-corrected Adam moves by

    * torch:  ``−(lr/c₁) m / (√v/√c₂ + ε)  = (√c₂/c₁) · lr · (−m/(√v + ε√c₂))``
    * HF / galore-torch: ``−(lr √c₂/c₁) m / (√v + ε)``

    i.e. the HD Adam direction −m/(√v + e) with e = ε√c₂ (torch) or e = ε (HF), times
    √c₂/c₁. This makes the ODE non-autonomous (THEORY.md §3.2: Barakat–Bianchi).
    """
    c1 = 1.0 - beta1 ** step
    c2 = 1.0 - beta2 ** step
    root_c2 = math.sqrt(c2)
    return root_c2 / c1, (eps * root_c2 if torch_eps else eps)


def galore_scale(update: Tensor, scale: float) -> Tensor:
    """GaLore's α: the back-projected update is multiplied by ``scale`` (arXiv:2403.03507 §5)."""
    return update if scale == 1.0 else update * scale


def decoupled_weight_decay_(W: Tensor | list[Tensor], lr: float, weight_decay: float) -> None:
    """AdamW's decoupled decay W ← (1 − lr·λ)W, before the update (as torch.optim.AdamW).

    W is a tensor or a list of tensors (one foreach launch). No HD Lyapunov function is known with
    it (THEORY.md §3.5); the box-KKT residual applies.
    """
    if weight_decay == 0.0:
        return
    if isinstance(W, (list, tuple)):
        torch._foreach_mul_(W, 1.0 - lr * weight_decay)
    else:
        W.mul_(1.0 - lr * weight_decay)


def sgd_time_step(lr: float, momentum: float) -> float:
    """torch's SGD lr as an Euler step of heavy ball: h = lr/(1−μ).

    torch keeps the undamped buffer buf = μ·buf + g (buf₁ = g₁); the HD momentum
    M = (1−μ)·buf obeys M ← μM + (1−μ)g from M₀ = 0, and lr·buf = (lr/(1−μ))·M.
    """
    return lr / (1.0 - momentum)


# -- the discrete steps (state in place; return U with W ← W + lr·scale·P U) ---------------
def adam_step(S: Sequence[Tensor], g_hat: Tensor, *, lr: float, beta1: float, beta2: float, eps: float,
              step: int, bias_correction: bool = True, torch_eps: bool = True, **_) -> Tensor:
    """Adam in the subspace: the Euler step of the Adam field, then (optionally) bias correction.

    m ← β₁m + (1−β₁)ĝ,  v ← β₂v + (1−β₂)ĝ²   (Euler, h = lr)
    U = (√c₂/c₁) · (−m/(√v + e))              (bias correction; U = −m/(√v+ε) without it)
    """
    h = time_step(lr)
    adam_system(h, beta1, beta2, eps).euler_state_(S, g_hat, h)
    factor, e = adam_bias_correction(step, beta1, beta2, eps, torch_eps=torch_eps) if bias_correction else (1.0, eps)
    D = adam_system(h, beta1, beta2, e).direction(0.0, tuple(S), g_hat)   # −m/(√v + e)
    return D if factor == 1.0 else D.mul_(factor)


def lion_step(S: Sequence[Tensor], g_hat: Tensor, *, lr: float, beta1: float, beta2: float, **_) -> Tensor:
    """Lion in the subspace: U = sign(β₁m − (1−β₁)ĝ) with the old m (m tracks −ĝ), then m ← β₂m − (1−β₂)ĝ."""
    h = time_step(lr)
    return hd_euler_step(lion_system(h, beta1, beta2), S, g_hat, h)


def sgd_step(S: Sequence[Tensor], g_hat: Tensor, *, lr: float, momentum: float, **_) -> Tensor:
    """SGD with momentum as torch: buf ← μ·buf + ĝ, U = −buf (so lr·U = −lr·buf).

    The state is torch's undamped ``momentum_buffer``; the heavy-ball momentum of the HD system is
    M = (1−μ)·buf, stepped M ← μM + (1−μ)ĝ (Euler, h = lr/(1−μ)). M is formed from buf with the
    *current* μ, so a momentum schedule (OneCycleLR, CyclicLR) acts as on torch's buffer; a stored M
    would carry the (1−μ) of the step that wrote it (0.24 weight drift against torch.optim.SGD under
    OneCycleLR in 60 steps).
    """
    (buf,) = S
    h = time_step(sgd_time_step(lr, momentum))
    damping = 1.0 - momentum
    M = buf.mul_(damping)                                               # M = (1−μ)·buf, in place
    hd_euler_step(heavy_ball_system(h, momentum), [M], g_hat, h)        # M ← μM + (1−μ)ĝ
    buf.div_(damping)                                                   # buf = M/(1−μ) = μ·buf + ĝ
    return torch.neg(buf)


def gd_step(S: Sequence[Tensor], g_hat: Tensor, *, lr: float, **_) -> Tensor:
    """Plain gradient descent (no state): the Euler step of the gradient flow, U = −ĝ."""
    return hd_euler_step(GradientFlow(), S, g_hat, time_step(lr))


def muon_step(S: Sequence[Tensor], g_hat: Tensor, *, lr: float, momentum: float, nesterov: bool = True,
              orthogonalize: str = "newton_schulz", ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
              ns_steps: int = NS_STEPS, eps: float = NS_EPS, adjust_lr_fn: str | None = None, **_) -> Tensor:
    """Muon on ĝ as torch.optim.Muon: buf ← μ·buf + (1−μ)ĝ, U = −s·orth(ĝ + μ(buf − ĝ)) (Nesterov) or −s·orth(buf).

    The buffer's update is heavy ball's relaxation (a = (1−μ)/h, Euler step h = lr), torch's lerp;
    the HD momentum of Lion-𝒦 is M = −buf (m tracks −ĝ), so U = s·∇𝒦((1−b)M_old − bĝ) with
    𝒦 = ‖·‖_* and b = 1 − μ² (:func:`muon_system`) when ``orthogonalize="svd"``; torch's Newton–Schulz
    (default) approximates that polar factor (osd_theory.hd.spectral). s is the shape factor of
    ``adjust_lr_fn`` for ĝ's shape (in a subspace: the (r, n) or (m, r) of ĝ, not W's). ``eps``
    guards Newton–Schulz's normalisation. ĝ may be a stack (L, r, n) of same-shaped matrices.
    """
    (buf,) = S
    h = time_step(lr)
    heavy_ball_system(h, momentum).euler_state_([buf], g_hat, h)          # buf ← lerp(buf, ĝ, 1 − μ)
    update = g_hat.lerp(buf, momentum) if nesterov else buf                # μ²·buf_old + (1−μ²)ĝ
    O = ORTHOGONALIZERS.get(orthogonalize)(update, coefficients=ns_coefficients, steps=ns_steps, eps=eps)
    return O.to(g_hat.dtype).mul_(-lr_factor(adjust_lr_fn, tuple(g_hat.shape[-2:])))   # (L, r, n) stacks too
