"""Discrete subspace optimizers built on the osd_theory core (torch.optim API).

``OPTIMIZERS`` maps a name to a class: ``osd``, ``galore``, ``rso``, ``adamw``, ``lion``, ``sgd``, ``muon``.
:class:`PerLayer` puts any of them in per-layer mode (docs/scaling.md).
``GaLoreAdamW`` (and galore-torch's other names, :mod:`discrete.galore_torch`) is a drop-in for galore-torch.
Importing this package imports only torch and osd_theory (never ``discrete.validation``).
"""
from __future__ import annotations

from discrete.full_rank import AdamW, Lion, Muon, SGDMomentum
from discrete.galore import GaLore
from discrete.galore_torch import GaLoreAdafactor, GaLoreAdamW, GaLoreAdamW8bit
from discrete.osd import OnlineSubspaceDescent
from discrete.per_layer import PerLayer
from discrete.rso import RSO
from osd_theory.registry import Registry


class _OptimizerRegistry(Registry):
    """A Registry that also answers ``OPTIMIZERS[name]`` (used by discrete.validation)."""

    def __getitem__(self, name: str):
        return self.get(name)


OPTIMIZERS: _OptimizerRegistry = _OptimizerRegistry("optimizer")
for _name, _cls in (("osd", OnlineSubspaceDescent), ("galore", GaLore), ("rso", RSO),
                    ("adamw", AdamW), ("lion", Lion), ("sgd", SGDMomentum), ("muon", Muon)):
    OPTIMIZERS.add(_name, _cls)

__all__ = ["OPTIMIZERS", "OnlineSubspaceDescent", "GaLore", "RSO", "AdamW", "Lion", "SGDMomentum", "Muon", "PerLayer",
           "GaLoreAdamW", "GaLoreAdamW8bit", "GaLoreAdafactor"]
