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


# -- matmul precision for the products that touch an (m, n) matrix (a registry of modes) -------------
@dataclass(frozen=True)
class MatmulMode:
    """Operand dtype and TF32 switch for the big products; outputs and all state stay float32."""

    dtype: torch.dtype
    tf32: bool

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old


MATMUL_PRECISION: Registry[MatmulMode] = Registry("matmul_precision")
MATMUL_PRECISION.add("highest", MatmulMode(torch.float32, False))   # float32 products
MATMUL_PRECISION.add("tf32", MatmulMode(torch.float32, True))       # TF32 tensor cores (CUDA), fp32 accumulate
MATMUL_PRECISION.add("bf16", MatmulMode(torch.bfloat16, False))     # bf16 operands, fp32 accumulate

# Each chunk of a bucket stacks its gradients into one (c, m, n) buffer so the products run as one bmm
# (one launch, full occupancy); the buffer holds at most this many elements (512 MiB in float32).
CHUNK_ELEMS = 1 << 27


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
    """:func:`osd_theory.discrete_steps.adam_step` on stacked (L, …) buffers (it is elementwise)."""
    return ds.adam_step([m, v], g, lr=lr, beta1=beta1, beta2=beta2, eps=eps, step=step,
                        bias_correction=bias_correction, torch_eps=torch_eps)


def subspace_adam_bucket(params: list[Tensor], grads: list[Tensor], states: list[dict], cache: dict, *,
                         norms: list[Tensor] | None = None,
                         side: int, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                         scale: float, step: int, bias_correction: bool, torch_eps: bool,
                         pca: PCAHyper | None, precision: str = "highest") -> None:
    """One step of projected Adam (and, with ``pca``, OSD's P step) for same-shape matrices."""
    for s in states:
        s["step"] += 1
    mode = MATMUL_PRECISION.get(precision)
    P = stacked(states, "proj", cache)                                # (L, d, r)
    m = stacked(states, "exp_avg", cache)
    v = stacked(states, "exp_avg_sq", cache)
    inv = _inverse_norms(grads, norms) if pca is not None else None   # (L, 1, 1) 1/‖Gᵢ‖, 0 for G = 0
    with mode.context():
        G_hat, B = _project_chunks(P, grads, side, mode, inv)         # Ĝ (L, r, n)|(L, m, r); B (L, d, r)
        D = _adam_(m, v, G_hat, lr=lr, beta1=beta1, beta2=beta2, eps=eps, step=step,
                   bias_correction=bias_correction, torch_eps=torch_eps)
        if weight_decay != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * weight_decay)
        _back_project_chunks(params, P, D, side, mode, lr * scale)    # W ← W + lr·scale·P D
    if pca is not None:
        _osd_p_step(P, G_hat, B, inv, states, cache, side=side, lr=lr, step=step, pca=pca, precision=precision)


def _inverse_norms(grads: list[Tensor], norms: list[Tensor] | None) -> Tensor:
    n = torch.stack(norms if norms is not None else torch._foreach_norm(grads)).float()
    return torch.where(n > 0, 1.0 / n, torch.zeros_like(n))[:, None, None]


