"""Per-matrix kernels shared by the ODE simulator and the discrete optimizers.

Conventions (THEORY.md notation, one side at a time):

* ``W, G``: (m, n) parameter and gradient.
* ``side = LEFT`` (0):  ``P`` is (m, r), the projected gradient is ``Ĝ = Pᵀ G``  (r, n),
  the back-projection of a subspace direction ``D`` (r, n) is ``P D``  (m, n).
* ``side = RIGHT`` (1): ``P`` is (n, r), ``Ĝ = G P``  (m, r), back-projection ``D Pᵀ``.

The right side is the left side applied to ``Gᵀ``. Both maps are adjoint pairs,
``⟨P X, Y⟩ = ⟨X, Pᵀ Y⟩``, which is the whole reason dH/dt does not depend on Ṗ
(THEORY.md §1.2). The side is a number (0/1) so it can live in optimizer state.
"""
from __future__ import annotations

import torch
from torch import Tensor

from typing import Callable

from osd_theory.errors import UserError

LEFT = 0
RIGHT = 1

# -- which side is projected: one vocabulary for the simulator and the optimizers -------------
# The names are galore-torch's ``proj_type``: "std" projects the smaller dimension, and for a
# square matrix the right one (galore-torch tests ``shape[0] >= shape[1]``); "reverse_std" the
# larger one. "auto" is the simulator's historical name for "std".
SIDE_RULES: dict[str, Callable[[int, int], int]] = {
    "std": lambda m, n: RIGHT if m >= n else LEFT,
    "auto": lambda m, n: RIGHT if m >= n else LEFT,
    "reverse_std": lambda m, n: LEFT if m >= n else RIGHT,
    "left": lambda m, n: LEFT,
    "right": lambda m, n: RIGHT,
}


def side_for_shape(m: int, n: int) -> int:
    """Project the smaller dimension (GaLore's ``std``): LEFT if m < n, else RIGHT (square: RIGHT)."""
    return SIDE_RULES["std"](m, n)


def parse_side(side: str | int, m: int, n: int) -> int:
    """Resolve a side name (:data:`SIDE_RULES`) or ``LEFT``/``RIGHT`` (0/1) for an (m, n) matrix."""
    if not isinstance(side, bool) and side in (LEFT, RIGHT):
        return int(side)
    rule = SIDE_RULES.get(side) if isinstance(side, str) else None
    if rule is None:
        raise UserError(f"unknown projection side {side!r}; expected one of {sorted(SIDE_RULES)} or 0/1")
    return rule(m, n)


def basis_dim(shape: tuple[int, int], side: int) -> int:
    """Rows of ``P`` for a (m, n) matrix: m for LEFT, n for RIGHT."""
    return shape[0] if side == LEFT else shape[1]


def check_rank(rank: int, shape: tuple[int, int]) -> int:
    """Validate ``1 <= rank <= min(m, n)`` (the one rank check of simulator and optimizers); return it."""
    m, n = shape
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1 or rank > min(m, n):
        raise UserError(f"Invalid rank: {rank!r}; expected an integer in [1, min(m, n)] = [1, {min(m, n)}] for a {m}x{n} matrix")
    return rank


def project(P: Tensor, G: Tensor, side: int, out: Tensor | None = None, P_t: Tensor | None = None) -> Tensor:
    """Ĝ = Pᵀ G (LEFT, (r, n)) or G P (RIGHT, (m, r)); written into ``out`` when given.

    ``P_t``: Pᵀ when the caller has it as a view already (a loop over a stack takes ``P.mT.unbind(0)`` once
    instead of one ``.mT`` dispatch per matrix); the same product either way."""
    if side != LEFT:
        return torch.matmul(G, P, out=out)
    return torch.matmul(P.mT if P_t is None else P_t, G, out=out)


def back_project(P: Tensor, D: Tensor, side: int) -> Tensor:
    """The adjoint of :func:`project`: P D (LEFT) or D Pᵀ (RIGHT), shape (m, n)."""
    return P @ D if side == LEFT else D @ P.mT


def back_project_add_(W: Tensor, P: Tensor, D: Tensor, side: int, alpha: float, P_t: Tensor | None = None) -> Tensor:
    """W ← W + alpha·back_project(P, D, side), in place (one ``addmm_`` when the dtypes agree).

    ``addmm_`` reads and writes W once and never materialises the (m, n) product; for a W of
    another dtype (bf16 weights and float32 P, or bf16 operands for a float32 W) the product is
    formed in P's dtype and added with type promotion (no separate cast pass). ``P_t``: Pᵀ as a view
    the caller has already (see :func:`project`).
    """
    if W.dtype != P.dtype:
        return W.add_(back_project(P, D, side), alpha=alpha)
    return W.addmm_(P, D, alpha=alpha) if side == LEFT else W.addmm_(D, P.mT if P_t is None else P_t, alpha=alpha)


