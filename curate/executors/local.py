"""``local`` executor: a thread pool on this machine (downloads are I/O-bound; decoding releases the GIL).

At most ``workers * IN_FLIGHT_PER_WORKER`` items are submitted at once, so a million candidates do
not become a million futures; results are yielded in completion order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from itertools import islice
from typing import Any, Literal

from curate.config import Section
from curate.executors import EXECUTORS
from curate.registry import Plugin

IN_FLIGHT_PER_WORKER = 4


@EXECUTORS.register
class LocalExecutor(Plugin):
    name = "local"
    description = "a thread pool on this machine"

    class Config(Section):
        type: Literal["local"] = "local"


    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[tuple[Any, Any]]:
        source = iter(items)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="curate")
        running: dict[Future, Any] = {}
        try:
            self._submit(pool, fn, source, running, workers * IN_FLIGHT_PER_WORKER)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield running.pop(future), future.result()
                self._submit(pool, fn, source, running, len(done))
        finally:  # on Ctrl-C or an early stop: drop what has not started, do not wait for stragglers
            pool.shutdown(wait=not running, cancel_futures=True)

    @staticmethod
    def _submit(pool: ThreadPoolExecutor, fn: Callable, source: Iterator, running: dict, n: int) -> None:
        for item in islice(source, n):
            running[pool.submit(fn, item)] = item
