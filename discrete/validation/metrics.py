"""Theory-linked metrics computed from the optimizer's real state, on log steps only.

Contract with ``discrete`` (per projected parameter): ``state["proj"]`` is P (float32; m x r when
``proj_side == 0``, the left side, G_hat = P^T G; n x r when ``proj_side == 1``, G_hat = G P), and
``exp_avg`` / ``exp_avg_sq`` are the Adam moments (projected for projected parameters).

- **H-proxy** (THEORY.md 3.2): H = L + K(S) with K = (1/2a) <m / (sqrt(v) + e), m>, a = (1-beta1)/eta,
  summed over every parameter's Adam state. eta is the step the moments are applied with:
  ``lr * scale`` for projected groups (GaLore's scale multiplies the update), ``lr`` otherwise.
  m, v are the raw (not bias-corrected) moments, matching the autonomous ODE; L is the training
  loss of the step, so H is a noisy proxy, not the ODE's H.
- **Projection residual** ||(I - Q Q^T) G|| / ||G|| with Q an orthonormal basis of span(P) (QR), so
  the number means "gradient energy outside the subspace" even when OSD's P drifts off P^T P = I.
  ``residual`` uses the P carried into the step (snapshot before ``step()``), ``residual_after``
  the P after it (for GaLore on refresh steps, the fresh SVD basis of this very G).
- **Subspace drift** 1 - ||Q_new^T Q_old||_F^2 / r between the P before and after the step
  (``drift_step``) and between the previous log step and now (``drift_window``).
- **State bytes** numel x element size per category: params, grads, moments, projector,
  projector-optimizer state, other optimizer state.
"""
from __future__ import annotations

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


def hamiltonian_proxy(loss: float, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """H = L + K over all Adam states; also K of the projected (subspace) states alone."""
    k_all, k_proj = [], []
    for group in optimizer.param_groups:
        beta1 = group.get("betas", (0.9, 0.999))[0]
        eta = group["lr"] * (group.get("scale", 1.0) if "rank" in group else 1.0)
        if eta <= 0:
            continue
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            if "exp_avg" in st and "exp_avg_sq" in st:
                k = _kinetic(st["exp_avg"].float(), st["exp_avg_sq"].float(), eta, beta1, group.get("eps", 1e-8))
                k_all.append(k)
                if "rank" in group:
                    k_proj.append(k)
    if not k_all:
        return {}
    kinetic = float(torch.stack(k_all).sum())
    out = {"H": loss + kinetic, "K": kinetic}
    if k_proj:
        out["K_proj"] = float(torch.stack(k_proj).sum())
    return out


def orthonormal(P: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (k x r) of span(P) by reduced QR."""
    return torch.linalg.qr(P.float(), mode="reduced")[0]


def projectors(optimizer: torch.optim.Optimizer) -> dict[int, tuple[torch.Tensor, int]]:
    """id(param) -> (P, side) for every parameter whose state holds a projector."""
    out = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            if "proj" in st:
                out[id(p)] = (st["proj"], int(st.get("proj_side", 0)))
    return out


def snapshot(optimizer: torch.optim.Optimizer) -> dict[int, tuple[torch.Tensor, int]]:
    """A detached copy of every projector (taken before ``step()`` on log steps)."""
    return {k: (P.detach().clone(), side) for k, (P, side) in projectors(optimizer).items()}


def _residual(G: torch.Tensor, Q: torch.Tensor, side: int) -> torch.Tensor:
    G = G.float()
    inside = Q @ (Q.T @ G) if side == 0 else (G @ Q) @ Q.T  # (m, n)
    return (G - inside).pow(2).sum()


def projection_residual(params: list[nn.Parameter], projs: dict[int, tuple[torch.Tensor, int]]) -> float | None:
    """sqrt(sum ||(I-QQ^T)G||^2 / sum ||G||^2) over projected params with a grad and a projector."""
    num, den = [], []
    for p in params:
        if p.grad is None or id(p) not in projs:
            continue
        P, side = projs[id(p)]
        if (P.shape[0] != p.shape[0]) if side == 0 else (P.shape[0] != p.shape[1]):
            continue  # a projector of another shape (should not happen; never guess)
        num.append(_residual(p.grad, orthonormal(P), side))
        den.append(p.grad.float().pow(2).sum())
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
