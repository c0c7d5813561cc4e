"""Preconditioned sharpness of a training run (``--sharpness K``), for claim C8 (docs/training-claims.md).

Adam with momentum β₁ (m ← β₁m + (1−β₁)g) and preconditioner D (the denominator of its step,
w ← w − η D⁻¹m) is stable on a quadratic with Hessian H iff λ_max(D⁻¹H) < (2 + 2β₁)/((1 − β₁)η)
(Cohen et al. 2022, arXiv:2207.14484): :func:`adaptive_eos_threshold`. This module measures
λ_max(D⁻¹H) of the real run at log-spaced steps.

**The preconditioner** of each parameter comes from its optimizer state: D = (√v + e)/c with v
the raw second moment and (c, e) = :func:`osd_theory.discrete_steps.adam_bias_correction` (the
step's bias-correction factor and ε, torch or HF placement), so D⁻¹m is exactly the step's
direction. A projected matrix (state ``proj`` P, d × r) moves as W = W₀ + P R (left side,
``proj_side`` 0; W₀ + R Pᵀ on the right) with R ← R − η s D⁻¹m̂ (GaLore's ``scale`` s): its
coordinates are R and its preconditioner D/s.

**Two operators** (symmetric forms, same eigenvalues as D⁻¹H):

- ``sharpness`` — in the optimizer's own coordinates (R for projected matrices, W otherwise):
  A = D^{-1/2} Jᵀ H J D^{-1/2} with J R = P R. This is the operator of the linearised step.
- ``sharpness_full`` (subspace optimizers only) — every direction of each projected matrix, with
  D lifted to all of it: D inside span(P) (orthonormalised by QR) and, outside it, the mean of D
  over the subspace coordinates of the same column (row on the right side). It equals
  ``sharpness``'s operator on the subspace, so ``sharpness_full ≥ sharpness`` up to OSD's
  ‖PᵀP − I‖ (a Rayleigh quotient over a subspace).

**Measurement.** Power iteration on A with Hessian-vector products (double backward through
the model, float32, no autocast, math attention), on a fixed batch: the run's first
``micro_batch_size`` sequences. At most :data:`MAX_ITERS` products per operator, warm-started
from the previous measurement's eigenvector, stopped when the Rayleigh quotient changes by less
than :data:`REL_TOL`. Power iteration returns the eigenvalue of largest magnitude (a negative
number if a negative curvature dominates).

**Cost.** Per measurement: one forward/backward with graph and up to 2 × MAX_ITERS double
backwards (each about 2–3 forward/backward passes) on one micro-batch; ``--sharpness K`` measures
K times per decade of steps (about K·log10(N) times in N steps), so 8 per decade over 2,000 steps
is 27 measurements, at most ~3,000 micro-batch passes (about 1–3 % of a 60M run at batch 256).
The measurement's time is kept out of the logged tokens/s.
"""
from __future__ import annotations

import contextlib
import time

import torch

from osd_theory.discrete_steps import adam_bias_correction
from osd_theory.errors import UserError

MAX_ITERS = 20
REL_TOL = 1e-3


def adaptive_eos_threshold(lr: float, beta1: float) -> float:
    """(2 + 2β₁)/((1 − β₁)η): the largest stable λ_max(D⁻¹H) of Adam on a quadratic (38/η at β₁ = 0.9)."""
    return (2 + 2 * beta1) / ((1 - beta1) * lr)


def measure_steps(total: int, per_decade: int) -> set[int]:
    """round(10^(k/K)) for k = 0, 1, ... up to ``total``, and ``total`` itself."""
    steps, k = {total}, 0
    while (s := round(10 ** (k / per_decade))) <= total:
        steps.add(s)
        k += 1
    return steps


