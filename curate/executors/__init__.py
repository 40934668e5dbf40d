"""Executors: where per-item work runs (downloads today; embedding later). One module each, registered
by name and chosen in YAML as ``run.executor``.

The protocol: ``map_unordered(fn, items, workers)`` yields ``(item, result)`` pairs as soon as each
finishes, in completion order, with a bounded number of items in flight; one slow item never holds
back the others (no per-batch barrier). ``fn`` must turn its own failures into results: an exception
escaping ``fn`` is a bug and stops the iteration. The driver alone writes the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Protocol, TypeVar

from curate.config import Section
from curate.registry import Registry

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class Executor(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[Section]]

    def map_unordered(self, fn: Callable[[I], R], items: Iterable[I], workers: int) -> Iterator[tuple[I, R]]: ...


EXECUTORS: Registry[Any] = Registry("executor")


def create_executor(config: Any) -> Executor:
    return EXECUTORS.get(config.type)(config)


from curate.executors import local  # noqa: E402,F401  (registers 'local')
