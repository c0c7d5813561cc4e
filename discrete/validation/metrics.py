"""Theory-linked metrics computed from the optimizer's real state, on log steps only.

Contract with ``discrete`` (per projected parameter): ``state["proj"]`` is P (float32, or bf16 with
``proj_dtype="bf16"``, read as float32 here; m x r when ``proj_side == 0``, the left side, G_hat = P^T G; n x r when
``proj_side == 1``, G_hat = G P), and ``exp_avg`` / ``exp_avg_sq`` are the Adam moments (projected for projected
parameters; dequantised by the inner rule when kept in low precision).

- **H-proxy** (THEORY.md 3.2): H = L + K(S) with K = (1/2a) <m / (sqrt(v) + e), m>, a = (1-beta1)/eta,
  summed over every parameter's Adam state. eta is the step the moments are applied with:
  ``lr * scale`` for projected groups (GaLore's scale multiplies the update), ``lr`` otherwise.
  m, v are the raw (not bias-corrected) moments, matching the autonomous ODE; L is the training
  loss of the step, so H is a noisy proxy, not the ODE's H. Muon's states (``inner="muon"``) add
  K/a = ‖buf‖_*·η·s/(1 − μ) (Lion-𝒦 with 𝒦 = ‖·‖_*, its H divided by its loss weight a), also as ``K_muon``.
- **Projection residual** ||(I - Q Q^T) G|| / ||G|| with Q an orthonormal basis of span(P) (QR), so
  the number means "gradient energy outside the subspace" even when OSD's P drifts off P^T P = I.
  ``residual`` uses the P carried into the step (snapshot before ``step()``), ``residual_after``
  the P after it (for GaLore on refresh steps, the fresh SVD basis of this very G).
- **Subspace drift** 1 - ||Q_new^T Q_old||_F^2 / r between the P before and after the step
  (``drift_step``) and between the previous log step and now (``drift_window``; the trainer logs the step it
  starts from as ``drift_window_since``: after a resume, the resume step).
- **State bytes** numel x element size per category: params, grads, moments, projector,
  projector-optimizer state, other optimizer state.

Coverage (``--coverage``; the running state lives in :mod:`coverage`):

- **Visited dimension** of a projector over a run. With Q_k (d x r) an orthonormal basis of span(P)
  at the k-th log step (d = the projected side: m for ``proj_side == 0``, n for 1), the visit
  matrix is Pi_bar = (1/K) sum_k Q_k Q_k^T (d x d, symmetric PSD, trace r) and the visited
  dimension is its participation ratio d_vis = (tr Pi_bar)^2 / ||Pi_bar||_F^2 = (sum lambda)^2 /
  sum lambda^2 over its eigenvalues. It is r for a subspace that never moves, K r for K mutually
  orthogonal subspaces visited equally often, and at most d: "how many directions the projector
  spent its time in". Scale-free, so K only normalises.
- **Shape of the total update** dW = W_t - W_0 (m x n) of a projected matrix, from its singular
  values s_1 >= s_2 >= ...: stable rank ||dW||_F^2 / ||dW||_2^2 = sum s_i^2 / s_1^2; effective
  rank (Roy & Vetterli 2007) exp(H(p)) with p_i = s_i / sum_j s_j and H(p) = -sum p_i log p_i;
  top-r energy sum_{i<=r} s_i^2 / sum s_i^2, the share of ||dW||_F^2 a rank-r matrix can hold.
  A run whose updates stayed in one r-dimensional subspace has top-r energy 1 and both ranks <= r.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

STATE_CATEGORY = {
    "exp_avg": "moments",
    "exp_avg_sq": "moments",
    "max_exp_avg_sq": "moments",
    "momentum_buffer": "moments",
    "proj": "projector",
    "proj_exp_avg": "projector_optim",
    "proj_exp_avg_sq": "projector_optim",
}
CATEGORIES = ("params", "grads", "moments", "projector", "projector_optim", "other_state")


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes per category; frozen weights (RSO) and persistent buffers count as params."""
    out = dict.fromkeys(CATEGORIES, 0)
    for p in model.parameters():
        out["params"] += p.numel() * p.element_size()
        if p.grad is not None:
            out["grads"] += p.grad.numel() * p.grad.element_size()
    for name, b in model.named_buffers():
        if not name.endswith(("rope_cos", "rope_sin")):  # derived tables, not model state
            out["params"] += b.numel() * b.element_size()
    for st in optimizer.state.values():
        for key, value in st.items():
            if torch.is_tensor(value) and value.ndim > 0:
                out[STATE_CATEGORY.get(key, "other_state")] += value.numel() * value.element_size()
    return out


