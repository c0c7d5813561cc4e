"""GaLore (arXiv:2403.03507; THEORY.md §5), galore-torch 1.0's update (its names: :mod:`discrete.galore_torch`).

Per projected matrix, at step t (counted from 0, tested *before* the increment as the reference):

.. math::
    P_t = \\mathrm{SVD}_r(G_t)\\ \\text{if}\\ t \\bmod T = 0\\ \\text{else}\\ P_{t-1},\\qquad
    R_t = P_t^\\top G_t,\\qquad N_t = \\mathrm{Adam}(R_t),\\qquad W \\leftarrow W - η\\,α\\,P_tN_t

with Adam bias-corrected and ε placed as in galore-torch/HF (``√v + ε``, step lr·√c₂/c₁).
Group keys as galore-torch: ``rank``, ``update_proj_gap`` (T), ``scale`` (α), ``proj_type``
∈ {std, reverse_std, left, right} (``full`` is two-sided and not offered). Ours: ``switch`` ∈
{keep (galore-torch), reset, rotate, rotate_m} and ``inner`` (``adamw``, ``lion``, ``sgd``). ``reset`` zeroes
the moments but keeps the step count, so bias correction does not restart with them.

Differences from galore-torch, on purpose: weight decay is torch's (W ← (1−lrλ)W *before* the
update; galore-torch decays the updated W after it), so the steps match for λ = 0;
``eps`` defaults to torch's 1e-8 (galore-torch: 1e-6; pass ``eps=1e-6`` to take its steps, and
galore-torch's ``correct_bias`` / ``no_deprecation_warning`` are accepted);
the side is derived from the shape once and stored (``reverse_std`` on square matrices is
consistent, cf. modelscope/ms-swift#10146); a refresh is **skipped** (old basis kept) when G is
zero or non-finite or the SVD fails, and no basis is ever built from zeros.
Same steps are not the same trajectory once P is refreshed: round-off before a refresh can pick
another top-r basis (measured in tests/discrete/test_galore_torch_dropin.py).

Diagnostics (``opt.diagnostics`` after each step): ``refreshes`` (count), ``refresh_skipped``,
``overlap`` {param index: ‖P_newᵀP_old‖²_F/r} at each refresh.
"""
from __future__ import annotations

from typing import ClassVar

from discrete.base import SubspaceOptimizer


class GaLore(SubspaceOptimizer):
    eps_placement: ClassVar[str] = "hf"   # galore-torch's AdamW is HF's: ε added to √v, not √v̂
    preset: ClassVar[dict] = {"projection": "periodic_svd", "switch": "keep"}
