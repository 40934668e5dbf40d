"""``annotate`` stage: one yes/no verification task per (image, class), votes from the crowd, labels.

Reads: downloaded candidates. Writes: ``tasks`` (published once), ``votes`` (every vote kept,
unique by remote id, so pulling again never duplicates paid work) and ``labels`` aggregated over
complete tasks. When the corpus carries ground truth, the agreement of labels with it is reported.
"""

from __future__ import annotations

import logging
from functools import cache

from curate import wordnet
from curate.crowd.aggregate import aggregate
from curate.crowd.base import CrowdBackend
from curate.crowd.simulated import SimulatedCrowd
from curate.runner import Context, Stage, StageResult

log = logging.getLogger(__name__)


class AnnotateStage(Stage):
    name = "annotate"
    description = "verify every (image, class) pair with the crowd and aggregate the votes into labels"

    def has_pending_work(self, ctx: Context) -> bool:
        backend = ctx.config.annotate.backend
        return ctx.catalog.images_without_tasks(backend) > 0 or bool(ctx.catalog.tasks_needing_votes(backend))

    def run(self, ctx: Context) -> StageResult:
        cfg = ctx.config.annotate
        truth = ctx.catalog.truth_table()
        backend = self._backend(ctx, truth)
        new_tasks = ctx.catalog.create_missing_tasks(cfg.backend, cfg.votes_per_image)
        ctx.catalog.set_remote_ids(backend.push(ctx.catalog.unpublished_tasks(cfg.backend)))
        new_votes = self._collect(ctx, backend)
        labels = aggregate(cfg.aggregate, ctx.catalog.vote_table(complete_only=True))
        ctx.catalog.replace_labels(cfg.aggregate, labels)
        stats = {"new_tasks": new_tasks, "new_votes": new_votes, **self._label_stats(labels, truth)}
        return StageResult(stats=stats, nothing_to_do=not new_tasks and not new_votes)

    def _backend(self, ctx: Context, truth: dict[str, set[str]]) -> CrowdBackend:
        cfg = ctx.config.annotate
        return SimulatedCrowd(cfg.simulated, ctx.seed, truth=make_truth(truth))

    def _collect(self, ctx: Context, backend: CrowdBackend) -> int:
        open_tasks = ctx.catalog.tasks_needing_votes(ctx.config.annotate.backend)
        added = 0
        for start in ctx.progress(range(0, len(open_tasks), 200), desc="votes", unit="batch"):
            added += ctx.catalog.add_votes([v.as_row() for v in backend.pull(open_tasks[start : start + 200])])
        if isinstance(backend, SimulatedCrowd) and backend.unknown_truth:
            log.warning("%d tasks had no ground truth; the simulated crowd answered them at random",
                        backend.unknown_truth)
        return added

    @staticmethod
    def _label_stats(labels: list[dict], truth: dict[str, set[str]]) -> dict[str, float | int]:
        accepted = sum(row["accepted"] for row in labels)
        stats: dict[str, float | int] = {"labels": len(labels), "accepted": accepted,
                                         "rejected": len(labels) - accepted}
        is_true = make_truth(truth)
        judged = [(row["accepted"], is_true(row["sha256"], row["wnid"])) for row in labels]
        judged = [(a, t) for a, t in judged if t is not None]
        if judged:
            stats["label_accuracy_vs_truth"] = round(sum(bool(a) == t for a, t in judged) / len(judged), 4)
        return stats


def make_truth(truth: dict[str, set[str]]):
    """(sha256, wnid) -> True/False from the corpus's true wnids (hyponyms count), None when unknown."""

    @cache
    def synset(ident: str):
        try:
            return wordnet.synset_from_id(ident)
        except wordnet.LOOKUP_ERRORS:
            return None

    def is_true(sha256: str, wnid: str) -> bool | None:
        known = truth.get(sha256)
        if not known:
            return None
        target = synset(wnid)
        return any(s is not None and wordnet.is_a(s, target) for s in map(synset, known))

    return is_true