def _kinetic(m: torch.Tensor, v: torch.Tensor, lr: float, beta1: float, eps: float) -> torch.Tensor:
    """K = (1/2a) <m/(sqrt v + e), m>, through osd_theory.hd when present (one formula, two users)."""
    try:
        from osd_theory.hd.adam import Adam

        return Adam.from_discrete(lr=lr, beta1=beta1, beta2=0.999, eps=eps).kinetic(0.0, (m, v))
    except ImportError:  # pragma: no cover - the core ships adam.py
        a = (1 - beta1) / lr
        return (m * m / (v.sqrt() + eps)).sum() / (2 * a)


def adam_moments(group: dict, st: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, v) as float32: dequantised by the inner rule when the group stores them in low precision (state_dtype)."""
    if group.get("state_dtype", "float32") != "float32":
        from discrete.inner import resolve_inner
        return tuple(resolve_inner(group.get("inner", "adamw"), group["state_dtype"]).tensors(st))
    return st["exp_avg"].float(), st["exp_avg_sq"].float()


def _kinetic_muon(buf: torch.Tensor, eta: float, group: dict) -> torch.Tensor:
    """Muon's K/a = ‖M‖_*/a, M = −buf, a = (1−μ)/(η·s): Lion-𝒦 with 𝒦 = ‖·‖_* (osd_theory.hd.spectral)."""
    from osd_theory import discrete_steps as ds
    from osd_theory.hd.spectral import lr_factor

    mu, h = float(group["momentum"]), eta * lr_factor(group.get("adjust_lr_fn"), tuple(buf.shape))
    system = ds.muon_system(h, mu, bool(group.get("nesterov", True)))
    return system.kinetic(0.0, (-buf,)) / system.loss_weight


