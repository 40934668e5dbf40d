"""The download engine's item path, as an executor task in two phases: ``fetch`` a candidate's bytes
(network-bound, on the executor's fetch threads), then ``process`` them (decode, orient, resize,
re-encode and store; CPU-bound, on its compute threads), wherever the executor runs the task (worker
processes by default, so that both cores work and one process's GIL does not cap the rate).

Reads: candidate rows (``id``, ``url``) with their source's ``file_root``. Writes: the image store
(each file atomically; the stores of worker processes never clean up after others). Returns one
outcome per candidate: ``downloaded`` with the stored image's record, or ``failed`` / ``rejected`` with
an error string; never raises for an item. An error of the machine (:mod:`curate.machine`: a full disk,
too many open files, ...) is no property of the candidate: its outcome is ``pending`` (not done), with
the error and a ``fix``, and the stage stops. A candidate whose processing kills the worker process
gets a ``failed`` outcome from :meth:`IngestTask.crashed`, built by the executor's driver.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from curate import machine

log = logging.getLogger(__name__)


class IngestTask:
    """Picklable: carries settings only; :meth:`setup` builds the fetcher and the store where it runs."""

    def __init__(self, download: dict[str, Any], quality: dict[str, Any], store_root: Path, jpeg_quality: int):
        self.download, self.quality_settings = download, quality
        self.store_root, self.jpeg_quality = Path(store_root), jpeg_quality
        self.fetcher: Any = None
        self.store: Any = None
        self.quality: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "fetcher": None, "store": None, "quality": None}

    def setup(self, shards: int) -> None:
        """Per-host limits are shared among the ``shards`` copies of the task that run side by side."""
        from curate.http import Fetcher
        from curate.quality import QualityConfig
        from curate.store import ImageStore

        cfg = self.download
        self.fetcher = Fetcher(
            timeout_s=cfg["timeout_s"], retries=cfg["retries"], max_bytes=cfg["max_bytes"],
            user_agent=cfg["user_agent"], deadline_s=cfg["deadline_s"], max_redirects=cfg["max_redirects"],
            allow_private_networks=cfg["allow_private_networks"], respect_noai=cfg["respect_noai"],
            per_host_workers=math.ceil(cfg["per_host_workers"] / shards), per_host_rate=cfg["per_host_rate"] / shards,
        )
        self.store = ImageStore(self.store_root, self.jpeg_quality, remove_temporaries=False)
        self.quality = QualityConfig.model_validate(self.quality_settings)

    def fetch(self, item: tuple[dict[str, Any], Path | None]) -> dict[str, Any]:
        """The candidate's bytes, or its failed outcome; every failure becomes data, never an exception."""
        from curate.http import FetchError

        candidate, file_root = item
        outcome: dict[str, Any] = {"id": candidate["id"], "sha256": None, "error": None, "image": None}
        try:
            return {**outcome, "data": self.fetcher.fetch(candidate["url"], file_root=file_root)}
        except FetchError as exc:
            return {**outcome, "status": "failed", "error": str(exc)}
        except Exception as exc:  # a bug or an unforeseen failure must not stop the stage on one item
            if machine.is_machine_error(exc):  # the fetcher lets these through (reading a file:// URL)
                return _not_done(outcome, exc, f"reading {candidate['url']}")
            log.debug("candidate %s (%s): unexpected error", candidate["id"], candidate["url"], exc_info=True)
            return {**outcome, "status": "failed", "error": f"unexpected error: {type(exc).__name__}: {exc}"}

    def process(self, fetched: dict[str, Any]) -> dict[str, Any]:
        """Decode, check, resize, re-encode and store fetched bytes; a failed fetch passes through."""
        from curate.store import InvalidImage

        data = fetched.pop("data", None)
        if data is None:
            return fetched
        try:
            image = self.store.put(data, max_side_px=self.download["max_side_px"],
                                   min_side_px=self.download["min_side_px"], quality=self.quality)
        except InvalidImage as exc:
            return {**fetched, "status": "rejected", "error": str(exc)}
        except Exception as exc:
            if machine.is_machine_error(exc):
                return _not_done(fetched, exc, f"writing the image store at {self.store_root}")
            log.debug("candidate %s: unexpected error", fetched["id"], exc_info=True)
            return {**fetched, "status": "failed", "error": f"unexpected error: {type(exc).__name__}: {exc}"}
        return {**fetched, "status": "downloaded", "sha256": image.sha256, "image": image.as_row()}

    def crashed(self, item: tuple[dict[str, Any], Path | None], reason: str) -> dict[str, Any]:
        """The outcome of a candidate whose processing kept killing the worker process (``reason`` says how)."""
        candidate, _ = item
        return {"id": candidate["id"], "sha256": None, "image": None, "status": "failed", "error": reason}


def _not_done(outcome: dict[str, Any], exc: OSError, doing: str) -> dict[str, Any]:
    """An error of the machine: the candidate stays pending; ``error`` and ``fix`` say why and what to do."""
    return {**outcome, "status": "pending", "error": machine.describe(exc, doing), "fix": machine.fix(exc)}
