"""``candidates`` stage: search every source with every query, then fetch, validate and store hits.

Reads: ``queries`` and the configured sources. Writes: ``searches`` (a query searched once per
source, never again), ``candidates`` (unique per class and URL; status pending -> downloaded |
duplicate | failed | rejected with an error string), ``images`` and the image store.
Fetching runs in a thread pool; the driver alone writes the catalog, one transaction per batch, so
a kill loses at most the batch in flight, and the store's atomic writes keep every image once.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from curate.http import Fetcher, FetchError
from curate.runner import Context, Stage, StageResult
from curate.sources import Source, create_source
from curate.store import ImageStore, InvalidImage

log = logging.getLogger(__name__)
BATCH_SIZE = 32


class CandidatesStage(Stage):
    name = "candidates"
    description = "search the image sources and download, validate, deduplicate and store the hits"

    def has_pending_work(self, ctx: Context) -> bool:
        sources = [create_source(c) for c in ctx.config.candidates.sources]
        return any(ctx.catalog.pending_searches(s.name) for s in sources) or bool(ctx.catalog.pending_candidates())

    def run(self, ctx: Context) -> StageResult:
        sources = [create_source(c) for c in ctx.config.candidates.sources]
        new_candidates = sum(self._search(ctx, source) for source in sources)
        outcomes = self._download(ctx)
        stats = {"searched_new": new_candidates, **outcomes}
        return StageResult(stats=stats, nothing_to_do=not new_candidates and not any(outcomes.values()))

    # ------------------------------------------------------------------ search
    def _search(self, ctx: Context, source: Source) -> int:
        pending = ctx.catalog.pending_searches(source.name)
        added = 0
        for query in ctx.progress(pending, desc=f"search {source.name}", unit="query"):
            room = ctx.config.candidates.max_per_class - ctx.catalog.count_candidates(query["wnid"])
            limit = min(room, getattr(source.config, "max_per_query", room))
            hits = source.search(query["text"], limit) if limit > 0 else []
            rows = [
                {**hit.as_row(), "wnid": query["wnid"], "source": source.name, "query_id": query["id"], "rank": rank}
                for rank, hit in enumerate(hits)
            ]
            added += ctx.catalog.add_search_results(query["id"], source.name, rows)
        log.info("%s: %d queries searched, %d new candidates", source.name, len(pending), added)
        return added

    # ------------------------------------------------------------------ download
    def _download(self, ctx: Context) -> dict[str, int]:
        pending = ctx.catalog.pending_candidates()
        cfg = ctx.config.candidates.download
        fetcher = Fetcher(cfg.timeout_s, cfg.retries, cfg.max_bytes, cfg.user_agent)
        counts = dict.fromkeys(("downloaded", "duplicate", "failed", "rejected"), 0)
        if not pending:
            return counts
        bar = ctx.progress(total=len(pending), desc="download", unit="img")
        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            for start in range(0, len(pending), BATCH_SIZE):
                batch = pending[start : start + BATCH_SIZE]
                outcomes = list(pool.map(lambda row: ingest(row, fetcher, ctx.store, cfg), batch))
                for status, n in ctx.catalog.record_downloads(outcomes).items():
                    counts[status] += n
                bar.update(len(batch))
        bar.close()
        return counts


def ingest(candidate: Any, fetcher: Fetcher, store: ImageStore, cfg: Any) -> dict[str, Any]:
    """Fetch one candidate and store it; failures become data (status + error), never exceptions."""
    outcome: dict[str, Any] = {"id": candidate["id"], "sha256": None, "error": None, "image": None}
    try:
        data = fetcher.fetch(candidate["url"])
        image = store.put(data, max_side_px=cfg.max_side_px, min_side_px=cfg.min_side_px)
    except FetchError as exc:
        return {**outcome, "status": "failed", "error": str(exc)}
    except InvalidImage as exc:
        return {**outcome, "status": "rejected", "error": str(exc)}
    return {**outcome, "status": "downloaded", "sha256": image.sha256, "image": image.as_row()}
