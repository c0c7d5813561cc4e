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
``random``); side ``proj_type`` (GaLore's key). ``projection`` replaces the online-PCA rule by any
other (then OSD is just these defaults). ``update_proj_gap`` T and ``switch`` act on rules that
jump, e.g. ``projection="online_pca_refresh"``: this flow every step plus GaLore's jump to the
top-r singular basis of G_t every T steps (``switch`` = what the jump does to Ŝ, ``keep`` by
default; Opt_P's moments are kept: at the jump basis the field is round-off, which fresh Adam moments
would normalise into a full step); with the default ``online_pca`` (no jumps) they are unused.
P and all moments are float32 by default (``state_dtype`` and ``proj_state_dtype`` keep the moments in bf16
or 8 bits, ``proj_dtype="bf16"`` keeps P in bf16; docs/scaling.md).

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

from discrete.base import SubspaceOptimizer


class OnlineSubspaceDescent(SubspaceOptimizer):
    preset: ClassVar[dict] = {"projection": "online_pca", "alpha": 5.0}
