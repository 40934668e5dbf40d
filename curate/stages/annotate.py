"""``annotate`` stage: one yes/no verification task per (image, class), votes from the crowd, labels.

Reads: downloaded candidates; gold answers (``annotate.gold``: a CSV of known positives and negatives,
or known ones taken from a corpus's ground truth); with ``annotate.model`` (or ``aggregate: auto`` on
a trained backbone), the images' embeddings (the ``noise`` stage's backbone; cached in the catalog and
shared with that stage). Writes: ``gold``, ``tasks`` (published once; asking for more votes reopens a
task and asks only for the missing ones), ``votes`` (every vote kept, unique by remote id, so pulling
again never duplicates paid work) and ``labels`` aggregated over complete tasks (a gold task's label
is its known answer).

Votes come in rounds: every task first wants ``votes_per_image`` votes; once the crowd has given
them, the aggregator names the tasks it is not yet confident about (``more_votes``: its confidence
table or posterior, or none for fixed voting) and each of those wants one vote more, up to
``max_votes_per_image``. The default aggregator, ``auto``, is resolved when the stage runs
(:mod:`curate.crowd.auto`: crowdlab with the model where the noise backbone has real weights, else
dynamic consensus); the log and the stats (``aggregate``) name the one that ran. A crowd that
answers at once (the simulated one) plays every round in one run; when the crowd still owes votes
after a pull, the stage ends *waiting* with what to do next, and the next run goes on from there.
When the corpus carries ground truth, the agreement of labels with it is reported. Every run that
reaches the crowd aggregates again; the stats say what changed (new tasks, new votes,
``votes_revised``: answers edited or deleted in the crowd's tool, ``labels_changed``), and only a run
where none did reports nothing to do.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from curate.crowd import AGGREGATORS, BACKENDS
from curate.errors import ConfigError
from curate.sections import Section, plugin_config
from curate.stages.base import Context, Stage, StageResult, Waiting

log = logging.getLogger(__name__)
PULL_BATCH = 200  # tasks per pull and per catalog transaction
GOLD_COLUMNS = ("wnid", "answer")


class GoldConfig(Section):
    path: Path | None = Field(None, description="CSV of known answers: sha256 or url, wnid, answer (yes/no)")
    from_truth_per_class: int = Field(
        0, ge=0, description="known positives, and as many negatives, per class from the corpus's ground truth"
    )

    def resolve_paths(self, base: Path) -> None:
        if self.path is not None and not self.path.is_absolute():
            self.path = (base / self.path).resolve()

    def check_inputs(self, where: str) -> list[str]:
        if self.path is not None and not self.path.is_file():
            return [f"{where}.path: file not found: {self.path}"]
        return []


class ModelConfig(Section):
    enabled: bool = Field(False, description="score every task with the noise stage's backbone (out-of-sample); "
                                             "crowdlab needs it, aggregate auto turns it on where it picks crowdlab")


class AnnotateConfig(Section):
    backend: plugin_config(BACKENDS, default="simulated") = Field(  # type: ignore[valid-type]
        default_factory=lambda: {"type": "simulated"}, validate_default=True,
        description="the crowd: a name (simulated) or a mapping with its settings ({type: simulated, workers: 12})",
    )
    votes_per_image: int = Field(None, ge=1, le=50, validate_default=False,  # type: ignore[arg-type]
                                 description="votes every task gets first; unset: 1 under aggregate auto, else 3")
    max_votes_per_image: int = Field(10, ge=1, le=50, description="cap of the rounds that ask for more")
    aggregate: plugin_config(AGGREGATORS, default="majority") = Field(  # type: ignore[valid-type]
        default_factory=lambda: {"type": "auto"}, validate_default=True,
        description="auto (crowdlab with the model where the noise backbone has real weights, else "
                    "dynamic_consensus), majority, dynamic_consensus, dawid_skene or crowdlab",
    )
    gold: GoldConfig = Field(default_factory=GoldConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)

    @model_validator(mode="before")
    @classmethod
    def _first_votes(cls, data: Any) -> Any:
        """An unset ``votes_per_image`` follows the aggregator (:func:`curate.crowd.auto.first_votes`)."""
        from curate.crowd.auto import first_votes

        if isinstance(data, dict) and data.get("votes_per_image") is None:
            return {**data, "votes_per_image": first_votes(data.get("aggregate", "auto"))}
        return data

    @model_validator(mode="after")
    def _scores_for_the_aggregator(self) -> AnnotateConfig:
        kind = self.aggregate.type
        if getattr(AGGREGATORS.get(kind), "needs_scores", False) and not self.model.enabled:
            raise ValueError(f"aggregate {kind!r} combines the votes with the model's scores: "
                             "set annotate.model.enabled: true (or choose another aggregate)")
        if self.max_votes_per_image < self.votes_per_image:
            raise ValueError(f"max_votes_per_image ({self.max_votes_per_image}) is below votes_per_image "
                             f"({self.votes_per_image})")
        return self


class AnnotateStage(Stage):
    name = "annotate"
    description = "verify every (image, class) pair with the crowd and aggregate the votes into labels"
    Config = AnnotateConfig

    def has_pending_work(self, ctx: Context) -> bool:
        backend = ctx.config.annotate.backend.type
        if getattr(BACKENDS.get(backend), "answers_change", False):  # edits and deletions come in any time
            return True
        return ctx.catalog.images_without_tasks(backend) > 0 or bool(ctx.catalog.open_tasks(backend))

    def run(self, ctx: Context) -> StageResult:
        from curate.crowd.aggregate import create_aggregator

        cfg = ctx.config.annotate
        policy, use_model, backbone = _policy(ctx)
        aggregator = create_aggregator(policy)
        backend = BACKENDS.get(cfg.backend.type).from_context(cfg.backend, ctx)
        gold = self._gold(ctx)
        scorer = _Scorer(ctx, backbone) if use_model else None
        new_votes = more_asked = rounds = 0
        waiting = None
        superseded = ctx.catalog.vote_state(cfg.backend.type)["superseded"]
        try:
            new_tasks = self._publish(ctx, backend)
            while True:
                rounds += 1
                new_votes += self._collect(ctx, backend)
                missing = ctx.catalog.missing_votes(cfg.backend.type)
                if missing:
                    waiting = Waiting(missing, "votes", backend.next_step(missing))
                    break
                votes = ctx.catalog.vote_table(complete_only=True, backend=cfg.backend.type)
                scores = scorer.scores(votes) if scorer else None
                more = sorted(aggregator.more_votes(votes, scores, cfg.max_votes_per_image))
                asked = ctx.catalog.ask_more_votes(more, cfg.max_votes_per_image) if more else 0
                if not asked:
                    break
                more_asked += asked
                log.info("annotate: round %d: %d tasks get one more vote", rounds, asked)
        finally:
            backend.close()
        # answers edited or deleted in the crowd's tool since the last pull (pulled with the new ones)
        revised = ctx.catalog.vote_state(cfg.backend.type)["superseded"] - superseded
        votes = ctx.catalog.vote_table(complete_only=True, backend=cfg.backend.type)
        labels, changed = self._aggregate(ctx, aggregator, votes, scorer.scores(votes) if scorer else None)
        stats = {"aggregate": aggregator.name, "new_tasks": new_tasks, "new_votes": new_votes,
                 "votes_revised": revised, "labels_changed": changed,
                 "more_votes_asked": more_asked, "gold": gold, **self._label_stats(ctx, labels, votes)}
        if waiting:
            stats["missing_votes"] = waiting.count
        done = new_tasks or new_votes or revised or changed or waiting
        return StageResult(stats=stats, nothing_to_do=not done, waiting=waiting)

    # ------------------------------------------------------------------ steps
    def _gold(self, ctx: Context) -> int:
        cfg = ctx.config.annotate.gold
        rows: list[dict[str, Any]] = []
        if cfg.path is not None:
            rows += _gold_from_csv(cfg.path, ctx.catalog.downloaded_pairs())
        if cfg.from_truth_per_class:
            rows += _gold_from_truth(ctx, cfg.from_truth_per_class)
        if rows:
            ctx.catalog.add_gold(rows)
        return len(ctx.catalog.gold_answers())

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

    @staticmethod
    def _aggregate(ctx: Context, aggregator: Any, votes: list, scores: dict | None) -> tuple[list[dict[str, Any]], int]:
        """The labels now, and how many changed since the last aggregation (accepted otherwise, new or gone)."""
        labels = aggregator.aggregate(votes, scores)
        gold = ctx.catalog.gold_answers()
        for row in labels:  # a known answer is the label, whatever the crowd said
            answer = gold.get((row["sha256"], row["wnid"]))
            if answer is not None:
                row["accepted"], row["p_true"] = int(answer == "yes"), float(answer == "yes")
        return labels, ctx.catalog.replace_labels(aggregator.name, labels)

    @staticmethod
    def _label_stats(ctx: Context, labels: list[dict], votes: list) -> dict[str, float | int]:
        from curate.crowd.truth import make_truth

        accepted = sum(row["accepted"] for row in labels)
        stats: dict[str, float | int] = {"labels": len(labels), "accepted": accepted,
                                         "rejected": len(labels) - accepted}
        if labels:
            stats["votes_per_image"] = round(len(votes) / len(labels), 2)
        is_true = make_truth(ctx.catalog.truth_table())
        judged = [(row["accepted"], is_true(row["sha256"], row["wnid"])) for row in labels]
        judged = [(a, t) for a, t in judged if t is not None]
        if judged:
            stats["label_accuracy_vs_truth"] = round(sum(bool(a) == t for a, t in judged) / len(judged), 4)
        return stats


def _policy(ctx: Context) -> tuple[Any, bool, Any]:
    """The aggregator config the stage runs, whether the model scores the tasks, and the noise stage's
    backbone when it was loaded to decide: ``annotate.aggregate`` as set, or what ``auto`` stands for
    (:func:`curate.crowd.auto.choose`: whether that backbone has real weights, or fixed voting)."""
    from curate.crowd.auto import choose

    cfg = ctx.config.annotate
    if cfg.aggregate.type != "auto":
        return cfg.aggregate, cfg.model.enabled, None
    backbone = None
    if cfg.max_votes_per_image == cfg.votes_per_image:
        policy, use_model = choose(trained_backbone=False, fixed_voting=True)
        why = f"every task gets its {cfg.votes_per_image} votes and no more"
    else:
        backbone = _noise_backbone(ctx)
        policy, use_model = choose(trained_backbone=backbone.trained, fixed_voting=False)
        why = f"the noise backbone {backbone.key} {'has real' if backbone.trained else 'has random'} weights"
    log.info("annotate: aggregate auto: %s%s (%s)", policy.type, " with the model's scores" if use_model else "", why)
    return policy, use_model, backbone


def _noise_backbone(ctx: Context) -> Any:
    from curate.stages.common import load_backbone_with_fallback

    cfg = ctx.config.noise
    return load_backbone_with_fallback(cfg.backbone, cfg.weights, cfg.weights_fallback, cfg.device, ctx.seed)


class _Scorer:
    """The model's out-of-sample P(image shows class) for every task, from the noise stage's backbone
    (embeddings cached in the catalog) and a classifier fit, fold by fold, on the crowd's current labels."""

    def __init__(self, ctx: Context, backbone: Any = None):
        self.ctx = ctx
        self.backbone = backbone  # loaded when first needed, unless given
        self.features: Any = None
        self.shas: list[str] = []

    def scores(self, votes: list) -> dict[tuple[str, str], float]:
        from curate.crowd.scores import current_labels, verification_scores

        if not votes:
            return {}
        if self.features is None:
            self._embed()
        return verification_scores(self.shas, self.features, current_labels(votes),
                                   [r["wnid"] for r in self.ctx.catalog.synsets()], self.ctx.seed)

    def _embed(self) -> None:
        from curate.stages.common import cached_embeddings

        if self.backbone is None:
            self.backbone = _noise_backbone(self.ctx)
        self.shas = sorted({p["sha256"] for p in self.ctx.catalog.downloaded_pairs()})
        self.features = cached_embeddings(self.ctx, self.backbone, self.shas)