def orthogonality_defect(P: Tensor) -> Tensor:
    """‖PᵀP − I‖_F (scalar)."""
    r = P.shape[-1]
    return torch.linalg.matrix_norm(P.mT @ P - torch.eye(r, dtype=P.dtype, device=P.device))


def oriented(G: Tensor, side: int) -> Tensor:
    """G as (d, k) with P (d, r) spanning its columns: G (LEFT) or Gᵀ (RIGHT). Works on (…, m, n)."""
    return G if side == LEFT else G.mT


def inverse_norm(G: Tensor) -> Tensor:
    """1/‖G‖_F over the last two dims, shape (…, 1, 1); 0 where G = 0 (no host synchronisation).

    A zero gradient has no direction: with 1/‖G‖ := 0 every G̃ = G/‖G‖ term vanishes, which is
    the convention of every rule that normalises G (online PCA, Oja, adversarial).
    """
    norm = torch.linalg.matrix_norm(G)[..., None, None]
    return torch.where(norm > 0, 1.0 / norm, torch.zeros_like(norm))


def online_pca_parts(P: Tensor, G: Tensor, side: int, G_hat: Tensor | None = None,
                     inv: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The two passes over G of the online-PCA gradient: A = Pᵀ G̃ (r, k) and B = G̃ Aᵀ (d, r).

    G̃ = G/‖G‖ oriented to the projected side (:func:`oriented`). ``G_hat`` (= project(P, G, side),
    which the weight update computes anyway) saves the first pass; ``inv`` = 1/‖G‖ (:func:`inverse_norm`)
    may be given when known. Batched over leading dims. These two products are the only ones that
    touch an (m, n) matrix (≈ 4mnr flops); the rest is r×r algebra (:func:`online_pca_grad_from_parts`).
    """
    Gs = oriented(G, side)                                         # (…, d, k)
    inv = inverse_norm(G) if inv is None else inv
    A = (oriented(G_hat, side) if G_hat is not None else P.mT @ Gs) * inv   # Pᵀ G̃   (…, r, k)
    B = (Gs @ A.mT) * inv                                          # G̃ Aᵀ   (…, d, r)
    return A, B


def gram_float32(P: Tensor, split: bool | None = None) -> Tensor:
    """PᵀP (…, r, r) to float32 accuracy, also where TF32 products are allowed.

    With TF32 on (CUDA), a plain PᵀP has ~1e-3 relative error: too much for E = PᵀP − I, a small
    difference of O(1) numbers. The split P = P_hi + P_lo (P_hi: P with the 13 low mantissa bits
    cleared, exact in TF32) gives PᵀP = P_hiᵀP_hi + P_hiᵀP_lo + (P_hiᵀP_lo)ᵀ + O(2⁻²⁰|P|²) with three
    TF32 products (~2e-7 relative), several times faster than one float32 product on tensor-core-less
    paths. ``split`` None: split exactly when TF32 would otherwise be used.
    """
    if split is None:
        split = P.is_cuda and torch.backends.cuda.matmul.allow_tf32
    if not split or P.dtype != torch.float32:
        return P.mT @ P
    hi, lo = _tf32_split(P)
    cross = hi.mT @ lo
    return (hi.mT @ hi).add_(cross).add_(cross.mT)


def mtm_float32(A: Tensor, B: Tensor, split: bool | None = None) -> Tensor:
    """AᵀB (…, r, s) for A (…, d, r), B (…, d, s) to float32 accuracy, also where TF32 is allowed.

    The split of :func:`gram_float32` on both sides: AᵀB = A_hiᵀB_hi + A_hiᵀB_lo + A_loᵀB_hi + O(2⁻²⁰|A||B|),
    three TF32 products. For r×r products of bases whose small differences matter (the moment transport's
    P_newᵀP_old). ``split`` None: split exactly when TF32 would otherwise be used.
    """
    if split is None:
        split = A.is_cuda and torch.backends.cuda.matmul.allow_tf32
    if not split or A.dtype != torch.float32 or B.dtype != torch.float32:
        return A.mT @ B
    (a_hi, a_lo), (b_hi, b_lo) = _tf32_split(A), _tf32_split(B)
    return (a_hi.mT @ b_hi).add_(a_hi.mT @ b_lo).add_(a_lo.mT @ b_hi)


def _tf32_split(X: Tensor) -> tuple[Tensor, Tensor]:
    """X = hi + lo with hi exact in TF32 (the 13 low mantissa bits of float32 cleared)."""
    Xc = X.contiguous()
    hi = (Xc.view(torch.int32) & -8192).view(torch.float32)     # 0xFFFFE000: TF32's 10-bit mantissa
    return hi, Xc - hi


def _add_matmul_(out: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """out += a @ b in place (addmm_ for matrices, baddbmm_ for batches)."""
    return out.addmm_(a, b) if out.dim() == 2 else out.baddbmm_(a, b)


def online_pca_grad_from_parts(P: Tensor, A: Tensor, B: Tensor, pca_lambda: float) -> Tensor:
    """∇_P 𝓛_G(P) = 2P(AAᵀ) + 2B(PᵀP − 2I) + 4λP(PᵀP − I) from the two passes (THEORY.md §4.1).

    Written with E = PᵀP − I as P·(2AAᵀ + 4λE) + B·2(E − I): two r×r matrices, then two products
    that touch P's size. E comes from :func:`gram_float32`. Batched over leading dims.
    """
    return online_pca_grad_from_grams(P, A @ A.mT, B, pca_lambda, gram_float32(P))


def online_pca_grad_from_grams(P: Tensor, AAt: Tensor, B: Tensor, pca_lambda: float, PtP: Tensor) -> Tensor:
    """∇_P 𝓛_G(P) from the r×r Gram matrices AAᵀ and PᵀP and the second pass B (P's rows).

    The form the sharded path needs (discrete/step/sharded.py): when the rows of P or the columns of A are
    split over processes, AAᵀ and PᵀP are sums of per-process Grams (one all-reduce of r×r numbers)
    while P and B stay row-local. ``AAt`` and ``PtP`` are consumed (modified in place).
    """
    E = PtP
    E.diagonal(dim1=-2, dim2=-1).sub_(1.0)                         # E = PᵀP − I
    X = AAt.mul_(2.0).add_(E, alpha=4.0 * pca_lambda)             # 2AAᵀ + 4λE
    F = E.mul_(2.0)
    F.diagonal(dim1=-2, dim2=-1).sub_(2.0)                         # 2(E − I) = 2(PᵀP − 2I)
    return _add_matmul_(B @ F, P, X)


def online_pca_grad(P: Tensor, G: Tensor, pca_lambda: float, side: int, G_hat: Tensor | None = None) -> Tensor:
    """Closed-form ∇_P of the online-PCA objective (THEORY.md §4.1, OSD Eq. (6)).

    .. math::
        \\mathcal L_G(P) = \\|PP^\\top\\tilde G-\\tilde G\\|^2 + λ\\|P^\\top P-I\\|^2,\\qquad \\tilde G = G/\\|G\\|

    evaluated in the two-pass form (never forming ``G̃G̃ᵀ`` or the residual R):
    with ``A = Pᵀ G̃`` (r, k) and ``B = G̃ Aᵀ`` (d, r),

    .. math::
        \\nabla_P = 2\\big(P (AA^\\top) + B (P^\\top P - 2I)\\big) + 4λ P (P^\\top P - I).

    For the RIGHT side the objective is applied to ``Gᵀ``. A zero gradient has no direction:
    then only the orthogonality term acts (1/‖G‖ := 0; no host synchronisation).

    Args:
        P: (m, r) for LEFT, (n, r) for RIGHT; or a batch (L, ·, r).
        G: (m, n) gradient, or (L, m, n).
        pca_lambda: λ ≥ 0, weight of the orthogonality penalty.
        side: LEFT or RIGHT.
        G_hat: optional, the already computed ``project(P, G, side)``; saves one
            matmul since the weight update needs it anyway (cost ≈ 4nmk flops).
    Returns:
        (same shape as P) the gradient.
    """
    A, B = online_pca_parts(P, G, side, G_hat=G_hat)
    return online_pca_grad_from_parts(P, A, B, pca_lambda)


def gram_apply(G: Tensor, P: Tensor, side: int, inv: Tensor | None = None) -> Tensor:
    """G̃ G̃ᵀ P (d, r) without forming G̃ G̃ᵀ; zero when G = 0. Batched over leading dims.

    ``inv`` = 1/‖G‖ (:func:`inverse_norm`) when already known.
    """
    Gs = oriented(G, side)
    inv = inverse_norm(G) if inv is None else inv
    return (Gs @ (Gs.mT @ P)) * (inv * inv)


def online_pca_loss(P: Tensor, G: Tensor, pca_lambda: float, side: int) -> Tensor:
    """𝓛_G(P) itself (for checks and plots; O(mn) memory: not for hot paths)."""
    r = P.shape[-1]
    Gs = G if side == LEFT else G.mT
    norm = torch.linalg.matrix_norm(Gs)
    Gt = Gs / norm if bool(norm > 0) else Gs
    resid = P @ (P.mT @ Gt) - Gt
    eye = torch.eye(r, dtype=P.dtype, device=P.device)
    return resid.pow(2).sum() + pca_lambda * (P.mT @ P - eye).pow(2).sum()


def svd_basis(G: Tensor, rank: int, side: int) -> Tensor:
    """Top-``rank`` singular basis of G on the projected side (GaLore's refresh).

    LEFT: the first r left singular vectors U[:, :r] (m, r); RIGHT: V[:, :r] (n, r).
    Computed in float32 or wider, returned in that dtype. On CUDA the basis comes from the
    eigenvectors of the Gram matrix G̃G̃ᵀ (d × d, d the projected dimension) in float64: the same
    subspace, about 9× faster than cuSOLVER's SVD on LLaMA-1B shapes and closer to the float64 SVD
    (docs/results/benchmarks: refresh.jsonl); on the CPU, LAPACK's SVD (galore-torch's signs).
    """
    work = G if G.dtype in (torch.float32, torch.float64) else G.float()
    if work.is_cuda:
        Gs = oriented(work, side).double()                              # (d, k)
        vecs = torch.linalg.eigh(Gs @ Gs.mT)[1]                         # ascending eigenvalues σ²
        return vecs[:, -rank:].flip(-1).to(work.dtype).contiguous()
    U, _, Vh = torch.linalg.svd(work, full_matrices=False)
    return U[:, :rank].contiguous() if side == LEFT else Vh[:rank].mT.contiguous()


def svd_refresh(G: Tensor, rank: int, side: int) -> Tensor | None:
    """GaLore's refresh, guarded: the top-r basis of G (float32 or wider), or None when G is zero or
    non-finite or the SVD fails to converge — then the caller keeps its old basis (no basis from zeros).

    One host synchronisation (the finiteness test); refreshes are rare (every T steps).
    """
    norm = torch.linalg.matrix_norm(G.float() if G.dtype not in (torch.float32, torch.float64) else G)
    if not bool(torch.isfinite(norm) & (norm > 0)):
        return None
    try:
        return svd_basis(G, rank, side)
    except (torch.linalg.LinAlgError, RuntimeError):   # LAPACK/cuSOLVER failed to converge
        return None


def random_basis(dim: int, rank: int, *, generator: torch.Generator | None = None,
                 distribution: str = "haar", dtype=torch.float64, device=None) -> Tensor:
    """A random (dim, rank) basis.

    ``haar``: orthonormal columns, uniformly distributed (QR of a Gaussian with the
    sign fix of Mezzadri 2007). ``gaussian``: i.i.d. N(0, 1/rank) entries, so that
    E[PᵀP] = (dim/rank) I — not orthonormal; dH/dt does not care (THEORY.md §1.2).

    The Gaussian is drawn on the generator's device (a CPU generator gives the same draw whatever
    ``device`` is, so a seeded basis does not depend on where it is used) and the QR runs on
    ``device``: on a GPU that is milliseconds per 1B-size matrix, where the CPU QR takes ~0.1–0.3 s
    and the first step of a 1B model has ~170 of them.
    """
    if distribution == "haar" and rank > dim:
        # QR would silently return (dim, dim): at most dim orthonormal columns exist
        raise UserError(f"a haar basis has at most dim = {dim} orthonormal columns, got rank {rank}")
    Z = torch.randn(dim, rank, generator=generator, dtype=dtype,
                    device=generator.device if generator is not None else device)
    Z = Z if device is None else Z.to(device)
    if distribution == "gaussian":
        return Z / rank**0.5
    if distribution != "haar":
        raise UserError(f"unknown random basis distribution {distribution!r}; expected one of ['gaussian', 'haar']")
    Q, R = torch.linalg.qr(Z)
    return Q * torch.sign(torch.diagonal(R)).where(torch.diagonal(R) != 0, torch.ones((), dtype=dtype, device=device))


def subspace_overlap(P_new: Tensor, P_old: Tensor) -> Tensor:
    """‖P_newᵀ P_old‖_F² / r ∈ [0, 1] for orthonormal bases (1 = same subspace)."""
    return (P_new.mT @ P_old).pow(2).sum() / P_new.shape[-1]
