"""Muon as spectral Lion-𝒦 (Muon: Jordan et al. 2024; Muon = Lion-𝒦 with 𝒦 = ‖·‖_*: arXiv:2506.15054).

Muon moves a matrix parameter along the orthogonalised momentum, O = UVᵀ for momentum U Σ Vᵀ
(approximately, by a Newton–Schulz iteration). UVᵀ is the gradient of the nuclear norm
‖Z‖_* = Σᵢ σᵢ(Z), so Muon is Lion-𝒦 (:mod:`osd_theory.hd.lion_k`) with the *spectral* 𝒦 = ‖·‖_*.
The simulator needs a C¹ field, so the systems here take a smooth spectral 𝒦 of
:mod:`osd_theory.convex` (``spectral_tanh`` by default: ∇𝒦_δ(Z) = U tanh(Σ/δ) Vᵀ → UVᵀ as δ → 0):

* :class:`Muon` (``muon``) — Lion-𝒦 in OSD's subspace form (no weight decay): the same a, b, H and
  Δ as :class:`~osd_theory.hd.lion_k.LionK`, with a spectral 𝒦;
* :class:`MuonWeightDecay` (``muon_wd``) — Lion-𝒦 with weight decay λ (full rank), whose limit
  points are stationary for f + (γ/αλ)𝒦*(λW); as δ → 0, 𝒦* is the indicator of the spectral-norm
  ball, so the limit points satisfy ‖λW‖₂ ≤ 1 (claim C10 checks it).

**Discrete map** (``torch.optim.Muon``, momentum μ, lr η, weight decay w, shape factor s): its
buffer buf ← μ·buf + (1−μ)g is the Lion-𝒦 momentum M = −buf relaxing at a = (1−μ)/h; the
Nesterov update g + μ(buf_new − g) = μ²·buf_old + (1−μ²)·g is the look-ahead with b = 1 − μ²
(without Nesterov, buf_new: b = 1 − μ); the orthogonalisation is scale-free (polar(cX) = polar(X),
c > 0), so the direction is −∇𝒦((1−b)M − bĝ) for 𝒦 = ‖·‖_*; the time step is h = η·s and the
decoupled decay W ← (1 − ηw)W is λ = w/s. In the weight-decay form: α = γ = (1−μ)/h,
ε = h(1−β₁)/(1−β₂) with β₁ = 1 − b, β₂ = μ.

**The δ → 0 gap.** :func:`polar` is the limit; :func:`polar_gap` measures ‖∇𝒦_δ(Z) − UVᵀ‖_F
(per singular value: tanh 1 − tanh(σ/δ) ≈ 2e^{−2σ/δ}; pseudo-Huber 1 − σ/√(σ²+δ²) ≈ δ²/2σ²) and
:func:`newton_schulz` (torch's quintic, 5 steps, bfloat16) is *not* the polar factor: its
singular values end in a band around 1 (measured in tests/theory/test_spectral.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from osd_theory.convex import SpectralK, _spectral_apply, _svdvals, make_convex
from osd_theory.errors import UserError
from osd_theory.hd.base import Condition, _require
from osd_theory.hd.lion_k import LionK, LionKWeightDecay
from osd_theory.registry import Registry

# torch.optim.Muon's Newton–Schulz (Keller Jordan's quintic): coefficients, steps, ε of the normalisation
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7


# -- the polar factor and its Newton–Schulz approximation -----------------------------------
def polar(z: Tensor) -> Tensor:
    """U sign(Σ) Vᵀ for z = U Σ Vᵀ: the polar factor UVᵀ on the range of z, 0 on its kernel.

    It is ∇‖z‖_* wherever z has full rank, and the δ → 0 limit of the spectral ∇𝒦_δ everywhere
    (sign(0) = 0: φ'_δ(0) = 0 for every δ). Singular values at or below the numerical-rank cutoff
    max(m, n)·ε·σ_max (as ``torch.linalg.matrix_rank``) count as 0: the SVD returns them as
    round-off of either sign's direction, and a unit weight on them would be noise.
    """
    def unit(S: Tensor) -> Tensor:
        cutoff = max(z.shape[-2:]) * torch.finfo(S.dtype).eps * S.amax(dim=-1, keepdim=True)
        return (S > cutoff).to(S.dtype)
    return _spectral_apply(unit, z)


def newton_schulz(g: Tensor, coefficients: tuple[float, float, float] = NS_COEFFICIENTS, steps: int = NS_STEPS,
                  eps: float = NS_EPS, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """torch.optim.Muon's orthogonalisation (``_zeropower_via_newtonschulz``), same operations in the same order.

    X ← g/‖g‖_F in ``dtype`` (bfloat16 as torch; transposed so that X is wide), then ``steps`` times
    X ← aX + (bA + cA²)X with A = XXᵀ. Returns a tensor of ``dtype`` and g's shape. A stack (L, m, n)
    (the batched subspace step) is done matrix by matrix, so that it equals the per-matrix path bit for bit.
    """
    if g.ndim > 2:
        flat = g.reshape(-1, *g.shape[-2:])
        return torch.stack([newton_schulz(x, coefficients, steps, eps, dtype) for x in flat]).reshape(g.shape)
    if g.ndim != 2:
        raise UserError(f"newton_schulz takes a 2-D matrix (or a stack of them), got shape {tuple(g.shape)}")
    if not (isinstance(steps, int) and 0 <= steps < 100):
        raise UserError(f"newton_schulz steps must be an integer in [0, 100), got {steps!r}")
    if len(coefficients) != 3:
        raise UserError(f"newton_schulz takes 3 coefficients (a, b, c), got {coefficients!r}")
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x.div(x.norm().clamp(min=eps))          # ‖X‖₂ ≤ ‖X‖_F = 1
    for _ in range(steps):
        A = x @ x.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)
        x = torch.addmm(x, B, x, beta=a)
    return x.T if tall else x


ORTHOGONALIZERS: Registry = Registry("orthogonalization")
ORTHOGONALIZERS.add("newton_schulz", lambda x, coefficients=NS_COEFFICIENTS, steps=NS_STEPS, eps=NS_EPS:
                    newton_schulz(x, coefficients, steps, eps))
# the exact step: the SVD polar factor (in float64: an orthogonalisation is ill-conditioned near
# repeated or tiny singular values), the δ → 0 limit the HD system has
ORTHOGONALIZERS.add("svd", lambda x, **_: polar(x.double()).to(x.dtype))


# -- torch.optim.Muon's shape-based lr adjustment -------------------------------------------
ADJUST_LR: Registry = Registry("Muon lr adjustment")
ADJUST_LR.add("original", lambda rows, cols: math.sqrt(max(1.0, rows / cols)))     # Keller Jordan
ADJUST_LR.add("match_rms_adamw", lambda rows, cols: 0.2 * math.sqrt(max(rows, cols)))  # Moonshot
ADJUST_LR.add("none", lambda rows, cols: 1.0)


def lr_factor(adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    """s with the step lr·s of torch.optim.Muon (None: "original", as torch)."""
    return ADJUST_LR.get("original" if adjust_lr_fn is None else adjust_lr_fn)(shape[0], shape[1])


def polar_gap(z: Tensor, kinetic_fn: str = "spectral_tanh", delta: float = 1e-2) -> float:
    """‖∇𝒦_δ(z) − polar(z)‖_F: how far the smooth spectral field is from Muon's exact direction."""
    return float(torch.linalg.matrix_norm(make_convex(kinetic_fn, delta).grad(z) - polar(z)))


# -- 𝒦 = nuclear norm (the δ → 0 limit; the discrete step's exact direction) ----------------
class NuclearK:
    """𝒦(Z) = ‖Z‖_* = Σσᵢ, ∇𝒦 = :func:`polar` (nonsmooth: the discrete Muon, not the simulator)."""

    delta = 0.0

    @staticmethod
    def value(z: Tensor) -> Tensor:
        return _svdvals(z).sum()

    @staticmethod
    def grad(z: Tensor) -> Tensor:
        return polar(z)


def _require_spectral(name: str, kinetic_fn: str, delta: float) -> None:
    K = make_convex(kinetic_fn, delta)              # validates the name and δ
    _require(isinstance(K, SpectralK),
             f"{name} needs a spectral K (kinetic_fn one of spectral_tanh, spectral_pseudo_huber, spectral_l2), "
             f"got kinetic_fn={kinetic_fn!r}; an elementwise K is lion_k")


def muon_betas(momentum: float, nesterov: bool = True) -> tuple[float, float]:
    """(β₁, β₂) of the Lion-𝒦 form of Muon: β₁ = μ² with Nesterov (μ without), β₂ = μ (module docstring)."""
    return (momentum * momentum if nesterov else momentum), momentum


@dataclass(frozen=True)
class Muon(LionK):
    """Lion-𝒦 with a spectral 𝒦 (OSD subspace form): Ẇ = P∇𝒦((1−b)M − bĜ), Ṁ = −a(Ĝ + M)."""

    kinetic_fn: str = "spectral_tanh"
    delta: float = 1e-1

    name = "muon"

    def __post_init__(self):
        super().__post_init__()
        _require_spectral(self.name, self.kinetic_fn, self.delta)

    @classmethod
    def from_discrete(cls, lr, momentum=0.95, nesterov=True, kinetic_fn="spectral_tanh", delta=1e-1, lr_scale=1.0):
        """The system whose Euler step (h = lr·lr_scale) torch.optim.Muon takes, with ∇𝒦 for the polar factor."""
        beta1, beta2 = muon_betas(momentum, nesterov)
        return cls(a=(1 - beta2) / (lr * lr_scale), b=1 - beta1, kinetic_fn=kinetic_fn, delta=delta)

    def condition(self):
        c = super().condition()
        return Condition(c.holds, c.statement + " (spectral)")


@dataclass(frozen=True)
class MuonWeightDecay(LionKWeightDecay):
    """Lion-𝒦 with weight decay and a spectral 𝒦 (full rank); limit points have ‖λW‖₂ ≤ 1 as δ → 0."""

    kinetic_fn: str = "spectral_tanh"
    delta: float = 1e-1

    name = "muon_wd"

    def __post_init__(self):
        super().__post_init__()
        _require_spectral(self.name, self.kinetic_fn, self.delta)

    @classmethod
    def from_discrete(cls, lr, momentum=0.95, nesterov=True, weight_decay=0.1, kinetic_fn="spectral_tanh",
                      delta=1e-1, lr_scale=1.0):
        """torch.optim.Muon (lr, momentum, nesterov, weight_decay) with time step h = lr·lr_scale, λ = wd/lr_scale."""
        beta1, beta2 = muon_betas(momentum, nesterov)
        h = lr * lr_scale
        rate = (1 - beta2) / h
        return cls(alpha=rate, gamma=rate, eps=h * (1 - beta1) / (1 - beta2), wd=weight_decay / lr_scale,
                   kinetic_fn=kinetic_fn, delta=delta)

    def condition(self):
        c = super().condition()
        return Condition(c.holds, c.statement + "; constraint ||lambda W||_2 < 1 (spectral)")

    @property
    def stationarity_name(self):
        return "||grad (f + (gamma/alpha lambda) K*(lambda W))|| (spectral K*)"


@dataclass(frozen=True)
class MuonPolar(Muon):
    """:class:`Muon` with 𝒦 = ‖·‖_* (∇𝒦 = polar): the exact discrete Muon's system (as LionSign for Lion)."""

    name = "muon_polar"

    @property
    def K(self):
        return NuclearK
