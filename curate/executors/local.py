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
items are in flight. Worker processes are started with ``spawn`` (the caller's threads may hold locks a
forked child would inherit). If a worker process dies (a decoder crash), it may have held a queue's
lock, so all workers and both queues are replaced; the items in flight are not reported and stay
pending for the next run, and the rest of the work goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, Literal

from pydantic import Field

from curate.config import Section
from curate.executors import EXECUTORS, Task
from curate.registry import Plugin

log = logging.getLogger(__name__)
IN_FLIGHT_PER_WORKER = 2
CHECK_EVERY = 100  # results between two looks for a dead worker while results flow
_DONE = None  # sentinel: a thread stops


class LocalExecutorConfig(Section):
    type: Literal["local"] = "local"
    processes: int | None = Field(None, ge=0, description="worker processes; null = one per core, 0 = threads here")


@EXECUTORS.register
class LocalExecutor(Plugin):
    name = "local"
    description = "this machine: worker processes (one per core) running fetch and compute threads"
    Config = LocalExecutorConfig

    def processes(self) -> int:
        wanted = self.config.processes
        return (os.cpu_count() or 1) if wanted is None else wanted

    def map_unordered(self, task: Task, items: Iterable[Any], workers: int) -> Iterator[tuple[Any, Any]]:
        processes = min(self.processes(), workers)
        cores = os.cpu_count() or 1
        if processes <= 1:
            return _drive(lambda: _Threads(task, workers, cores), items, workers)
        fetchers, computers = -(-workers // processes), max(1, cores // processes)
        return _drive(lambda: _Processes(task, processes, fetchers, computers), items, workers)


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
    task.setup(shards)
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
def _drive(start: Callable[[], Any], items: Iterable[Any], workers: int) -> Iterator[tuple[Any, Any]]:
    pool = start()
    source, pending = enumerate(items), {}
    in_flight = workers * IN_FLIGHT_PER_WORKER
    graceful = False
    try:
        _feed(pool, source, pending, in_flight)
        received = 0
        while pending:
            try:
                key, result = pool.outbox.get(timeout=1.0)
            except queue.Empty:
                key = None
            if key is None or received % CHECK_EVERY == 0:
                if dead := pool.dead():
                    pool = _restart(pool, start, dead, pending)
                    _feed(pool, source, pending, in_flight)
            if key is None or key not in pending:
                continue
            if isinstance(result, _Failed):
                raise TaskError(f"a task failed on {pending[key]!r}:\n{result.text}")
            received += 1
            yield pending.pop(key), result
            _feed(pool, source, pending, 1)
        graceful = True
    finally:
        pool.stop(graceful)


def _restart(pool: Any, start: Callable[[], Any], dead: list[Any], pending: dict) -> Any:
    """A worker died (a decoder crash): it may have died holding a queue's lock, so every worker and both
    queues are replaced. What was in flight is not reported: it stays pending for the next run."""
    log.warning("a worker process exited (code %s); restarting the workers; %d items in flight are left "
                "for the next run", dead[0].exitcode, len(pending))
    pool.stop(graceful=False)
    pending.clear()
    return start()


def _feed(pool: Any, source: Iterator, pending: dict, n: int) -> None:
    for key, item in islice(source, n):
        pending[key] = item
        pool.inbox.put((key, item))
