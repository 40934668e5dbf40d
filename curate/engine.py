"""The download engine's item path: fetch a candidate's bytes (a thread, I/O-bound), then decode,
orient, resize and re-encode them in a worker process (CPU-bound), so that both cores work and one
process's GIL does not cap the rate.

Reads: candidate rows (``id``, ``url``) and their source's ``file_root``. Writes: the image store (from
the worker processes; each file atomically). Returns one outcome per candidate: ``downloaded`` with
the stored image's record, or ``failed`` / ``rejected`` with an error string; never raises for an
item. With ``decode_processes: 0`` everything runs in the fetching thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_STORES: dict[tuple[str, int], Any] = {}  # per worker process: one ImageStore per (root, quality)


def _store_in_worker(root: str, quality: int, data: bytes, max_side_px: int, min_side_px: int) -> Any:
    from curate.store import ImageStore

    store = _STORES.get((root, quality))
    if store is None:
        store = _STORES[(root, quality)] = ImageStore(Path(root), quality, remove_temporaries=False)
    return store.put(data, max_side_px=max_side_px, min_side_px=min_side_px)


def _ready() -> int:
    import curate.store  # noqa: F401  (import the decoders while the first downloads are in flight)

    return os.getpid()


class IngestEngine:
    """Turns candidates into outcomes; use as a context manager so the worker processes stop."""

    def __init__(self, fetcher: Any, store: Any, cfg: Any):
        self.fetcher, self.store, self.cfg = fetcher, store, cfg
        self.processes = cfg.decode_processes if cfg.decode_processes is not None else (os.cpu_count() or 1)
        self._lock = threading.Lock()
        self.pool = self._start_pool() if self.processes > 0 else None

    def _start_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the fetching threads may hold locks a forked child would inherit held
        pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
        for _ in range(self.processes):
            pool.submit(_ready)  # start the workers and import the decoders while the first downloads run
        return pool

    def __enter__(self) -> IngestEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def ingest(self, candidate: Any, file_root: Path | None = None) -> dict[str, Any]:
        """Fetch one candidate and store it; every failure becomes data (status + error), never an exception."""
        from curate.http import FetchError
        from curate.store import InvalidImage

        outcome: dict[str, Any] = {"id": candidate["id"], "sha256": None, "error": None, "image": None}
        try:
            data = self.fetcher.fetch(candidate["url"], file_root=file_root)
            image = self._put(data)
        except FetchError as exc:
            return {**outcome, "status": "failed", "error": str(exc)}
        except InvalidImage as exc:
            return {**outcome, "status": "rejected", "error": str(exc)}
        except Exception as exc:  # a bug or an unforeseen failure must not stop the stage on one item
            log.debug("candidate %s (%s): unexpected error", candidate["id"], candidate["url"], exc_info=True)
            return {**outcome, "status": "failed", "error": f"unexpected error: {type(exc).__name__}: {exc}"}
        return {**outcome, "status": "downloaded", "sha256": image.sha256, "image": image.as_row()}

    def _put(self, data: bytes) -> Any:
        cfg = self.cfg
        if self.pool is None:
            return self.store.put(data, max_side_px=cfg.max_side_px, min_side_px=cfg.min_side_px)
        pool = self.pool
        try:
            return pool.submit(_store_in_worker, str(self.store.root), self.store.jpeg_quality, data,
                               cfg.max_side_px, cfg.min_side_px).result()
        except BrokenProcessPool:  # a decoder crashed its process (a malicious file): this item fails, others go on
            self._replace_pool(pool)
            raise RuntimeError("the image decoder process died on this file") from None

    def _replace_pool(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self.pool is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self.pool = self._start_pool()