def _chunks(L: int, numel: int) -> Iterator[slice]:
    c = max(1, CHUNK_ELEMS // max(1, numel))
    for i in range(0, L, c):
        yield slice(i, min(L, i + c))


def _stack_cast(grads: list[Tensor], dtype: torch.dtype) -> Tensor:
    if len(grads) == 1 and grads[0].dtype == dtype:
        return grads[0][None]                                         # a single matrix: a view, no copy
    out = torch.empty((len(grads), *grads[0].shape), dtype=dtype, device=grads[0].device)
    for j, g in enumerate(grads):
        out[j].copy_(g)                                               # one pass: copy (and cast)
    return out


def _project_chunks(P: Tensor, grads: list[Tensor], side: int, mode: MatmulMode, inv: Tensor | None,
                    G_hat: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Both passes over G while its chunk is stacked: Ĝ = PᵀG (or GP) and, for OSD, B = G̃Ãᵀ.

    A given ``G_hat`` is reused (only B is computed).
    """
    L, d, r = P.shape
    rows, cols = grads[0].shape
    given = G_hat is not None
    if not given:
        G_hat = torch.empty((L, r, cols) if side == LEFT else (L, rows, r), dtype=torch.float32, device=P.device)
    B = torch.empty_like(P) if inv is not None else None
    for sl in _chunks(L, rows * cols):
        Gs = _stack_cast(grads[sl], mode.dtype)                       # (c, m, n)
        if not given:
            Pc = P[sl].to(mode.dtype)
            G_hat[sl] = torch.bmm(Pc.mT, Gs) if side == LEFT else torch.bmm(Gs, Pc)
        if B is not None:                                             # Ãᵀ = Ĝᵀ/‖G‖ (LEFT) or Ĝ/‖G‖ (RIGHT)
            AT = ((G_hat[sl].mT if side == LEFT else G_hat[sl]) * inv[sl]).to(mode.dtype)
            B[sl] = torch.bmm(Gs if side == LEFT else Gs.mT, AT)      # G̃ Ãᵀ · ‖G‖
            B[sl] *= inv[sl]
        del Gs
    return G_hat, B


def _back_project_chunks(params: list[Tensor], P: Tensor, D: Tensor, side: int, mode: MatmulMode,
                         alpha: float) -> None:
    for sl in _chunks(len(params), params[0].numel()):
        Pc, Dc = P[sl].to(mode.dtype), D[sl].to(mode.dtype)
        U = torch.bmm(Pc, Dc) if side == LEFT else torch.bmm(Dc, Pc.mT)   # (c, m, n): P D
        torch._foreach_add_(params[sl], list(U.unbind(0)), alpha=alpha)
        del U


def online_pca_grad_from_parts(P: Tensor, G_hat: Tensor, B: Tensor, inv: Tensor, side: int, pca_lambda: float,
                               mode: MatmulMode) -> Tensor:
    """∇_P 𝓛_G(P) from Ĝ and B = G̃Ãᵀ (batched :func:`osd_theory.kernels.online_pca_grad`).

    Written as 2P(ÃÃᵀ) − 2B + 2B E + 4λ P E with E = PᵀP − I computed in float32 without TF32:
    E is a small difference of O(1) numbers, and a TF32 PᵀP would put 1e-3 errors into it.
    """
    with MATMUL_PRECISION.get("highest").context():
        E = torch.bmm(P.mT, P)                                        # PᵀP (L, r, r), exact float32
        E.diagonal(dim1=-2, dim2=-1).sub_(1.0)                        # E = PᵀP − I
    with mode.context():
        AT = (G_hat.mT if side == LEFT else G_hat) * inv              # Ãᵀ (L, k, r)
        X1 = torch.bmm(AT.mT, AT).mul_(2.0).add_(E, alpha=4.0 * pca_lambda)   # 2ÃÃᵀ + 4λE
        grad = torch.bmm(P, X1).baddbmm_(B, E, alpha=2.0)             # P X1 + 2 B E
    return grad.sub_(B, alpha=2.0)                                    # − 2B


def online_pca_grad_batched(P: Tensor, G_hat: Tensor, grads: list[Tensor], side: int, pca_lambda: float,
                            norms: list[Tensor] | None = None, precision: str = "highest") -> Tensor:
    """∇_P 𝓛_G(P) for a bucket (L, d, r), two-pass closed form reusing Ĝ (batched kernels.online_pca_grad)."""
    mode = MATMUL_PRECISION.get(precision)
    inv = _inverse_norms(grads, norms)
    with mode.context():
        _, B = _project_chunks(P, grads, side, mode, inv, G_hat=G_hat)
    return online_pca_grad_from_parts(P, G_hat, B, inv, side, pca_lambda, mode)


def _osd_p_step(P: Tensor, G_hat: Tensor, B: Tensor, inv: Tensor, states: list[dict], cache: dict, *,
                side: int, lr: float, step: int, pca: PCAHyper, precision: str = "highest") -> None:
    grad_P = online_pca_grad_from_parts(P, G_hat, B, inv, side, pca.pca_lambda, MATMUL_PRECISION.get(precision))
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
