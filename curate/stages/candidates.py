"""``candidates`` stage: search every source with every query, then fetch, validate and store hits.

Reads: ``queries`` and the configured sources. Writes: ``searches`` (a query searched once per
source, never again), ``candidates`` (unique per class and URL; status pending -> downloaded |
duplicate | failed | rejected with an error string), ``images`` and the image store.
Downloads run on the configured executor (``run.executor``), results are taken as each one finishes
(no batch barrier: one slow host holds one worker, not the run), and the driver alone writes the
catalog, one transaction per ``COMMIT_EVERY`` outcomes or ``COMMIT_INTERVAL_S`` (the executor hands
control back while nothing finishes, so what finished is saved while other downloads hang), so a kill
loses at most those in flight. Every per-item failure becomes a status and an error string on the
candidate. Failure: an error of the machine (:mod:`curate.machine`: a full disk, too many open files)
is no per-item failure; the stage records what finished, feeds no new work, leaves the rest pending
and raises :class:`StageError` saying what to fix.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from curate.errors import StageError
from curate.quality import QualityConfig
from curate.sections import Section, plugin_config
from curate.sources import SOURCES, Query, Source, SourceError, create_sources, instance_problems
from curate.stages.base import Context, Stage, StageResult

log = logging.getLogger(__name__)
COMMIT_EVERY = 32  # outcomes per catalog transaction
COMMIT_INTERVAL_S = 2.0  # ... or at least this often, so a slow tail is saved too
IDLE_S = 0.5  # the executor hands control back this often while nothing finishes (to commit on time)


class DownloadConfig(Section):
    workers: int = Field(16, ge=1, le=512, description="downloads in flight (spread over run.executor's processes)")
    timeout_s: float = Field(20.0, gt=0, description="connect and per-read timeout")
    deadline_s: float = Field(60.0, gt=0, description="wall-clock limit per download (DNS, connect, TLS, "
                              "headers, body), retries included; time queued for a host's limits not counted")
    retries: int = Field(2, ge=0)
    max_redirects: int = Field(5, ge=0)
    max_bytes: int = Field(25_000_000, gt=0)
    min_side_px: int = Field(32, ge=1, description="checked after resizing")
    max_side_px: int = Field(512, ge=32, description="longest side after normalization")
    jpeg_quality: int = Field(90, ge=50, le=100)
    user_agent: str = "curate/0.1 (+https://github.com/curate-datasets/curate)"
    allow_private_networks: bool = Field(
        False, description="follow URLs to loopback, private and link-local addresses (refused by default)"
    )
    per_host_workers: int = Field(8, ge=0, description="requests at once to one host (a redirect hop counts "
                                  "for its own host); 0 = no limit")
    per_host_rate: float = Field(0.0, ge=0, description="request starts per second on one host (redirect hops "
                                 "included); 0 = no limit")
    respect_noai: bool = Field(True, description="skip images served with X-Robots-Tag: noai / noimageai")


class CandidatesConfig(Section):
    sources: list[plugin_config(SOURCES)] = Field(min_length=1)  # type: ignore[valid-type]
    max_per_class: int = Field(1000, ge=1, description="candidates per class, shared among sources by weight")
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig, description="checks before any crowd money")

    def check_inputs(self, where: str) -> list[str]:
        return super().check_inputs(where) + instance_problems(self.sources, f"{where}.sources")


class CandidatesStage(Stage):
    name = "candidates"
    description = "search the image sources and download, validate, deduplicate and store the hits"
    Config = CandidatesConfig

    def has_pending_work(self, ctx: Context) -> bool:
        sources = self._sources(ctx)
        return any(ctx.catalog.pending_searches(s.instance) for s in sources) or ctx.catalog.has_pending_candidates()

    def run(self, ctx: Context) -> StageResult:
        sources = self._sources(ctx)
        searched = [self._search(ctx, source, sources) for source in sources]
        new_candidates = sum(n for n, _ in searched)
        outcomes = self._download(ctx, {s.instance: s.file_root for s in sources})
        outcomes["near_duplicate"] = self._near_duplicates(ctx)
        failures = [error for _, error in searched if error]
        if failures:  # what was collected is saved; the failed searches stay pending for the next run
            raise StageError(self.name, "; ".join(failures))
        stats = {"searched_new": new_candidates, **outcomes}
        return StageResult(stats=stats, nothing_to_do=not new_candidates and not any(outcomes.values()))

    @staticmethod
    def _sources(ctx: Context) -> list[Source]:
        user_agent = ctx.config.candidates.download.user_agent
        return create_sources(ctx.config.candidates.sources, user_agent=user_agent)

    # ------------------------------------------------------------------ search
    def _search(self, ctx: Context, source: Source, sources: list[Source]) -> tuple[int, str | None]:
        """Search every pending query; returns new candidates and, when the service failed, why."""
        pending = ctx.catalog.pending_searches(source.instance)
        lemmas = {r["wnid"]: tuple(r["lemmas"].split(", ")) for r in ctx.catalog.synsets()}
        cap = class_cap(ctx.config.candidates.max_per_class, source, sources)
        added, error = 0, None
        for row in ctx.progress(pending, desc=f"search {source.instance}", unit="query"):
            limit = min(cap - ctx.catalog.count_candidates(row["wnid"], source.instance),
                        getattr(source.config, "max_per_query", cap))
            query = Query(row["text"], row["wnid"], row["lang"], row["kind"], lemmas.get(row["wnid"], ()))
            try:
                hits = source.search(query, limit) if limit > 0 else []
            except SourceError as exc:
                error = f"{exc} ({len(pending) - pending.index(row)} queries left to search on the next run)"
                log.error("search stopped: %s", error)
                break
            rows = [
                {**hit.as_row(), "wnid": row["wnid"], "source": source.instance, "query_id": row["id"], "rank": rank}
                for rank, hit in enumerate(hits)
            ]
            added += ctx.catalog.add_search_results(row["id"], source.instance, rows)
        log.info("%s: %d queries searched, %d new candidates", source.instance, len(pending), added)
        return added, error

    # ------------------------------------------------------------------ download
    def _download(self, ctx: Context, file_roots: dict[str, Path | None]) -> dict[str, int]:
        from curate.executors import create_executor

        counts = dict.fromkeys(("downloaded", "duplicate", "failed", "rejected"), 0)
        pending = ctx.catalog.pending_candidates()
        if not pending:
            return counts
        from curate.engine import IngestTask

        cfg = ctx.config.candidates.download
        feed = _Feed([({"id": row["id"], "url": row["url"]}, file_roots.get(row["source"]))
                      for row in interleave_hosts(pending)])
        task = IngestTask(cfg.model_dump(), ctx.config.candidates.quality.model_dump(), ctx.store.root,
                          ctx.store.jpeg_quality)
        with ctx.progress(total=len(pending), desc="download", unit="img") as bar:
            executor = create_executor(ctx.config.run.executor)
            recorder = _Recorder(ctx, bar)
            for done in executor.map_unordered(task, feed, cfg.workers, idle_s=IDLE_S):
                if done is not None and not recorder.add(done[1]):
                    feed.stop()  # an error of the machine: what is in flight finishes, nothing new starts
                recorder.commit_if_due()
            written = recorder.finish()
        if recorder.halted is not None:
            left = len(pending) - sum(written.values())
            raise StageError(self.name, f"{recorder.halted['error']}; {left} candidates left pending; "
                                        f"{recorder.halted['fix']} and run again")
        return {status: counts[status] + written.get(status, 0) for status in counts}

    @staticmethod
    def _near_duplicates(ctx: Context) -> int:
        """Near-identical pictures (perceptual hashes within ``quality.near_duplicate_distance``): within a
        class all but the first candidate become ``duplicate`` (no crowd money for them); across classes
        the images are tied to one picture (``images.dup_of``), so the crowd decides and one is exported."""
        from curate.quality import near_duplicate_groups

        distance = ctx.config.candidates.quality.near_duplicate_distance
        if distance <= 0:
            return 0
        hashes = ctx.catalog.image_phashes()
        groups = near_duplicate_groups(list(hashes.items()), distance)
        representative = {sha: group[0] for group in groups for sha in group}
        return ctx.catalog.mark_near_duplicates(representative)


def interleave_hosts(rows: list[Any]) -> list[Any]:
    """``rows`` (with a ``url``) taken one host at a time in turn, each host's in their own order: a host whose
    ``per_host_*`` limits make downloads queue holds as few fetch threads as the mix allows, instead of a
    long run of its URLs holding them all while other hosts' candidates wait behind."""
    by_host: dict[str, list[Any]] = {}
    for row in rows:
        try:
            host = urlsplit(row["url"]).hostname or ""
        except ValueError:  # a malformed URL fails at fetch time with its reason
            host = ""
        by_host.setdefault(host, []).append(row)
    turns = zip_longest(*by_host.values())
    return [row for turn in turns for row in turn if row is not None]


