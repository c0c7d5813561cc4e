"""The batched ("foreach") projected Adam step: OSD and GaLore without Python per-op overhead.

The per-matrix path (:mod:`discrete.base`) calls the HD systems for every matrix and is the
reference. This module computes the *same equations* for a bucket of same-shape matrices at
once (tests/discrete/test_fused.py checks it against the reference to float32 round-off):

* the subspace state (``exp_avg``, ``exp_avg_sq``, ``proj``, ``proj_exp_avg``,
  ``proj_exp_avg_sq``) of a bucket lives in one stacked (L, ·, ·) buffer; each parameter's
  state entry is a view of its slice, so the state contract is unchanged (a loaded or
  replaced entry is detected and the bucket re-stacked);
* only the three products that touch an (m, n) matrix are per matrix: Ĝᵢ = PᵢᵀGᵢ,
  Bᵢ = G̃ᵢÃᵢᵀ (online PCA, second pass over G) and Wᵢ += lr·scale·PᵢDᵢ (``addmm_``, in place);
* everything else — Adam on Ĝ, the r×r algebra of the online-PCA gradient, Adam on P — is a
  handful of batched kernels per bucket, with no host synchronisation (a zero gradient gives
  1/‖G‖ := 0, so only the orthogonality term acts, as in :func:`osd_theory.kernels.online_pca_grad`).

Equations (bucket of L matrices, LEFT side; RIGHT applies them to Gᵀ), with h = lr:

    m ← lerp(m, Ĝ, hρ₁),  v ← lerp(v, Ĝ², hρ₂)                      Euler step of the Adam field
    D = −(√c₂/c₁)·m/(√v + e)                                       bias correction (e per torch/HF)
    W ← (1 − lrλ)W + lr·scale·P D                                  per matrix, addmm_
    Ã = Ĝ/‖G‖,  K = PᵀP,  B = (G Ãᵀ)/‖G‖
    ∇_P = P(2ÃÃᵀ + 4λ(K − I)) + B·2(K − 2I)                        two-pass closed form (THEORY §4.1)
    P ← (1 − αlr·λ^P)P + αlr·Adam(∇_P)
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from osd_theory import discrete_steps as ds
from osd_theory.kernels import LEFT
from osd_theory.registry import Registry


# -- matmul precision for the three big products (a registry of context managers) ----------------
@contextlib.contextmanager
def _highest() -> Iterator[None]:
    yield


@contextlib.contextmanager
def _tf32() -> Iterator[None]:
    """TF32 tensor cores for float32 matmuls on CUDA (10-bit mantissa products, fp32 accumulate)."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


MATMUL_PRECISION: Registry[Callable[[], contextlib.AbstractContextManager]] = Registry("matmul_precision")
MATMUL_PRECISION.add("highest", _highest)
MATMUL_PRECISION.add("tf32", _tf32)


# -- stacked state -----------------------------------------------------------------------------------
def stacked(states: list[dict], key: str, cache: dict) -> Tensor:
    """The (L, ·, ·) buffer whose slices are ``states[i][key]``; (re)built when an entry was replaced."""
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


@dataclass(frozen=True)
class PCAHyper:
    """OSD's P step: ε^P = alpha·lr, λ (pca_lambda), λ^P, and the Adam hyperparameters of P."""

    alpha: float
    pca_lambda: float
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    optimizer: str = "adam"    # "adam" or "gd" (stateless)


def _adam_(m: Tensor, v: Tensor, g: Tensor, *, lr: float, beta1: float, beta2: float, eps: float, step: int,
           bias_correction: bool, torch_eps: bool) -> Tensor:
    """Batched :func:`osd_theory.discrete_steps.adam_step` (same Euler weights, same op order)."""
    h = ds.time_step(lr)
    field = ds.adam_system(h, beta1, beta2, eps)
    m.lerp_(g, h * field.a)                                           # m ← m + hρ₁(ĝ − m)
    v.lerp_(g * g, h * field.b)                                       # v ← v + hρ₂(ĝ² − v)
    factor, e = ds.adam_bias_correction(step, beta1, beta2, eps, torch_eps=torch_eps) if bias_correction else (1.0, eps)
    D = -m / (v.sqrt() + e)                                           # Adam.direction
    return D if factor == 1.0 else D.mul_(factor)


