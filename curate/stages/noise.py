"""``noise`` stage: estimate label noise with cleanlab on backbone embeddings; write the analysts' report.

Reads: accepted labels (one class per image: where the crowd accepted an image for several classes,
the highest-agreement class wins and the others are recorded as ``cross_class_duplicate`` issues),
the stored images and, where a crowd voted, the votes. Writes: ``embeddings`` (cached per image,
backbone, weights, test-time flip and region views, committed per chunk so an interrupted run keeps what it computed
and a rerun embeds only new images), ``issues`` of kind ``label`` (:func:`curate.labelnoise.estimate_label_issues`),
``outlier`` and ``near_duplicate`` (cleanlab's Datalab, :mod:`curate.dataissues`), and ``report/``
(``index.html``, CSV and Parquet tables, thumbnails; published whole, see :mod:`curate.atomic`), whose
annotator table carries CROWDLAB's annotator quality when several people voted. Classes with
fewer than ``min_images_per_class`` images are left out of the estimate and named in the log and the
report. The fingerprint holds the weights that would be used now (a checkpoint that appeared in the
torch hub cache since a fallback run re-runs the stage), and the stats the backbone actually used.

The report shows the crowd as the catalog holds it now: each image's votes of the labelling rounds (the
``annotate.backend`` queue; review answers are named in each decision instead) and the annotators' table.
Their state (:meth:`~curate.catalog.Catalog.vote_state`) and the gold answers are in the fingerprint, so more
votes asked (``--set annotate.votes_per_image=7``) or an edit pulled from Label Studio re-run the stage.
Decided: the whole stage re-runs, not a rebuild of the cards alone. CROWDLAB's annotator quality weighs
every vote against this estimate's out-of-sample probabilities, which the report does not keep (a cards-only
rebuild would show quality computed on the old votes), and votes that change usually change labels, which
the estimate must see anyway. The cost is the probe's refits, the embeddings come from the cache (the demo:
about 50 s on two busy CPU cores). The review's decisions, made after this stage, need no estimate: the
review stage writes them into the report from its own tables
(:func:`curate.report.noise_report.rewrite_with_decisions`); this stage shows those the catalog holds.

Without a trained backbone (``weights: none``, or the ``weights_fallback: none`` path taken) the stage
looks for no issue: on random features cleanlab flags a large, arbitrary share of the images. It embeds
nothing, clears the embedding-based issues of earlier runs, writes a report page that says why there are
none (:mod:`curate.report.skipped`) and records ``skipped`` (the reason and the fix) and
``backbone_trained: false``, the one fact the later stages read (:func:`curate.stages.review.flags_trusted`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from curate.sections import Section, weights_problem, weights_spec
from curate.stages.base import Context, Stage, StageResult, fingerprint

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from curate.vision.backbones import Backbone

log = logging.getLogger(__name__)
EMBED_CHUNK = 256
NO_TRAINED_BACKBONE = ("no trained backbone: give ImageNet weights with --set noise.weights=FILE or put the "
                       "checkpoint in the torch hub cache")


class NoiseConfig(Section):
    backbone: str = "resnet50"
    weights: str = Field("imagenet", description="imagenet | none | path to a state_dict")
    weights_fallback: Literal["none"] | None = Field(
        None, description="what to use when ImageNet weights cannot be loaded; unset = stop with an error"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(32, ge=1)
    num_workers: int = Field(1, ge=0, description="image-decoding worker processes for embedding")
    folds: int = Field(5, ge=2)
    # measurements behind these defaults: the table above curate.labelnoise.DEFAULT_ROUNDS
    rounds: int = Field(2, ge=1, le=5, description="refits without the previous round's flags (1: no refit)")
    filter_by: Literal["calibrated_count", "prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                       "predicted_neq_given"] = "calibrated_count"
    # Imagenette-128, 2 rounds, F1 at 5 / 25 / 50 % noise: 0.953 / 0.976 / 0.984 plain, +0.001 to +0.003 with
    # the flip, for a second forward pass per image
    test_time_flip: bool = Field(False, description="also embed each image mirrored and average the two")
    # Imagenette-128, 2 rounds, F1 at 5 / 25 / 50 %: 0.953 / 0.974 / 0.982 with one view, see
    # curate.labelnoise.DEFAULT_ROUNDS for the measurement with the region views
    region_views: bool = Field(True, description="also embed the four corner windows of the backbone's last "
                               "feature map (same forward pass); the probe trains and scores on all five views")
    datalab: list[Literal["outlier", "near_duplicate", "non_iid"]] = Field(
        ["outlier", "near_duplicate", "non_iid"], description="cleanlab Datalab checks run on the same embeddings")
    min_images_per_class: int = Field(5, ge=2)
    max_flagged_in_report: int = Field(500, ge=0)

    def resolve_paths(self, base) -> None:
        self.weights = weights_spec(self.weights, base)

    def check_inputs(self, where: str) -> list[str]:
        return weights_problem(self.weights, f"{where}.weights")


class NoiseStage(Stage):
    name = "noise"
    description = "estimate label noise with cleanlab on backbone embeddings and write the report"
    Config = NoiseConfig

    def fingerprint_inputs(self, ctx: Context) -> object:
        from curate.vision.backbones import weights_identity

        cfg, crowd = ctx.config.noise, ctx.config.annotate.backend.type
        labels = [(r["sha256"], r["wnid"], r["p_true"], r["rank"]) for r in ctx.catalog.final_labels()]
        return {"config": cfg.model_dump(mode="json"), "labels": fingerprint(labels),
                "weights_now": weights_identity(cfg.backbone, cfg.weights),
                "votes": ctx.catalog.vote_state(crowd), "crowd": crowd,
                "gold": fingerprint(sorted(ctx.catalog.gold_answers().items()))}

    def outputs(self, ctx: Context) -> dict[str, str]:
        from curate.atomic import published

        return {"report": str(ctx.layout.report_index)} if published(ctx.layout.report) else {}

    def run(self, ctx: Context) -> StageResult:
        from curate.stages.common import embedding_key, load_backbone_with_fallback

        labels = resolve_labels(ctx)
        kept, small = split_small_classes(labels, ctx.config.noise.min_images_per_class)
        if kept["wnid"].nunique() < 2:
            log.warning("noise: fewer than two classes with at least %d images; nothing to estimate",
                        ctx.config.noise.min_images_per_class)
            return StageResult(stats={"images": len(labels), "classes_evaluated": 0, "label_issues": 0})
        cfg = ctx.config.noise
        backbone = load_backbone_with_fallback(cfg.backbone, cfg.weights, cfg.weights_fallback, cfg.device, ctx.seed)
        if not backbone.trained:
            return self._skip(ctx, kept, backbone)
        features = self._embeddings(ctx, backbone, kept)
        table, result = self._estimate(ctx, kept, features)
        found = self._data_issues(ctx, kept, features[:, 0] if features.ndim == 3 else features)
        self._store_issues(ctx, table, found.issues)
        views = features.shape[1] if features.ndim == 3 else 1
        report = self._report(ctx, table, result, found, backbone, small, views)
        counts = found.issues["kind"].value_counts()
        stats = {"images": len(kept), "classes_evaluated": int(kept["wnid"].nunique()),
                 "label_issues": int(table["is_label_issue"].sum()), "views_per_image": views,
                 "estimated_noise_rate": round(result.overall_noise_rate, 4),
                 "outliers": int(counts.get("outlier", 0)), "near_duplicates": int(counts.get("near_duplicate", 0)),
                 "classes_too_small": len(small), "backbone": backbone.key, "backbone_trained": True,
                 "embeddings": embedding_key(backbone, ctx.config.noise.test_time_flip, views > 1)}
        if "non_iid" in found.checks:
            stats["non_iid_p_value"] = round(found.checks["non_iid"]["score"], 4)
        return StageResult(stats=stats, outputs={"report": str(report)})

    # ------------------------------------------------------------------ steps
    def _skip(self, ctx: Context, labels: pd.DataFrame, backbone: Backbone) -> StageResult:
        """No trained backbone: no issue is looked for, those of an earlier run go, the report says why."""
        from curate.report.skipped import write_skipped_report

        log.warning("noise: skipped (%s)", NO_TRAINED_BACKBONE)
        ctx.catalog.replace_issues(("label",), [])
        ctx.catalog.replace_issues(("outlier", "near_duplicate"), [])
        names = ctx.catalog.synset_words()
        classes = [{"label": w, "name": names.get(w, w), "n_given": int(n)}
                   for w, n in sorted(labels["wnid"].value_counts().items())]
        meta = {"run": ctx.config.run.name, "backbone": backbone.key,
                "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
        report = write_skipped_report(ctx.layout.report, f"Label noise report: {ctx.config.run.name}", meta,
                                      NO_TRAINED_BACKBONE, classes)
        stats = {"skipped": NO_TRAINED_BACKBONE, "images": len(labels), "backbone": backbone.key,
                 "backbone_trained": False}
        return StageResult(stats=stats, outputs={"report": str(report)})

    def _embeddings(self, ctx: Context, backbone: Backbone, labels: pd.DataFrame) -> np.ndarray:
        from curate.stages.common import cached_embeddings

        return cached_embeddings(ctx, backbone, labels["sha256"].tolist(), EMBED_CHUNK, all_views=True)

    def _estimate(self, ctx: Context, labels: pd.DataFrame, features: np.ndarray):
        import pandas as pd

        from curate.errors import StageError
        from curate.labelnoise import estimate_label_issues

        cfg = ctx.config.noise
        class_names = sorted(labels["wnid"].unique())
        y = labels["wnid"].map({w: i for i, w in enumerate(class_names)}).to_numpy()
        try:
            result = estimate_label_issues(features, y, class_names, n_folds=cfg.folds, seed=ctx.seed,
                                           rounds=cfg.rounds, filter_by=cfg.filter_by)
        except ValueError as exc:
            raise StageError(self.name, f"cannot fit the out-of-sample classifier: {exc}") from exc
        table = pd.concat([labels.reset_index(drop=True), result.table.reset_index(drop=True)], axis=1)
        return table, result

    def _data_issues(self, ctx: Context, labels: pd.DataFrame, features: np.ndarray):
        """Datalab's outliers and near duplicates (rows of ``labels``), and its non-IID check along the
        order the images were collected in."""
        from curate.dataissues import find_data_issues

        first_seen = ctx.catalog.collection_order()
        order = sorted(range(len(labels)), key=lambda i: first_seen.get(labels["sha256"].iat[i], float("inf")))
        y = labels["wnid"].astype("category").cat.codes.to_numpy()
        found = find_data_issues(features, y, order=order, checks=ctx.config.noise.datalab)
        positions = found.issues["position"].to_numpy(dtype=int)
        found.issues = found.issues.assign(sha256=labels["sha256"].to_numpy()[positions],
                                           given_label=labels["wnid"].to_numpy()[positions]).drop(columns="position")
        return found

    def _store_issues(self, ctx: Context, table: pd.DataFrame, data_issues: pd.DataFrame) -> None:
        flagged = table[table["is_label_issue"]]
        rows = [
            {"sha256": r.sha256, "wnid": r.given_label, "kind": "label", "score": float(r.label_score),
             "suggested_wnid": r.predicted_label, "detail": f"rank {int(r.issue_rank)}"}
            for r in flagged.itertuples()
        ]
        ctx.catalog.replace_issues(("label",), rows)
        ctx.catalog.replace_issues(("outlier", "near_duplicate"), [
            {"sha256": r.sha256, "wnid": r.given_label, "kind": r.kind, "score": float(r.score),
             "suggested_wnid": None, "detail": None if r.group != r.group else f"group {int(r.group)}"}
            for r in data_issues.itertuples()
        ])

    def _report(self, ctx, table, result, found, backbone, small, views):
        from curate.report.noise_report import write_noise_report
        from curate.stages.common import provenance
        from curate.stages.review import report_decisions

        cfg = ctx.config.noise
        names = ctx.catalog.synset_words()
        origin = provenance(ctx).drop_duplicates(["sha256", "wnid"])
        table = table.merge(origin[["sha256", "wnid", "source", "url", "title"]].rename(
            columns={"wnid": "given_label", "title": "caption"}), on=["sha256", "given_label"], how="left")
        table = table.assign(given_name=table["given_label"].map(names),
                             predicted_name=table["predicted_label"].map(names),
                             path=[_local_path(u) for u in table["url"]])
        votes, annotators = self._crowd(ctx, table, result)
        table = table.drop(columns="n_votes")  # the labels' count at aggregation; the catalog's now is in votes
        if votes is not None:
            table = table.merge(votes, on=["sha256", "given_label"], how="left")
        summary = result.class_summary.assign(name=result.class_summary["label"].map(names))
        joint = _joint_counts(result, len(table))
        meta = {"run": ctx.config.run.name, "backbone": backbone.key, "device": str(backbone.device),
                "images": len(table), "classes": int(table["given_label"].nunique()),
                "estimated noise rate": f"{result.overall_noise_rate:.1%}", "filter": cfg.filter_by,
                "rounds": cfg.rounds, "folds": cfg.folds, "test-time flip": "yes" if cfg.test_time_flip else "no",
                "views per image": views,
                "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
        if small:
            meta["classes left out (too few images)"] = ", ".join(f"{w} ({n})" for w, n in small.items())
        if votes is None:
            meta["labels"] = "as given (no crowd voted)"
        return write_noise_report(
            ctx.layout.report, table, summary, image_path=ctx.store.path,
            title=f"Label noise report: {ctx.config.run.name}", meta=meta, max_flagged=cfg.max_flagged_in_report,
            annotators=annotators, issues=found.issues, joint=joint, dataset_checks=found.checks,
            decisions=report_decisions(ctx.catalog),
        )

    @staticmethod
    def _crowd(ctx, table, result):
        """Per image, the labelling rounds' current votes for the given class (text and count); per annotator,
        the catalog's statistics of those rounds with CROWDLAB's quality, weighed against the noise stage's
        out-of-sample probabilities. Nothing where no crowd voted (an audit's given labels are no votes).
        The review's answers are not among them: each reviewed image's decision names them."""
        import pandas as pd

        from curate.crowd.aggregate import group_votes
        from curate.crowd.crowdlab import Crowdlab
        from curate.crowd.given import ANNOTATOR as GIVEN

        crowd = ctx.config.annotate.backend.type
        tasks = group_votes(ctx.catalog.vote_table(complete_only=False, backend=crowd))
        if not tasks or {a for t in tasks.values() for a, _ in t.answers} == {GIVEN}:
            return None, []
        annotators = [dict(r) for r in ctx.catalog.annotator_stats(backend=crowd)]
        column = {w: k for k, w in enumerate(result.class_summary["label"])}
        row = {sha: i for i, sha in enumerate(table["sha256"])}
        scores = {(sha, wnid): float(result.pred_probs[row[sha], column[wnid]])
                  for sha, wnid in tasks if sha in row and wnid in column}
        quality = Crowdlab.annotator_quality(list(tasks.values()), scores)
        for annotator in annotators:
            annotator.update(quality.get(annotator["annotator"], {}))
        votes = pd.DataFrame([
            {"sha256": t.sha256, "given_label": t.wnid, "n_votes": len(t.answers),
             "votes": f"{t.yes} yes / {t.no} no" + (f" / {len(t.answers) - t.yes - t.no} unsure"
                                                    if len(t.answers) > t.yes + t.no else "")}
            for t in tasks.values()])
        return votes, annotators


def _joint_counts(result, n_images: int) -> pd.DataFrame:
    """cleanlab's calibrated joint of given (rows) and true (columns) labels, as image counts."""
    import pandas as pd

    labels = list(result.class_summary["label"])
    return pd.DataFrame((result.joint * n_images).round().astype(int), index=labels, columns=labels)


def _local_path(url: object) -> str | None:
    """The image's path as its source shows it, for sources of local files (relative to their root)."""
    if not isinstance(url, str) or "://" in url:
        return None
    return url


def resolve_labels(ctx: Context) -> pd.DataFrame:
    """One class per accepted image (catalog.final_labels); the other classes become issues."""
    import pandas as pd

    frame = pd.DataFrame([dict(r) for r in ctx.catalog.final_labels()],
                         columns=["sha256", "wnid", "p_true", "n_votes", "path", "rank"])
    winners = frame[frame["rank"] == 1].drop(columns="rank").reset_index(drop=True)
    chosen = dict(zip(winners["sha256"], winners["wnid"], strict=True))
    ctx.catalog.replace_issues(("cross_class_duplicate",), [
        {"sha256": r.sha256, "wnid": r.wnid, "kind": "cross_class_duplicate", "score": float(r.p_true),
         "suggested_wnid": chosen[r.sha256], "detail": "accepted for several classes; kept in the suggested one"}
        for r in frame[frame["rank"] > 1].itertuples()
    ])
    return winners


def split_small_classes(labels: pd.DataFrame, minimum: int) -> tuple[pd.DataFrame, dict[str, int]]:
    counts = labels["wnid"].value_counts()
    small = {w: int(n) for w, n in counts.items() if n < minimum}
    if small:
        log.warning("noise: classes with fewer than %d images left out: %s", minimum, small)
    return labels[~labels["wnid"].isin(small)].reset_index(drop=True), small
