"""Online Subspace Descent (OSD, arXiv:2408.12857, Algorithm 1; THEORY.md §4).

For t = 0, 1, … and each projected matrix W (m×n) with gradient G_t:

.. math::
    (\\hat Δ_t, \\hat S_t) &= \\mathrm{Opt}_W(P_t^\\top G_t, \\hat S_{t-1}),\\qquad
        W_{t+1} = (1 - ε_tλ^W) W_t + ε_t\\,\\mathrm{scale}\\;P_t\\hat Δ_t \\\\
    (Δ^P_t, S^P_t) &= \\mathrm{Opt}_P(\\nabla_P\\mathcal L_{G_t}(P_t), S^P_{t-1}),\\qquad
        P_{t+1} = P_t + αε_t(Δ^P_t - λ^P P_t)

with the online-PCA loss 𝓛_G(P) = ‖PPᵀG̃ − G̃‖² + λ‖PᵀP − I‖², G̃ = G/‖G‖ (Eq. (6)), its
gradient in the two-pass closed form reusing Ĝ (:func:`osd_theory.kernels.online_pca_grad`).
Both steps use P_t, so they could run in parallel. The subspace state Ŝ is **never** reset or
rotated when P changes (§4.2). ε_t is the *current* group lr, so one scheduler drives W and P
(ε^P = α·ε). With Opt_W = Adam without bias correction this is the Euler step of the
projected Adam HD system (THEORY.md §3.2), whose H does not depend on P.

Symbols → group keys: r ``rank``, α ``alpha`` (default 5, §4.3), λ ``pca_lambda`` (0.1),
λ^P ``proj_weight_decay`` (0), λ^W ``weight_decay``, Opt_W ``inner`` (``adamw``, ``lion``,
``sgd``), Opt_P ``proj_optimizer`` (``adam``, ``sgd``, ``lion``, ``gd``: stateless, so OSD's
state equals GaLore's) with ``proj_betas``,
``proj_eps``, ``proj_momentum``; P₀ ``proj_init`` (``svd`` of the first non-zero gradient, or
``random``); side ``proj_type`` (GaLore's keys; ``update_proj_gap`` is accepted and unused).
P and all moments are float32.

Departures from the reference code (THEORY.md §4.4), all deliberate: λ is used (the reference
never reads it); P's optimizer has no weight decay by default (reference: 0.01); the sign of
Lion is taken in the subspace (the paper's Ex. 3.1), not after back-projection; α is explicit.

Example:
    >>> import torch
    >>> W = torch.nn.Parameter(torch.randn(8, 6))
    >>> opt = OnlineSubspaceDescent([{"params": [W], "rank": 2}], lr=1e-2)
    >>> (W ** 2).sum().backward(); _ = opt.step()
    >>> tuple(opt.state[W]["proj"].shape), opt.state[W]["proj_side"]
    ((6, 2), 1)
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from discrete import checks
from discrete.base import SubspaceOptimizer
from discrete.fused import PCAHyper
from discrete.inner import PROJ_OPTIMIZERS, Hyper
from discrete.projection import PROJ_INIT
from osd_theory.kernels import online_pca_grad


class OnlineSubspaceDescent(SubspaceOptimizer):
    proj_keys: ClassVar[dict] = {
        **checks.GALORE_KEYS,
        "alpha": (5.0, checks.nonneg("alpha")),
        "pca_lambda": (0.1, checks.nonneg("pca_lambda")),
        "proj_init": ("svd", checks.proj_init),
        "proj_optimizer": ("adam", checks.proj_optimizer),
        "proj_betas": ((0.9, 0.999), checks.betas),
        "proj_eps": (1e-8, checks.nonneg("proj_eps")),
        "proj_momentum": (0.0, checks.momentum),
        "proj_weight_decay": (0.0, checks.nonneg("proj_weight_decay")),
        "seed": (0, checks.seed),
        "matmul_precision": ("highest", checks.matmul_precision),
    }

    def _fused_ok(self, group):
        return group["inner"] == "adamw" and group["proj_optimizer"] in ("adam", "gd")

    def _pca_hyper(self, group, hp):
        b1, b2 = group["proj_betas"]
        return PCAHyper(alpha=float(group["alpha"]), pca_lambda=float(group["pca_lambda"]),
                        weight_decay=float(group["proj_weight_decay"]), beta1=float(b1), beta2=float(b2),
                        eps=float(group["proj_eps"]), optimizer=group["proj_optimizer"])

    def _init_proj(self, state, G, group, index):
        PROJ_INIT.get(group["proj_init"])(state, G, group["rank"])
        state.update(PROJ_OPTIMIZERS.get(group["proj_optimizer"]).init_state(state["proj"], prefix="proj_"))

    def _before_project(self, state, G, group, hp, inner, index):
        if state["last_refresh_step"] < 0:          # P₀ still a placeholder: G was zero until now
            PROJ_INIT.get(group["proj_init"])(state, G, group["rank"])

    def _p_hyper(self, group: dict, hp: Hyper) -> Hyper:
        b1, b2 = group["proj_betas"]
        return Hyper(lr=group["alpha"] * hp.lr, beta1=float(b1), beta2=float(b2), eps=float(group["proj_eps"]),
                     momentum=float(group["proj_momentum"]))

    def _after_update(self, state, G, G_hat, U, group, hp):
        P, side = state["proj"], state["proj_side"]
        grad_P = online_pca_grad(P, G, group["pca_lambda"], side, G_hat=G_hat)   # ∇_P 𝓛_G(P_t), Ĝ reused
        hpP = self._p_hyper(group, hp)
        U_P = PROJ_OPTIMIZERS.get(group["proj_optimizer"]).step(state, grad_P, hpP, int(state["step"]), prefix="proj_")
        P.mul_(1.0 - hpP.lr * group["proj_weight_decay"])                        # P ← P + ε^P(Δ^P − λ^P P)
        P.add_(U_P, alpha=hpP.lr)