class _Block:
    """One parameter: its preconditioner D (coordinates' shape) and projector (P, side) or None."""

    def __init__(self, p: torch.Tensor, D: torch.Tensor, proj: tuple[torch.Tensor, int] | None):
        self.p, self.inv_sqrt, self.proj = p, D.rsqrt(), proj
        if proj is not None:
            P, side = proj
            self.Q = torch.linalg.qr(P.float(), mode="reduced")[0]
            # D's mean over the subspace coordinates per column (left side) / per row (right side)
            self.out_inv_sqrt = D.mean(dim=0 if side == 0 else 1, keepdim=True).rsqrt()

    # optimizer coordinates <-> weight space (the projected operator)
    def to_weight(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.inv_sqrt
        if self.proj is None:
            return y
        P, side = self.proj
        return P.float() @ y if side == 0 else y @ P.float().T

    def from_weight(self, g: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            P, side = self.proj
            g = P.float().T @ g if side == 0 else g @ P.float()
        return g * self.inv_sqrt

    # the lifted preconditioner on all of W (the full-space operator; symmetric)
    def lift(self, v: torch.Tensor) -> torch.Tensor:
        if self.proj is None:
            return v * self.inv_sqrt
        Q, side = self.Q, self.proj[1]
        if side == 0:
            c = Q.T @ v
            return Q @ (c * self.inv_sqrt) + (v - Q @ c) * self.out_inv_sqrt
        c = v @ Q
        return (c * self.inv_sqrt) @ Q.T + (v - c @ Q.T) * self.out_inv_sqrt


def _group_of(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    return {id(p): g for g in optimizer.param_groups for p in g["params"]}


def blocks(optimizer: torch.optim.Optimizer) -> list[_Block]:
    """A :class:`_Block` per parameter with an Adam state (others are not stepped by Adam: left out)."""
    from discrete.subspace import working_basis
    from discrete.validation.metrics import adam_moments

    groups, out = _group_of(optimizer), []
    default_place = getattr(type(optimizer), "eps_placement", "torch")
    for p, st in optimizer.state.items():
        if "exp_avg_sq" not in st:
            continue
        g = groups[id(p)]
        b1, b2 = g["betas"]
        step = int(st["step"]) - int(st.get("subproblem_start", 0))
        if g.get("bias_correction", True):
            factor, e = adam_bias_correction(max(step, 1), b1, b2, g["eps"],
                                             torch_eps=g.get("eps_placement", default_place) == "torch")
        else:
            factor, e = 1.0, g["eps"]
        projected = "proj" in st
        scale = float(g.get("scale", 1.0)) if projected else 1.0
        D = (adam_moments(g, st)[1].sqrt() + e) / (factor * scale)       # v dequantised (state_dtype)
        out.append(_Block(p, D, (working_basis(st["proj"]), int(st.get("proj_side", 0))) if projected else None))
    return out


def _normalise(xs: list[torch.Tensor]) -> list[torch.Tensor]:
    n = torch.sqrt(sum(x.pow(2).sum() for x in xs))
    return [x / n for x in xs]


def power_iteration(apply, v: list[torch.Tensor]) -> tuple[float, list[torch.Tensor], int]:
    """(Rayleigh quotient, eigenvector, products used) of the symmetric operator ``apply``."""
    v, lam = _normalise(v), None
    for it in range(1, MAX_ITERS + 1):
        w = apply(v)
        new = float(sum((a * b).sum() for a, b in zip(v, w)))
        v = _normalise(w)
        if lam is not None and abs(new - lam) <= REL_TOL * abs(new):
            return new, v, it
        lam = new
    return lam, v, MAX_ITERS


@contextlib.contextmanager
def _math_attention():
    """Double backward needs the math attention kernel (flash/efficient kernels have no second derivative)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


class SharpnessMeter:
    """Measures ``sharpness`` (and ``sharpness_full``) at the steps of :func:`measure_steps`."""

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor], steps: set[int], seed: int = 0):
        self.batch, self.steps, self.seed = batch, steps, seed
        self._warm: dict[str, list[torch.Tensor]] = {}

    def due(self, step: int) -> bool:
        return step in self.steps

    def _start(self, name: str, like: list[torch.Tensor]) -> list[torch.Tensor]:
        old = self._warm.get(name)
        if old is not None and [o.shape for o in old] == [t.shape for t in like]:
            return old
        gen = torch.Generator().manual_seed(self.seed)
        return [torch.randn(t.shape, generator=gen).to(t.device) for t in like]

    def measure(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        """``sharpness``, ``sharpness_threshold`` (38/η at β₁ 0.9), ``sharpness_ratio``, ``sharpness_iters``,
        ``sharpness_s`` and, for subspace optimizers, ``sharpness_full`` and ``sharpness_full_ratio``."""
        start = time.perf_counter()
        bl = blocks(optimizer)
        if not bl:
            return {}
        params = [b.p for b in bl]
        x, y = (t.to(params[0].device) for t in self.batch)
        with torch.enable_grad(), _math_attention():
            _, loss = model(x, y)
            grads = torch.autograd.grad(loss, params, create_graph=True)

            def hvp(vs: list[torch.Tensor]) -> list[torch.Tensor]:
                return list(torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True))

            def projected(xs):
                return [b.from_weight(h) for b, h in zip(bl, hvp([b.to_weight(x) for b, x in zip(bl, xs)]))]

            def full(vs):
                return [b.lift(h) for b, h in zip(bl, hvp([b.lift(v) for b, v in zip(bl, vs)]))]

            coords = [b.inv_sqrt for b in bl]
            lam, self._warm["proj"], iters = power_iteration(projected, self._start("proj", coords))
            out = {"sharpness": lam, "sharpness_iters": iters}
            if any(b.proj is not None for b in bl):
                lam_f, self._warm["full"], it_f = power_iteration(full, self._start("full", params))
                out.update(sharpness_full=lam_f, sharpness_iters=iters + it_f)
        group = optimizer.param_groups[0]
        thr = adaptive_eos_threshold(group["lr"], group["betas"][0])
        out["sharpness_threshold"] = thr
        out["sharpness_ratio"] = out["sharpness"] / thr
        if "sharpness_full" in out:
            out["sharpness_full_ratio"] = out["sharpness_full"] / thr
        out["sharpness_s"] = time.perf_counter() - start
        return {k: (float(v) if isinstance(v, float) or torch.is_tensor(v) else v) for k, v in out.items()}


def meter(cfg, train_stream) -> SharpnessMeter | None:
    """The run's meter (None when ``--sharpness`` is 0); checked before the run dir is claimed."""
    if not cfg.sharpness:
        return None
    if cfg.fsdp:
        raise UserError("--sharpness needs each parameter's full matrix for its Hessian-vector products; "
                        "FSDP2 shards them: run it without --fsdp")
    return SharpnessMeter(train_stream.sequences(0, cfg.micro_batch_size), measure_steps(cfg.steps, cfg.sharpness),
                          seed=cfg.seed)
