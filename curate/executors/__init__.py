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
The protocol classes and the registry, :data:`EXECUTORS`, live in :mod:`.base`, which the executor modules
import; importing this package registers them all.
"""

from curate.executors import local  # noqa: F401  (registers 'local')
from curate.executors.base import EXECUTORS, Executor, Task, create_executor

__all__ = ["EXECUTORS", "Executor", "Task", "create_executor"]
