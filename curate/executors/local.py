"""``local`` executor: this machine's cores. ``processes`` worker processes (one per core by default),
each running ``workers / processes`` threads; with ``processes: 0`` the threads run in this process.

Downloads are I/O-bound per item but CPU-bound in total (HTTP handling, decoding, resizing, encoding):
one process's GIL caps a two-core machine at about half its rate, so the work is spread over processes,
each fed from one shared queue (no shards fixed in advance, no barrier: a slow item holds one thread).
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
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from itertools import islice
from typing import Any, Literal

from pydantic import Field

from curate.config import Section
from curate.executors import EXECUTORS, Task
from curate.registry import Plugin

log = logging.getLogger(__name__)
IN_FLIGHT_PER_WORKER = 2
CHECK_EVERY = 100  # results between two looks for a dead worker while results flow
_DONE = None  # sentinel: a worker thread stops


class LocalExecutorConfig(Section):
    type: Literal["local"] = "local"
    processes: int | None = Field(None, ge=0, description="worker processes; null = one per core, 0 = threads here")


@EXECUTORS.register
class LocalExecutor(Plugin):
    name = "local"
    description = "this machine: worker processes (one per core) running threads"
    Config = LocalExecutorConfig

    def processes(self) -> int:
        wanted = self.config.processes
        return (os.cpu_count() or 1) if wanted is None else wanted

    def map_unordered(self, task: Task, items: Iterable[Any], workers: int) -> Iterator[tuple[Any, Any]]:
        processes = min(self.processes(), workers)
        if processes <= 1:
            return _threads(task, items, workers)
        return _processes(task, items, workers, processes)


# ---------------------------------------------------------------------- threads in this process
def _threads(task: Task, items: Iterable[Any], workers: int) -> Iterator[tuple[Any, Any]]:
    task.setup(1)
    source = iter(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="curate")
    running: dict[Future, Any] = {}
    try:
        _submit(pool, task, source, running, workers * IN_FLIGHT_PER_WORKER)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future.result()
            _submit(pool, task, source, running, len(done))
    finally:  # on Ctrl-C or an early stop: drop what has not started, do not wait for stragglers
        pool.shutdown(wait=not running, cancel_futures=True)


def _submit(pool: ThreadPoolExecutor, task: Task, source: Iterator, running: dict, n: int) -> None:
    for item in islice(source, n):
        running[pool.submit(task, item)] = item


# ---------------------------------------------------------------------- worker processes
def _worker(task: Task, inbox: Any, outbox: Any, threads: int, shards: int) -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:  # a killed driver (SIGKILL) must not leave its workers waiting for ever
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    task.setup(shards)

    def loop() -> None:
        while (job := inbox.get()) is not _DONE:
            key, item = job
            outbox.put((key, task(item)))

    pool = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def _exit_with(parent: Any) -> None:
    parent.join()
    os._exit(0)


class _Workers:
    """Worker processes around a shared inbox and outbox."""

    def __init__(self, task: Task, processes: int, threads: int):
        self.context = multiprocessing.get_context("spawn")
        self.inbox, self.outbox = self.context.Queue(), self.context.Queue()
        self.args = (task, self.inbox, self.outbox, threads, processes)
        self.threads = threads
        self.procs = [self._start() for _ in range(processes)]

    def _start(self) -> Any:
        proc = self.context.Process(target=_worker, args=self.args, daemon=True)
        proc.start()
        return proc

    def dead(self) -> list[Any]:
        return [p for p in self.procs if not p.is_alive()]

    def stop(self, graceful: bool) -> None:
        if graceful:
            for _ in range(len(self.procs) * self.threads):
                self.inbox.put(_DONE)
            for proc in self.procs:
                proc.join(timeout=10)
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        self.inbox.cancel_join_thread()
        self.outbox.cancel_join_thread()


def _processes(task: Task, items: Iterable[Any], workers: int, processes: int) -> Iterator[tuple[Any, Any]]:
    threads = -(-workers // processes)
    pool = _Workers(task, processes, threads)
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
                    pool = _restart(pool, task, processes, threads, dead, pending)
                    _feed(pool, source, pending, in_flight)
            if key is None or key not in pending:
                continue
            received += 1
            yield pending.pop(key), result
            _feed(pool, source, pending, 1)
        graceful = True
    finally:
        pool.stop(graceful)


def _restart(pool: _Workers, task: Task, processes: int, threads: int, dead: list[Any], pending: dict) -> _Workers:
    """A worker died (a decoder crash): it may have died holding a queue's lock, so every worker and both
    queues are replaced. What was in flight is not reported: it stays pending for the next run."""
    log.warning("a worker process exited (code %s); restarting the workers; %d items in flight are left "
                "for the next run", dead[0].exitcode, len(pending))
    pool.stop(graceful=False)
    pending.clear()
    return _Workers(task, processes, threads)


def _feed(pool: _Workers, source: Iterator, pending: dict, n: int) -> None:
    for key, item in islice(source, n):
        pending[key] = item
        pool.inbox.put((key, item))