def subspace_adam_bucket(params: list[Tensor], grads: list[Tensor], states: list[dict], cache: dict, *,
                         norms: list[Tensor] | None = None,
                         side: int, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                         scale: float, step: int, bias_correction: bool, torch_eps: bool,
                         pca: PCAHyper | None, precision: str = "highest") -> None:
    """One step of projected Adam (and, with ``pca``, OSD's P step) for same-shape matrices."""
    for s in states:
        s["step"] += 1
    P = stacked(states, "proj", cache)                                # (L, d, r)
    m = stacked(states, "exp_avg", cache)
    v = stacked(states, "exp_avg_sq", cache)
    G_hat = torch.empty_like(m)                                       # (L, r, n) LEFT, (L, m, r) RIGHT
    with MATMUL_PRECISION.get(precision)():
        for i, G in enumerate(grads):                                 # Ĝᵢ = PᵢᵀGᵢ or GᵢPᵢ
            torch.mm(P[i].mT, G, out=G_hat[i]) if side == LEFT else torch.mm(G, P[i], out=G_hat[i])
        D = _adam_(m, v, G_hat, lr=lr, beta1=beta1, beta2=beta2, eps=eps, step=step,
                   bias_correction=bias_correction, torch_eps=torch_eps)
        if weight_decay != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * weight_decay)
        alpha = lr * scale
        for i, W in enumerate(params):                                # W ← W + lr·scale·P D
            if W.dtype != torch.float32:                              # low-precision W: update in float32
                W.add_((P[i] @ D[i] if side == LEFT else D[i] @ P[i].mT).to(W.dtype), alpha=alpha)
            elif side == LEFT:
                W.addmm_(P[i], D[i], alpha=alpha)
            else:
                W.addmm_(D[i], P[i].mT, alpha=alpha)
        if pca is not None:
            _osd_p_step(P, G_hat, grads, states, cache, side=side, lr=lr, step=step, pca=pca, norms=norms)


def online_pca_grad_batched(P: Tensor, G_hat: Tensor, grads: list[Tensor], side: int, pca_lambda: float,
                            norms: list[Tensor] | None = None) -> Tensor:
    """∇_P 𝓛_G(P) for a bucket (L, d, r), two-pass closed form reusing Ĝ (batched kernels.online_pca_grad)."""
    norms = torch.stack(norms if norms is not None else torch._foreach_norm(grads)).float()   # (L,) ‖Gᵢ‖
    inv = torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms))[:, None, None]
    AT = (G_hat.mT if side == LEFT else G_hat) * inv                  # Ãᵀ (L, k, r), k = n (LEFT) or m (RIGHT)
    B = torch.empty_like(P)                                           # (L, d, r)
    for i, G in enumerate(grads):                                     # Bᵢ = G̃ᵢ Ãᵢᵀ (second pass over G)
        torch.mm(G if side == LEFT else G.mT, AT[i], out=B[i])
    B.mul_(inv)
    eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    K = torch.bmm(P.mT, P)                                            # PᵀP (L, r, r)
    X1 = torch.bmm(AT.mT, AT).mul_(2.0).add_(K - eye, alpha=4.0 * pca_lambda)
    X2 = (K - 2.0 * eye).mul_(2.0)
    return torch.bmm(P, X1).baddbmm_(B, X2)                           # P(2ÃÃᵀ + 4λ(K−I)) + B·2(K − 2I)


def _osd_p_step(P: Tensor, G_hat: Tensor, grads: list[Tensor], states: list[dict], cache: dict, *,
                side: int, lr: float, step: int, pca: PCAHyper, norms: list[Tensor] | None = None) -> None:
    grad_P = online_pca_grad_batched(P, G_hat, grads, side, pca.pca_lambda, norms)
    lr_P = pca.alpha * lr
    U_P = P_STEPS.get(pca.optimizer)(states, cache, grad_P, lr_P, step, pca)
    if pca.weight_decay != 0.0:
        P.mul_(1.0 - lr_P * pca.weight_decay)
    P.add_(U_P, alpha=lr_P)


# -- the batched P-optimizers (as discrete.inner.PROJ_OPTIMIZERS: adam, gd) -------------------------
def _p_adam(states, cache, grad_P, lr_P, step, pca):
    pm = stacked(states, "proj_exp_avg", cache)
    pv = stacked(states, "proj_exp_avg_sq", cache)
    return _adam_(pm, pv, grad_P, lr=lr_P, beta1=pca.beta1, beta2=pca.beta2, eps=pca.eps, step=step,
                  bias_correction=True, torch_eps=True)


def _p_gd(states, cache, grad_P, lr_P, step, pca):
    return grad_P.neg_()                                              # U = −∇_P (gradient flow, no state)


P_STEPS: Registry[Callable] = Registry("batched projection optimizer")
P_STEPS.add("adam", _p_adam)
P_STEPS.add("gd", _p_gd)
