"""Per-host politeness for the fetcher: at most ``workers`` exchanges at once and at most ``rate`` starts
per second on one host (0 = no limit). Each exchange with a host (every redirect hop and every retry is
one) takes a slot of that host's gate for as long as it talks to the host.

A request waits its turn and never gives up: a start is booked only by a request that will start, so
nothing is held or booked for requests that went away, and a slow rate makes downloads queue, not fail.
The wait is finite: a slot is held for one exchange, which the fetcher's deadline bounds, and starts are
paced at ``rate``. The time queued is not an exchange's time: :meth:`HostGate.slot` reports it and the
fetcher moves its deadline by as much.

Reads: nothing. Writes: nothing. Failure: none (it only waits).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class HostGate:
    """One gate per fetcher (per worker process: the engine divides the limits among them)."""

    def __init__(self, workers: int = 0, rate: float = 0.0):
        self.workers, self.interval_s = workers, (1.0 / rate if rate > 0 else 0.0)
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}
        self._next_start: dict[str, float] = {}

    @contextlib.contextmanager
    def slot(self, host: str) -> Iterator[float]:
        """Hold one of ``host``'s slots for the block, which starts at the host's next free start time;
        yields the seconds waited for it."""
        queued = time.monotonic()
        semaphore = self._semaphore(host)
        if semaphore is not None:
            semaphore.acquire()
        try:
            self._pace(host)
            yield time.monotonic() - queued
        finally:
            if semaphore is not None:
                semaphore.release()

    def _semaphore(self, host: str) -> threading.Semaphore | None:
        if self.workers <= 0:
            return None
        with self._lock:
            return self._slots.setdefault(host, threading.BoundedSemaphore(self.workers))

    def _pace(self, host: str) -> None:
        """Book the host's next start time, then sleep until it (a booking is always used)."""
        if not self.interval_s:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start.get(host, now))
            self._next_start[host] = start + self.interval_s
        time.sleep(start - now)
