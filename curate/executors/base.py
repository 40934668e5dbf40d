"""The executor contract (:class:`Task`, :class:`Executor`, described in the package's docstring), the
registry :data:`EXECUTORS`, which every executor module registers itself in (the package's ``__init__``
imports them all), and :func:`create_executor`.

Reads and writes nothing. Failure: an unknown ``type`` raises ``KeyError`` naming the known executors
(the pipeline model refuses it earlier, as a ConfigError).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Protocol

from curate.registry import Registry
from curate.sections import Section


class Task(Protocol):
    def setup(self, shards: int) -> None:
        """Prepare where the task runs (sessions, stores); ``shards``: how many copies run side by side."""
        ...

    def fetch(self, item: Any) -> Any:
        """The waiting part of one item (I/O); its return value goes to :meth:`process`."""
        ...

    def process(self, fetched: Any) -> Any:
        """The computing part of one item; returns the item's result."""
        ...

    def crashed(self, item: Any, reason: str) -> Any:
        """The result of an item whose processing kept killing the process running it; ``reason`` says how."""
        ...


class Executor(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[Section]]

    def map_unordered(self, task: Task, items: Iterable[Any], workers: int,
                      idle_s: float | None = None) -> Iterator[tuple[Any, Any] | None]: ...


EXECUTORS: Registry[Any] = Registry("executor")


def create_executor(config: Any) -> Executor:
    return EXECUTORS.get(config.type)(config)
