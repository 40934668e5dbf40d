"""``annotate`` stage: one yes/no verification task per (image, class), votes from the crowd, labels.

Reads: downloaded candidates. Writes: ``tasks`` (published once; raising ``votes_per_image`` reopens
them and asks only for the missing votes), ``votes`` (every vote kept, unique by remote id, so
pulling again never duplicates paid work) and ``labels`` aggregated over complete tasks. When the
crowd still owes votes after a pull, the stage ends *waiting* with what to do next. When the corpus
carries ground truth, the agreement of labels with it is reported.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field

from curate.config import Section, plugin_config
from curate.crowd import AGGREGATORS, BACKENDS
from curate.stages.base import Context, Stage, StageResult, Waiting

log = logging.getLogger(__name__)
PULL_BATCH = 200  # tasks per pull and per catalog transaction


class AnnotateConfig(Section):
    backend: plugin_config(BACKENDS, default="simulated") = Field(  # type: ignore[valid-type]
        default_factory=lambda: {"type": "simulated"}, validate_default=True,
        description="the crowd: a name (simulated) or a mapping with its settings ({type: simulated, workers: 12})",
    )
    votes_per_image: int = Field(3, ge=1, le=50)
    aggregate: plugin_config(AGGREGATORS, default="majority") = Field(  # type: ignore[valid-type]
        default_factory=lambda: {"type": "majority"}, validate_default=True,
    )


class AnnotateStage(Stage):
    name = "annotate"
    description = "verify every (image, class) pair with the crowd and aggregate the votes into labels"
    Config = AnnotateConfig

    def has_pending_work(self, ctx: Context) -> bool:
        backend = ctx.config.annotate.backend.type
        return ctx.catalog.images_without_tasks(backend) > 0 or bool(ctx.catalog.open_tasks(backend))

    def run(self, ctx: Context) -> StageResult:
        cfg = ctx.config.annotate
        backend = BACKENDS.get(cfg.backend.type).from_context(cfg.backend, ctx)
        try:
            new_tasks = self._publish(ctx, backend)
            new_votes = self._collect(ctx, backend)
            missing = ctx.catalog.missing_votes(cfg.backend.type)
            waiting = Waiting(missing, "votes", backend.next_step(missing)) if missing else None
        finally:
            backend.close()
        labels = self._aggregate(ctx)
        stats = {"new_tasks": new_tasks, "new_votes": new_votes, **self._label_stats(ctx, labels)}
        if waiting:
            stats["missing_votes"] = waiting.count
        return StageResult(stats=stats, nothing_to_do=not new_tasks and not new_votes and not waiting,
                           waiting=waiting)

    def _publish(self, ctx: Context, backend: Any) -> int:
        cfg, name = ctx.config.annotate, ctx.config.annotate.backend.type
        new_tasks = ctx.catalog.create_missing_tasks(name, cfg.votes_per_image)
        reopened = ctx.catalog.raise_votes_wanted(name, cfg.votes_per_image)
        if reopened:
            log.info("annotate: %d tasks reopened for %d votes per image", reopened, cfg.votes_per_image)
        ctx.catalog.set_remote_ids(backend.push(ctx.catalog.unpublished_tasks(name)))
        return new_tasks

    def _collect(self, ctx: Context, backend: Any) -> int:
        open_tasks = ctx.catalog.open_tasks(ctx.config.annotate.backend.type)
        added = 0
        for start in ctx.progress(range(0, len(open_tasks), PULL_BATCH), desc="votes", unit="batch"):
            added += ctx.catalog.add_votes([v.as_row() for v in backend.pull(open_tasks[start : start + PULL_BATCH])])
        return added

    def _aggregate(self, ctx: Context) -> list[dict[str, Any]]:
        from curate.crowd.aggregate import create_aggregator

        aggregator = create_aggregator(ctx.config.annotate.aggregate)
        labels = aggregator.aggregate(ctx.catalog.vote_table(complete_only=True))
        ctx.catalog.replace_labels(aggregator.name, labels)
        return labels

    @staticmethod
    def _label_stats(ctx: Context, labels: list[dict]) -> dict[str, float | int]:
        from curate.crowd.truth import make_truth

        accepted = sum(row["accepted"] for row in labels)
        stats: dict[str, float | int] = {"labels": len(labels), "accepted": accepted,
                                         "rejected": len(labels) - accepted}
        is_true = make_truth(ctx.catalog.truth_table())
        judged = [(row["accepted"], is_true(row["sha256"], row["wnid"])) for row in labels]
        judged = [(a, t) for a, t in judged if t is not None]
        if judged:
            stats["label_accuracy_vs_truth"] = round(sum(bool(a) == t for a, t in judged) / len(judged), 4)
        return stats
