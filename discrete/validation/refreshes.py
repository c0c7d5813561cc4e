"""``--log-refresh``: which steps refreshed (GaLore's SVD, RSO's resample) a projector, for claim C9.

A subspace optimizer of :mod:`discrete` counts, in ``optimizer.diagnostics["refreshes"]``, the
projectors that took a new basis in its last ``step()`` (its first step included). The trainer
writes a train record at every such step, with ``refreshed`` = that count, so a quantity "right
after a refresh" (the projection residual ``residual_after`` with the new basis) is in the log
for every refresh, not only where a refresh happens to fall on a ``--log-every`` step.
torch.optim.AdamW has no projectors: its count is 0.
"""
from __future__ import annotations

import torch


def refreshed(optimizer: torch.optim.Optimizer) -> int:
    """Projectors that took a new basis in the optimizer's last step (0 when it keeps no such count)."""
    return int(getattr(optimizer, "diagnostics", {}).get("refreshes", 0) or 0)
