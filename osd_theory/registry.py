"""Registries: choices are data, not if/elif chains on strings.

A :class:`Registry` maps a name to a constructor. Looking up an unknown name raises a
:class:`~osd_theory.errors.UserError` that lists the valid names, so every command-line
flag and constructor argument that takes a name fails the same, helpful way.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from osd_theory.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of constructors (``name -> callable``).

    Example:
        >>> REG = Registry("problem")
        >>> @REG.register("unit")
        ... def make_unit():
        ...     return 1
        >>> REG.get("unit")()
        1
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} {name!r}; expected one of {sorted(self._items)}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)
