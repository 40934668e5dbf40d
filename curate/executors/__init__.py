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

Two more parts of the protocol:

- ``idle_s``: when given, the iterator also yields ``None`` after every ``idle_s`` seconds in which no
  result came, so the caller can do its periodic work (commit what finished) while items hang.
- Crashes: where an item can kill the process running it (a decoder crash, the out-of-memory killer),
  the executor finds which item did (one that kills it alone in flight, as often as the executor's
  policy allows) and yields it with ``task.crashed(item, reason)``, a result the task builds; every
  other item in flight at the time is run again, never failed. Items the executor could not finish
  (its driver killed) are not yielded: the caller treats them as not done.

An executor reads and writes nothing itself; the task does. On failure: :class:`TaskError` from the
executor's module when a task lets an exception escape, or cannot be set up where it runs.
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


from curate.executors import local  # noqa: E402,F401  (registers 'local')
