"""``local`` executor: this machine's cores. ``processes`` worker processes (one per core by default),
each running its share of the ``workers`` fetch threads and one compute thread per core it stands for;
with ``processes: 0`` the same threads run in this process.

Downloads are I/O-bound per item but CPU-bound in total (HTTP handling, decoding, resizing, encoding):
one process's GIL caps a two-core machine at about half its rate, so the work is spread over processes,
each fed from one shared queue (no shards fixed in advance, no barrier: a slow item holds one thread).
Within a process, fetch threads hand what they fetched to the compute threads through a short queue, so
a fetch slot is free again as soon as its bytes are in (``workers`` = downloads in flight), and the
computing is not spread over dozens of threads fighting for one GIL.
Results come back through one queue in completion order; at most ``workers * IN_FLIGHT_PER_WORKER``
items are in flight; while none comes, the iterator yields ``None`` every ``idle_s`` when asked to.
Worker processes are started with ``spawn`` (the caller's threads may hold locks a forked child would
inherit); a task whose ``setup`` fails there stops the iteration with a :class:`TaskError`.

Restart policy: if a worker process dies (a decoder crash, the out-of-memory killer), it may have held a
queue's lock, so all workers and both queues are replaced, and the rest of the work goes on. Which item
killed it is unknown (the processes share one queue), so every item then in flight is a suspect. Once
the other items are done, the suspects run again one at a time, each alone in flight, so a death is the
item's own: an innocent one yields its result; one that kills a worker alone ``max_crashes`` times is
yielded with ``task.crashed(item, reason)`` (``worker process died (exit code -9, SIGKILL) while
processing it, 2 times``), so no later run crashes on it again. A driver that is killed itself leaves
the items in flight unreported (pending for the next run).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, Literal

from pydantic import Field

from curate.executors.base import EXECUTORS, Task
from curate.registry import Plugin
from curate.sections import Section

log = logging.getLogger(__name__)
IN_FLIGHT_PER_WORKER = 2
CHECK_EVERY = 100  # results between two looks for a dead worker while results flow
WAIT_S = 1.0  # the longest wait for a result before looking for a dead worker
_DONE = None  # sentinel: a thread stops
_SETUP = -1  # the key of a worker's report that ``task.setup`` failed


class LocalExecutorConfig(Section):
    type: Literal["local"] = "local"
    processes: int | None = Field(None, ge=0, description="worker processes; null = one per core, 0 = threads here")
    max_crashes: int = Field(2, ge=1, description="an item that kills its worker process this many times, alone "
                                                   "in flight, is given up (failed with the reason)")


@EXECUTORS.register
class LocalExecutor(Plugin):
    name = "local"
    description = "this machine: worker processes (one per core) running fetch and compute threads"
    Config = LocalExecutorConfig

    def processes(self) -> int:
        wanted = self.config.processes
        return (os.cpu_count() or 1) if wanted is None else wanted

    def map_unordered(self, task: Task, items: Iterable[Any], workers: int,
                      idle_s: float | None = None) -> Iterator[tuple[Any, Any] | None]:
        processes = min(self.processes(), workers)
        cores = os.cpu_count() or 1
        if processes <= 1:
            start: Callable[[], Any] = lambda: _Threads(task, workers, cores)  # noqa: E731
        else:
            fetchers, computers = -(-workers // processes), max(1, cores // processes)
            start = lambda: _Processes(task, processes, fetchers, computers)  # noqa: E731
        driver = _Driver(start, task, workers * IN_FLIGHT_PER_WORKER, self.config.max_crashes)
        return driver.results(items, idle_s)


class TaskError(RuntimeError):
    """A task let an exception escape (a bug): the iteration stops with the worker's traceback."""


class _Failed:
    def __init__(self, exc: BaseException):
        self.text = "".join(traceback.format_exception(exc))


