"""The executors by name (discrete/step/__init__.py says what each is for)."""
from __future__ import annotations

from types import ModuleType

from discrete.step import batched, sharded, single
from osd_theory.registry import Registry

EXECUTORS: Registry[ModuleType] = Registry("executor")
EXECUTORS.add("single", single)
EXECUTORS.add("batched", batched)
EXECUTORS.add("sharded", sharded)