class _Feed:
    """The work handed to the executor, item by item as it asks: once stopped, it hands out nothing more."""

    def __init__(self, items: list[Any]):
        self.items, self.stopped = items, False

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            if self.stopped:
                return
            yield item

    def stop(self) -> None:
        self.stopped = True


class _Recorder:
    """Writes outcomes as they arrive, in transactions of COMMIT_EVERY or every COMMIT_INTERVAL_S; the
    progress bar shows images/s and the failures so far by reason. An outcome still ``pending`` (an error
    of the machine, see :mod:`curate.engine`) is not written: the first one is kept as ``halted``."""

    def __init__(self, ctx: Context, bar: Any):
        self.ctx, self.bar = ctx, bar
        self.written: dict[str, int] = {}
        self.reasons: Counter[str] = Counter()
        self.batch: list[dict[str, Any]] = []
        self.halted: dict[str, Any] | None = None
        self.started = self.last_commit = time.monotonic()

    def add(self, outcome: dict[str, Any]) -> bool:
        """Take one outcome; False when it was not done (the machine failed it)."""
        from curate.reasons import reason_of

        if outcome["status"] == "pending":
            self.halted = self.halted or outcome
            return False
        self.batch.append(outcome)
        if outcome["error"]:
            self.reasons[reason_of(outcome["error"])] += 1
        self.bar.update(1)
        return True

    def commit_if_due(self) -> None:
        if len(self.batch) >= COMMIT_EVERY or (self.batch and time.monotonic() - self.last_commit > COMMIT_INTERVAL_S):
            self._commit()
            self.bar.set_postfix_str(_failures(self.reasons), refresh=False)

    def finish(self) -> dict[str, int]:
        """Write what is left; log the rate and the failures by reason; the statuses written."""
        self._commit()
        seconds = time.monotonic() - self.started
        done = sum(self.written.values())
        log.info("downloads: %d in %.1f s (%.1f img/s)%s", done, seconds, done / max(seconds, 1e-9),
                 f"; failed or rejected: {_failures(self.reasons)}" if self.reasons else "")
        if self.halted is not None:
            log.error("downloads stopped: %s", self.halted["error"])
        return self.written

    def _commit(self) -> None:
        _add(self.written, self.ctx.catalog.record_downloads(self.batch))
        self.batch, self.last_commit = [], time.monotonic()


def _add(total: dict[str, int], counts: dict[str, int]) -> None:
    for status, n in counts.items():
        total[status] = total.get(status, 0) + n


def _failures(reasons: Counter[str]) -> str:
    return ", ".join(f"{reason}={n}" for reason, n in reasons.most_common(4))


def class_cap(max_per_class: int, source: Source, sources: list[Source]) -> int:
    """Candidates this source may add per class: its weight's share of ``max_per_class`` (at least 1)."""
    total = sum(s.weight for s in sources)
    return max(1, round(max_per_class * source.weight / total))