# ---------------------------------------------------------------------- the threads of one worker
def _serve(task: Task, inbox: Any, outbox: Any, fetchers: int, computers: int) -> None:
    """Fetch threads take items from ``inbox``; compute threads put results in ``outbox``. Returns once
    every fetch thread has taken a stop sentinel and the compute threads have finished what was fetched."""
    fetched: queue.Queue = queue.Queue(maxsize=fetchers)

    def fetch() -> None:
        while (job := inbox.get()) is not _DONE:
            key, item = job
            try:
                fetched.put((key, task.fetch(item)))
            except BaseException as exc:  # noqa: BLE001 (reported to the driver, which stops)
                outbox.put((key, _Failed(exc)))

    def compute() -> None:
        while (job := fetched.get()) is not _DONE:
            key, data = job
            try:
                outbox.put((key, task.process(data)))
            except BaseException as exc:  # noqa: BLE001
                outbox.put((key, _Failed(exc)))

    fetch_threads = _start(fetch, fetchers, "curate-fetch")
    compute_threads = _start(compute, computers, "curate-compute")
    for thread in fetch_threads:
        thread.join()
    for _ in compute_threads:
        fetched.put(_DONE)
    for thread in compute_threads:
        thread.join()


def _start(target: Callable[[], None], n: int, name: str) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, name=f"{name}-{i}", daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    return threads


class _Threads:
    """The worker's threads in this process (``processes: 0``)."""

    def __init__(self, task: Task, fetchers: int, computers: int):
        task.setup(1)
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.fetchers = fetchers
        self.thread = threading.Thread(target=_serve, args=(task, self.inbox, self.outbox, fetchers, computers),
                                       name="curate-worker", daemon=True)
        self.thread.start()

    def dead(self) -> list[Any]:
        return []

    def stop(self, graceful: bool) -> None:
        """Drop what has not started; the threads end after their current item (nobody waits for them)."""
        while True:
            try:
                self.inbox.get_nowait()
            except queue.Empty:
                break
        for _ in range(self.fetchers):
            self.inbox.put(_DONE)
        if graceful:
            self.thread.join(timeout=10)


# ---------------------------------------------------------------------- worker processes
def _worker(task: Task, inbox: Any, outbox: Any, fetchers: int, computers: int, shards: int) -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:  # a killed driver (SIGKILL) must not leave its workers waiting for ever
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    try:
        task.setup(shards)
    except BaseException as exc:  # noqa: BLE001 (reported to the driver, which stops)
        outbox.put((_SETUP, _Failed(exc)))
        return
    _serve(task, inbox, outbox, fetchers, computers)


def _exit_with(parent: Any) -> None:
    parent.join()
    os._exit(0)


class _Processes:
    """Worker processes around a shared inbox and outbox."""

    def __init__(self, task: Task, processes: int, fetchers: int, computers: int):
        self.context = multiprocessing.get_context("spawn")
        self.inbox, self.outbox = self.context.Queue(), self.context.Queue()
        self.args = (task, self.inbox, self.outbox, fetchers, computers, processes)
        self.fetchers = fetchers
        self.procs = [self._start() for _ in range(processes)]

    def _start(self) -> Any:
        proc = self.context.Process(target=_worker, args=self.args, daemon=True)
        proc.start()
        return proc

    def dead(self) -> list[Any]:
        return [p for p in self.procs if not p.is_alive()]

    def stop(self, graceful: bool) -> None:
        if graceful:
            for _ in range(len(self.procs) * self.fetchers):
                self.inbox.put(_DONE)
            for proc in self.procs:
                proc.join(timeout=10)
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        self.inbox.cancel_join_thread()
        self.outbox.cancel_join_thread()


