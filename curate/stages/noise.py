"""``noise`` stage: estimate label noise with cleanlab on backbone embeddings; write the analysts' report.

Reads: accepted labels (one class per image: where the crowd accepted an image for several classes,
the highest-agreement class wins and the others are recorded as ``cross_class_duplicate`` issues)
and the stored images. Writes: ``embeddings`` (cached per image and backbone, committed per chunk so
an interrupted run keeps what it computed), ``issues`` of kind ``label``, and ``report/``
(``index.html``, CSV tables, thumbnails; published whole, see :mod:`curate.atomic`). Classes with
fewer than ``min_images_per_class`` images are left out of the estimate and named in the log and the
report. The fingerprint holds the weights that would be used now (a checkpoint that appeared in the
torch hub cache since a fallback run re-runs the stage), and the stats the backbone actually used.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from curate.config import Section, weights_problem, weights_spec
from curate.stages.base import Context, Stage, StageResult, fingerprint

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from curate.vision.backbones import Backbone

log = logging.getLogger(__name__)
EMBED_CHUNK = 256


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
    # prune_by_class: on Imagenette (25 % flipped) recall 0.96 vs 0.90 for prune_by_noise_rate, same precision
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"] = (
        "prune_by_class"
    )
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

        cfg = ctx.config.noise
        labels = [(r["sha256"], r["wnid"], r["rank"]) for r in ctx.catalog.final_labels()]
        return {"config": cfg.model_dump(mode="json"), "labels": fingerprint(labels),
                "weights_now": weights_identity(cfg.backbone, cfg.weights)}

    def run(self, ctx: Context) -> StageResult:
        from curate.stages.common import load_backbone_with_fallback

        labels = resolve_labels(ctx)
        kept, small = split_small_classes(labels, ctx.config.noise.min_images_per_class)
        if kept["wnid"].nunique() < 2:
            log.warning("noise: fewer than two classes with at least %d images; nothing to estimate",
                        ctx.config.noise.min_images_per_class)
            return StageResult(stats={"images": len(labels), "classes_evaluated": 0, "label_issues": 0})
        cfg = ctx.config.noise
        backbone = load_backbone_with_fallback(cfg.backbone, cfg.weights, cfg.weights_fallback, cfg.device, ctx.seed)
        features = self._embeddings(ctx, backbone, kept)
        table, summary, overall = self._estimate(ctx, kept, features)
        self._store_issues(ctx, table)
        report = self._report(ctx, table, summary, backbone, small, overall)
        stats = {"images": len(kept), "classes_evaluated": int(kept["wnid"].nunique()),
                 "label_issues": int(table["is_label_issue"].sum()), "estimated_noise_rate": round(overall, 4),
                 "classes_too_small": len(small), "backbone": backbone.key}
        return StageResult(stats=stats, outputs={"report": str(report)})

    # ------------------------------------------------------------------ steps
    def _embeddings(self, ctx: Context, backbone: Backbone, labels: pd.DataFrame) -> np.ndarray:
        from curate.stages.common import cached_embeddings

        return cached_embeddings(ctx, backbone, labels["sha256"].tolist(), EMBED_CHUNK)

    def _estimate(self, ctx: Context, labels: pd.DataFrame, features: np.ndarray):
        import pandas as pd

        from curate.errors import StageError
        from curate.labelnoise import find_label_issues, out_of_sample_pred_probs

        cfg = ctx.config.noise
        class_names = sorted(labels["wnid"].unique())
        y = labels["wnid"].map({w: i for i, w in enumerate(class_names)}).to_numpy()
        try:
            pred_probs = out_of_sample_pred_probs(features, y, n_folds=cfg.folds, seed=ctx.seed)
        except ValueError as exc:
            raise StageError(self.name, f"cannot fit the out-of-sample classifier: {exc}") from exc
        result = find_label_issues(y, pred_probs, class_names, filter_by=cfg.filter_by, seed=ctx.seed)
        table = pd.concat([labels.reset_index(drop=True), result.table.reset_index(drop=True)], axis=1)
        return table, result.class_summary, result.overall_noise_rate

    def _store_issues(self, ctx: Context, table: pd.DataFrame) -> None:
        flagged = table[table["is_label_issue"]]
        rows = [
            {"sha256": r.sha256, "wnid": r.given_label, "kind": "label", "score": float(r.label_score),
             "suggested_wnid": r.predicted_label, "detail": f"rank {int(r.issue_rank)}"}
            for r in flagged.itertuples()
        ]
        ctx.catalog.replace_issues(("label",), rows)

    def _report(self, ctx, table, summary, backbone, small, overall):
        from curate.report.noise_report import write_noise_report

        names = ctx.catalog.synset_words()
        captions = {(r["sha256"], r["wnid"]): (r["source"], r["title"]) for r in ctx.catalog.provenance()}
        given = list(zip(table["sha256"], table["given_label"], strict=True))
        table = table.assign(given_name=table["given_label"].map(names),
                             predicted_name=table["predicted_label"].map(names),
                             source=[captions.get(k, (None, None))[0] for k in given],
                             caption=[captions.get(k, (None, None))[1] for k in given])
        summary = summary.assign(name=summary["label"].map(names))
        meta = {"run": ctx.config.run.name, "backbone": backbone.key, "device": str(backbone.device),
                "images": len(table), "classes": int(table["given_label"].nunique()),
                "estimated noise rate": f"{overall:.1%}", "filter": ctx.config.noise.filter_by,
                "folds": ctx.config.noise.folds, "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
        if small:
            meta["classes left out (too few images)"] = ", ".join(f"{w} ({n})" for w, n in small.items())
        if backbone.weights == "none":
            meta["warning"] = "random backbone weights: noise estimates are unreliable"
        return write_noise_report(
            ctx.layout.report, table, summary, image_path=ctx.store.path,
            title=f"Label noise report: {ctx.config.run.name}", meta=meta,
            max_flagged=ctx.config.noise.max_flagged_in_report,
            annotators=[dict(r) for r in ctx.catalog.annotator_stats()],
        )


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