def _gold_from_csv(path: Path, pairs: list[Any]) -> list[dict[str, Any]]:
    """Rows of a gold CSV (``sha256`` or ``url``, ``wnid``, ``answer`` yes/no) matched to downloaded images;
    rows that match nothing downloaded yet are skipped (they may match after more downloads)."""
    by_url = {p["url"]: p["sha256"] for p in pairs}
    known = {p["sha256"] for p in pairs}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or ())
            lacking = [c for c in GOLD_COLUMNS if c not in columns]
            if lacking or not columns & {"sha256", "url"}:
                raise ConfigError(f"annotate.gold.path: {path} needs columns sha256 or url, wnid and answer "
                                  f"(has: {', '.join(sorted(columns)) or 'none'})")
            rows = []
            for line, row in enumerate(reader, start=2):
                answer = (row.get("answer") or "").strip().lower()
                if answer not in ("yes", "no"):
                    raise ConfigError(f"annotate.gold.path: {path} line {line}: answer must be yes or no, "
                                      f"not {row.get('answer')!r}")
                sha = (row.get("sha256") or "").strip() or by_url.get((row.get("url") or "").strip())
                if sha in known:
                    rows.append({"sha256": sha, "wnid": row["wnid"].strip(), "answer": answer, "source": "file"})
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"annotate.gold.path: cannot read {path}: {exc}") from None


def _gold_from_truth(ctx: Context, per_class: int) -> list[dict[str, Any]]:
    """Up to ``per_class`` known positives and as many known negatives per class, from the corpus's ground
    truth, the same ones every run (smallest sha256 first)."""
    from curate.crowd.truth import make_truth

    is_true = make_truth(ctx.catalog.truth_table())
    chosen: dict[tuple[str, bool], int] = {}
    rows = []
    pairs = {(p["wnid"], p["sha256"]): p for p in ctx.catalog.downloaded_pairs()}
    for _, pair in sorted(pairs.items()):
        truth = is_true(pair["sha256"], pair["wnid"])
        if truth is None or chosen.get((pair["wnid"], truth), 0) >= per_class:
            continue
        chosen[(pair["wnid"], truth)] = chosen.get((pair["wnid"], truth), 0) + 1
        rows.append({"sha256": pair["sha256"], "wnid": pair["wnid"], "answer": "yes" if truth else "no",
                     "source": "truth"})
    return rows