# ---------------------------------------------------------------------- the driver
class _Driver:
    """Feeds a pool of workers, yields its results, and replaces it when a worker process dies; the items
    then in flight are suspects, run again at the end one at a time (see the module's restart policy)."""

    def __init__(self, start: Callable[[], Any], task: Task, in_flight: int, max_crashes: int):
        self.start, self.task = start, task
        self.in_flight, self.max_crashes = in_flight, max_crashes
        self.pending: dict[int, Any] = {}  # key -> item, in flight
        self.suspects: dict[int, Any] = {}  # key -> item, in flight when a worker died
        self.crashes: Counter[int] = Counter()  # key -> workers it killed while alone in flight
        self.pool: Any = None

    def results(self, items: Iterable[Any], idle_s: float | None) -> Iterator[tuple[Any, Any] | None]:
        self.pool = self.start()
        graceful = False
        try:
            yield from self._run(enumerate(items), self.in_flight, idle_s)
            yield from self._run(self._each_suspect(), 1, idle_s)
            graceful = True
        finally:
            self.pool.stop(graceful)

    def _each_suspect(self) -> Iterator[tuple[int, Any]]:
        while self.suspects:
            key = next(iter(self.suspects))
            yield key, self.suspects.pop(key)

    def _run(self, source: Iterator[tuple[int, Any]], room: int,
             idle_s: float | None) -> Iterator[tuple[Any, Any] | None]:
        """Keep ``room`` items of ``source`` in flight until it is empty; yield each result as it comes, and
        None every ``idle_s`` without one."""
        self._feed(source, room)
        received, quiet_since = 0, time.monotonic()
        while self.pending:
            try:
                key, result = self.pool.outbox.get(timeout=min(WAIT_S, idle_s or WAIT_S))
            except queue.Empty:
                key = None
            if key in self.pending or key == _SETUP:
                received, quiet_since = received + 1, time.monotonic()
                yield self._result(key, result)
            elif idle_s is not None and time.monotonic() - quiet_since >= idle_s:
                quiet_since = time.monotonic()
                yield None
            if (key is None or received % CHECK_EVERY == 0) and (dead := self.pool.dead()):
                yield from self._replace(dead, alone=room == 1)
            self._feed(source, room - len(self.pending))

    def _feed(self, source: Iterator[tuple[int, Any]], n: int) -> None:
        for key, item in islice(source, max(n, 0)):
            self.pending[key] = item
            self.pool.inbox.put((key, item))

    def _result(self, key: int, result: Any) -> tuple[Any, Any]:
        if key == _SETUP:
            raise TaskError(f"the task could not be set up in a worker process:\n{result.text}")
        item = self.pending.pop(key)
        if isinstance(result, _Failed):
            raise TaskError(f"a task failed on {item!r}:\n{result.text}")
        return item, result

    def _replace(self, dead: list[Any], alone: bool) -> list[tuple[Any, Any]]:
        """A worker died; it may have died holding a queue's lock, so every worker and both queues are
        replaced. An item alone in flight killed it; any items in flight with others are suspects."""
        how = _death(dead[0].exitcode)
        self.pool.stop(graceful=False)
        self.pool = self.start()
        if alone and len(self.pending) == 1:
            key, item = self.pending.popitem()
            self.crashes[key] += 1
            times = f"{self.crashes[key]} time{'s' if self.crashes[key] > 1 else ''}"
            if self.crashes[key] >= self.max_crashes:
                reason = f"worker process died ({how}) while processing it, {times}"
                log.warning("given up on %r: %s", item, reason)
                return [(item, self.task.crashed(item, reason))]
            log.warning("a worker process died (%s) on %r alone (%s); it runs again later", how, item, times)
            self.suspects[key] = item
            return []
        log.warning("a worker process died (%s); workers restarted; the %d items in flight run again later, one "
                    "at a time, to find the one that killed it", how, len(self.pending))
        self.suspects.update(self.pending)
        self.pending.clear()
        return []


def _death(exitcode: int | None) -> str:
    """``exit code 3``, or ``exit code -9, SIGKILL`` for a process killed by a signal."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"exit code {exitcode}, {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"exit code {exitcode}"
