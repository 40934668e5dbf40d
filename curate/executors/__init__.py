"""Executors: where per-item work runs (downloads today; embedding later). One module each, registered
by name and chosen in YAML as ``run.executor``.

The protocol: ``map_unordered(task, items, workers)`` yields ``(item, result)`` pairs as soon as each
finishes, in completion order, with a bounded number of items in flight; one slow item never holds
back the others (no per-batch barrier). A :class:`Task` is picklable: an executor may run it in other
processes (or machines), calling ``setup(shards)`` once where it runs. Each item goes through two
phases: ``fetch(item)``, the waiting part (network, disk), which ``workers`` threads run side by side,
then ``process(fetched)``, the computing part (decode, resize, encode), which a few threads per core run.
A slot that waits on the network is freed as soon as the bytes are in, not held while they are
decoded, so ``workers`` is the number of downloads in flight, as in img2dataset. Both phases must turn
their own failures into results: an exception escaping them is a bug and stops the iteration. The
driver alone writes the catalog.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Protocol

from curate.config import Section
from curate.registry import Registry


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


class Executor(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[Section]]

    def map_unordered(self, task: Task, items: Iterable[Any], workers: int) -> Iterator[tuple[Any, Any]]: ...


EXECUTORS: Registry[Any] = Registry("executor")


def create_executor(config: Any) -> Executor:
    return EXECUTORS.get(config.type)(config)


from curate.executors import local  # noqa: E402,F401  (registers 'local')
