"""FSDP2 (DTensor) parameters (stub)."""
from __future__ import annotations

import sys


def is_dtensor(t) -> bool:
    """True for a DTensor (without importing torch.distributed.tensor: none exists unless it was imported)."""
    mod = sys.modules.get("torch.distributed.tensor")
    return mod is not None and isinstance(t, mod.DTensor)
