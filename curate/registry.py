"""One small registry type for every kind of plug-in: stages, image sources, crowd backends,
aggregators, export writers, benchmark modes and executors.

A plug-in is a class with a class-level ``name`` (its YAML ``type:`` value and registry key), a
one-line ``description`` and, for configurable plug-ins, a pydantic ``Config`` class beside it whose
``type`` field is ``Literal[name]``. Registering a second plug-in under a taken name is an error;
asking for an unknown name raises :class:`KeyError` listing the names the registry holds.
Plug-in modules must import lightly at module level (no torch, cleanlab or pandas): the pipeline
model is assembled from the registries, and ``curate validate`` / ``stages`` / ``status`` import them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Generic, TypeVar

T = TypeVar("T")


class Plugin:
    """Optional base of a configurable plug-in: class-level ``name``/``description``/``Config``, and the
    validated config section it was created from in ``self.config``."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[Any]]

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()


class Registry(Generic[T]):
    """Ordered name -> plug-in class; registration order is kept (it is the stage order)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, plugin: T) -> T:
        """Register ``plugin`` under its ``name``; usable as a class decorator."""
        name = getattr(plugin, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} {plugin!r} has no 'name'")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = plugin
        return plugin

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self._items) or 'none'}") from None

    def names(self) -> list[str]:
        return list(self._items)

    def describe(self) -> list[tuple[str, str]]:
        return [(name, getattr(p, "description", "")) for name, p in self._items.items()]

    def configs(self) -> list[type[Any]]:
        """The plug-ins' config classes, for the pipeline model's discriminated unions."""
        return [p.Config for p in self._items.values()]  # type: ignore[attr-defined]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)
