"""Registries of techniques found by module: one file per technique registers itself on import.

Adding a technique is one new file in the registry's package (and its test); nothing else lists it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, from every module of `package` (imported on first lookup)."""

    def __init__(self, what: str, package: str, same: Callable[[T, T], bool] = lambda a, b: a == b) -> None:
        self.what, self.package, self._same = what, package, same
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        """Register `entry`; a second, different entry under one name is a programming error."""
        if name in self._entries and not self._same(self._entries[name], entry):
            raise RuntimeError(f"two {self.what}s are named {name!r}")
        self._entries[name] = entry

    def entry(self, name: str) -> T:
        """The entry registered as `name` so far, without importing the package (for a module that
        extends an entry another module it imports has registered)."""
        return self._entries[name]

    def all(self) -> dict[str, T]:
        """Every entry, after importing each module of the package (they register themselves)."""
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{info.name}")
        return dict(self._entries)