def hamiltonian_proxy(loss: float, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """H = L + K over all Adam states (and Muon's, as K/a of Lion-𝒦 with the nuclear norm: ``K_muon``);
    also K of the projected (subspace) states alone."""
    k_all, k_proj, k_muon = [], [], []
    for group in optimizer.param_groups:
        beta1 = group.get("betas", (0.9, 0.999))[0]
        eta = group["lr"] * (group.get("scale", 1.0) if "rank" in group else 1.0)
        if eta <= 0:
            continue
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            if group.get("inner") == "muon" and "momentum_buffer" in st and 0 < group["momentum"] < 1:
                k = _kinetic_muon(st["momentum_buffer"].float(), eta, group)
                k_all.append(k)
                k_muon.append(k)
                if "rank" in group:
                    k_proj.append(k)
            elif "exp_avg" in st and "exp_avg_sq" in st:
                m, v = adam_moments(group, st)
                k = _kinetic(m, v, eta, beta1, group.get("eps", 1e-8))
                k_all.append(k)
                if "rank" in group:
                    k_proj.append(k)
    if not k_all:
        return {}
    kinetic = float(torch.stack(k_all).sum())
    out = {"H": loss + kinetic, "K": kinetic}
    if k_proj:
        out["K_proj"] = float(torch.stack(k_proj).sum())
    if k_muon:
        out["K_muon"] = float(torch.stack(k_muon).sum())
    return out


def orthonormal(P: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (k x r) of span(P) by reduced QR."""
    return torch.linalg.qr(P.float(), mode="reduced")[0]


def projectors(optimizer: torch.optim.Optimizer) -> dict[int, tuple[torch.Tensor, int]]:
    """id(param) -> (P, side) for every parameter whose state holds a projector (a bf16 P as a float32 copy)."""
    from discrete.subspace import working_basis

    out = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            if "proj" in st:
                out[id(p)] = (working_basis(st["proj"]), int(st.get("proj_side", 0)))
    return out


def snapshot(optimizer: torch.optim.Optimizer) -> dict[int, tuple[torch.Tensor, int]]:
    """A detached copy of every projector (taken before ``step()`` on log steps)."""
    return {k: (P.detach().clone(), side) for k, (P, side) in projectors(optimizer).items()}


def _residual(G: torch.Tensor, Q: torch.Tensor, side: int) -> torch.Tensor:
    G = G.float()
    inside = Q @ (Q.T @ G) if side == 0 else (G @ Q) @ Q.T  # (m, n)
    return (G - inside).pow(2).sum()


class KeptGradients:
    """The gradients of one step, kept on the host for the theory metrics of per-layer mode.

    Per-layer mode (discrete.PerLayer) frees every projected gradient in backward, so on a log step this is
    registered with ``PerLayer.watch`` and copies each complete gradient to the CPU (the device peak is
    unchanged; the copy costs one device-to-host transfer of the gradients, on log steps only). The residuals
    are then computed on the device, one matrix at a time, exactly as in the ordinary mode.
    """

    def __init__(self):
        self.grads: dict[int, torch.Tensor] = {}

    def __call__(self, p: torch.Tensor, G: torch.Tensor) -> None:
        self.grads[id(p)] = G.detach().to("cpu", copy=True)

    def grad(self, p: torch.Tensor) -> torch.Tensor | None:
        G = self.grads.get(id(p))
        return None if G is None else G.to(p.device)


def projection_residual(params: list[nn.Parameter], projs: dict[int, tuple[torch.Tensor, int]],
                        kept: KeptGradients | None = None) -> float | None:
    """sqrt(sum ||(I-QQ^T)G||^2 / sum ||G||^2) over projected params with a gradient and a projector.

    G is ``p.grad``, or (per-layer mode, which frees it) the copy in ``kept``.
    """
    num, den = [], []
    for p in params:
        G = p.grad if p.grad is not None or kept is None else kept.grad(p)
        if G is None or id(p) not in projs:
            continue
        P, side = projs[id(p)]
        if (P.shape[0] != p.shape[0]) if side == 0 else (P.shape[0] != p.shape[1]):
            continue  # a projector of another shape (should not happen; never guess)
        num.append(_residual(G, orthonormal(P), side))
        den.append(G.float().pow(2).sum())
    if not num:
        return None
    return float((torch.stack(num).sum() / torch.stack(den).sum().clamp_min(1e-30)).sqrt())


def subspace_drift(old: dict[int, tuple[torch.Tensor, int]], new: dict[int, tuple[torch.Tensor, int]]) -> dict[str, float]:
    """Mean and max over params of 1 - ||Q_new^T Q_old||_F^2 / r (0: same subspace, 1: orthogonal)."""
    drifts = []
    for key, (P_new, side) in new.items():
        if key not in old or old[key][0].shape != P_new.shape:
            continue
        Q_new, Q_old = orthonormal(P_new), orthonormal(old[key][0])
        drifts.append((1 - (Q_new.T @ Q_old).pow(2).sum() / Q_new.shape[1]).clamp(0, 1))  # rounding
    if not drifts:
        return {}
    d = torch.stack(drifts)
    return {"mean": float(d.mean()), "max": float(d.max())}


def orthogonality_error(projs: dict[int, tuple[torch.Tensor, int]]) -> float | None:
    """max over params of ||P^T P - I||_F (0 for GaLore's SVD bases; OSD's P may drift with lambda=0)."""
    errs = []
    for P, _ in projs.values():
        P = P.float()
        errs.append((P.T @ P - torch.eye(P.shape[1], device=P.device)).norm())
    return float(torch.stack(errs).max()) if errs else None


# -----------------------------------------------------------------------------
# coverage


def add_visit(pi: torch.Tensor | None, P: torch.Tensor) -> torch.Tensor:
    """Pi + Q Q^T (d x d, float32), Q an orthonormal basis of span(P) (P: d x r); Pi None starts at 0."""
    Q = orthonormal(P)
    visit = Q @ Q.T
    return visit if pi is None else pi.add_(visit)


def participation_ratio(pi: torch.Tensor) -> float:
    """(tr Pi)^2 / ||Pi||_F^2 of a symmetric PSD matrix: its number of effectively used dimensions."""
    pi = pi.double()
    return float(torch.diagonal(pi).sum() ** 2 / pi.pow(2).sum())


def visited_dim(pis: list[torch.Tensor]) -> dict[str, float]:
    """``visited_dim`` (mean over matrices), ``visited_dim_min`` and ``_max`` of the visit matrices."""
    if not pis:
        return {}
    d = [participation_ratio(pi) for pi in pis]
    return {"visited_dim": sum(d) / len(d), "visited_dim_min": min(d), "visited_dim_max": max(d)}


def spectrum_shape(s: torch.Tensor, rank: int) -> dict[str, float] | None:
    """Stable rank, effective rank and top-``rank`` energy of singular values ``s`` (None if all zero)."""
    s = s.double().sort(descending=True).values
    energy = s.pow(2)
    if energy.sum() <= 0:
        return None
    p = s / s.sum()
    p = p[p > 0]  # 0 log 0 = 0
    return {"stable_rank": float(energy.sum() / energy[0]),
            "eff_rank": float(torch.exp(-(p * p.log()).sum())),
            "top_r_energy": float(energy[:rank].sum() / energy.sum())}


def update_shape(deltas: Iterable[torch.Tensor], rank: int) -> dict[str, float]:
    """``update_stable_rank``, ``update_eff_rank``, ``update_top_r_energy``: means over the matrices dW.

    Singular values in float64, so a tiny update of a large weight is not rounding noise; matrices
    that did not move (dW = 0) have no shape and are left out.
    """
    shapes = [sh for dW in deltas if (sh := spectrum_shape(torch.linalg.svdvals(dW.double()), rank)) is not None]
    if not shapes:
        return {}
    return {f"update_{k}": sum(sh[k] for sh in shapes) / len(shapes) for k in shapes[0]}
