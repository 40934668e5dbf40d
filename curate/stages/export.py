"""``export`` stage: write the ImageNet-style class-folder dataset.

Reads: final labels (one class per accepted image), label issues, candidates' provenance, stage stats.
Writes: ``<run_dir>/export/`` built in ``export.incomplete/`` and renamed on success, so a reader
never sees half an export:
``train/<wnid>/<wnid>_<n>.JPEG``, ``val/<wnid>/...`` (seeded, stratified split), ``synsets.txt``
(``n02084071 dog, domestic dog, Canis familiaris``, ImageNet's LOC_synset_mapping format),
``labels.csv`` (one row per exported image with provenance) and ``datasheet.json``.
``torchvision.datasets.ImageFolder`` loads either split directly.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from curate import __version__
from curate.runner import Context, Stage, StageResult, fingerprint

log = logging.getLogger(__name__)


class ExportStage(Stage):
    name = "export"
    description = "write the ImageNet-style class-folder dataset with synset mapping and datasheet"

    def fingerprint_inputs(self, ctx: Context) -> object:
        labels = [tuple(r) for r in ctx.catalog.final_labels()]
        issues = sorted(ctx.catalog.issue_shas("label"))
        return {"config": ctx.config.export.model_dump(mode="json"), "labels": fingerprint(labels),
                "issues": fingerprint(issues), "noise_run": ctx.catalog.last_ok_fingerprint("noise")}

    def run(self, ctx: Context) -> StageResult:
        table = self._select(ctx)
        table = assign_split(table, ctx.config.export.val_fraction, ctx.seed)
        target = ctx.run_dir / "export"
        staging = ctx.run_dir / "export.incomplete"
        shutil.rmtree(staging, ignore_errors=True)
        self._write_images(ctx, table, staging)
        self._write_synsets(ctx, table, staging)
        table.drop(columns=["store_path"]).to_csv(staging / "labels.csv", index=False)
        self._write_datasheet(ctx, table, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        counts = table["split"].value_counts()
        stats = {"classes": int(table["wnid"].nunique()), "train": int(counts.get("train", 0)),
                 "val": int(counts.get("val", 0)), "dropped_label_issues": int(table.attrs["dropped_issues"])}
        return StageResult(stats=stats, outputs={"export": str(target)})

    # ------------------------------------------------------------------ steps
    def _select(self, ctx: Context) -> pd.DataFrame:
        cfg = ctx.config.export
        rows = [dict(r) for r in ctx.catalog.final_labels() if r["rank"] == 1]
        table = pd.DataFrame(rows, columns=["sha256", "wnid", "p_true", "n_votes", "path", "rank"])
        table = table.drop(columns="rank").rename(columns={"path": "store_path"})
        flagged = ctx.catalog.issue_shas("label")
        table["label_issue"] = table["sha256"].isin(flagged)
        drop = cfg.drop_label_issues and self._issues_trustworthy(ctx)
        dropped = int(table["label_issue"].sum()) if drop else 0
        if drop:
            table = table[~table["label_issue"]]
        counts = table["wnid"].value_counts()
        small = counts[counts < cfg.min_images_per_class]
        if len(small):
            log.warning("export: classes below %d images left out: %s", cfg.min_images_per_class, dict(small))
        table = table[~table["wnid"].isin(small.index)]
        table = table.merge(provenance(ctx), on=["sha256", "wnid"], how="left")
        table = table.sort_values(["wnid", "sha256"]).reset_index(drop=True)
        table.attrs["dropped_issues"] = dropped
        return table

    @staticmethod
    def _issues_trustworthy(ctx: Context) -> bool:
        """Issues found on an untrained backbone (the ``weights_fallback: none`` path) are kept in the
        export, marked in labels.csv, instead of deleting a random share of the dataset."""
        noise = ctx.catalog.stage_stats().get("noise", {})
        if str(noise.get("backbone", "")).endswith(":none"):
            log.warning("export: label issues came from an untrained backbone; flagged images are kept "
                        "(label_issue column in labels.csv), not dropped")
            return False
        return True

    def _write_images(self, ctx: Context, table: pd.DataFrame, root: Path) -> None:
        paths = []
        for row in ctx.progress(table.itertuples(), total=len(table), desc="export", unit="img"):
            rel = Path(row.split) / row.wnid / f"{row.wnid}_{row.n}.JPEG"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ctx.run_dir / row.store_path, root / rel)
            paths.append(rel.as_posix())
        table.insert(0, "path", paths)

    def _write_synsets(self, ctx: Context, table: pd.DataFrame, root: Path) -> None:
        lemmas = {r["wnid"]: r["lemmas"] for r in ctx.catalog.synsets()}
        lines = [f"{wnid} {lemmas[wnid]}\n" for wnid in sorted(table["wnid"].unique())]
        (root / "synsets.txt").write_text("".join(lines), encoding="utf-8")

    def _write_datasheet(self, ctx: Context, table: pd.DataFrame, root: Path) -> None:
        sheet = datasheet(ctx, table)
        (root / "datasheet.json").write_text(json.dumps(sheet, indent=2, default=str), encoding="utf-8")


def assign_split(table: pd.DataFrame, val_fraction: float, seed: int) -> pd.DataFrame:
    """Per class: shuffle with a seed of its own, first round(n * val_fraction) go to val (at least one
    when the class has two or more images and val_fraction > 0). Numbering ``n`` follows sha256 order."""
    table = table.copy()
    table["split"] = "train"
    table["n"] = table.groupby("wnid").cumcount() + 1
    for wnid, group in table.groupby("wnid"):
        order = sorted(group.index)
        random.Random(f"{seed}:split:{wnid}").shuffle(order)
        n_val = round(len(order) * val_fraction)
        if val_fraction > 0 and len(order) >= 2:
            n_val = min(max(n_val, 1), len(order) - 1)
        table.loc[order[:n_val], "split"] = "val"
    return table


def provenance(ctx: Context) -> pd.DataFrame:
    """The first candidate (by id) that brought each (image, class): source, URL, licence, creator."""
    rows = ctx.catalog.query(
        "SELECT sha256, wnid, source, url, page_url, title, license, creator FROM candidates "
        "WHERE id IN (SELECT MIN(id) FROM candidates WHERE status = 'downloaded' GROUP BY sha256, wnid)"
    )
    columns = ["sha256", "wnid", "source", "url", "page_url", "title", "license", "creator"]
    return pd.DataFrame([dict(r) for r in rows], columns=columns)


def datasheet(ctx: Context, table: pd.DataFrame) -> dict:
    """Datasheet for the export (after Gebru et al.): composition, collection, labelling, noise."""
    cat = ctx.catalog
    synsets = {r["wnid"]: dict(r) for r in cat.synsets()}
    per_class = {
        wnid: {"words": synsets[wnid]["lemmas"], "gloss": synsets[wnid]["gloss"],
               "train": int((g["split"] == "train").sum()), "val": int((g["split"] == "val").sum())}
        for wnid, g in table.groupby("wnid")
    }
    stage_stats = cat.stage_stats()
    return {
        "name": ctx.config.run.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "created_with": f"curate {__version__}",
        "wordnet": "WordNet 3.0",
        "layout": "ImageNet class folders: {split}/{wnid}/{wnid}_{n}.JPEG",
        "counts": {"images": len(table), "classes": len(per_class),
                   "train": int((table["split"] == "train").sum()), "val": int((table["split"] == "val").sum())},
        "classes": per_class,
        "collection": {
            "sources": dict(Counter(table["source"].fillna("unknown"))),
            "licenses": dict(Counter(table["license"].fillna("unknown"))),
            "candidates_by_status": {r[0]: r[1] for r in cat.query(
                "SELECT status, COUNT(*) FROM candidates GROUP BY status")},
            "exact_duplicates": {"within_class": cat.scalar("SELECT COUNT(*) FROM candidates WHERE status='duplicate'"),
                                 "across_classes": cat.scalar("SELECT COUNT(*) FROM issues "
                                                              "WHERE kind='cross_class_duplicate'")},
        },
        "labeling": {
            "backend": ctx.config.annotate.backend, "aggregation": ctx.config.annotate.aggregate,
            "votes_per_image": ctx.config.annotate.votes_per_image,
            "votes": cat.scalar("SELECT COUNT(*) FROM votes"),
            "annotators": cat.scalar("SELECT COUNT(DISTINCT annotator) FROM votes"),
            "question": "Is this a <first lemma>? (<gloss>)",
            **{k: v for k, v in stage_stats.get("annotate", {}).items() if k != "seconds"},
        },
        "label_noise": {
            "method": "cleanlab find_label_issues on out-of-sample logistic-regression probabilities "
                      f"over {ctx.config.noise.backbone} embeddings",
            "flagged": len(cat.issue_shas("label")),
            "flagged_dropped_from_export": int(table.attrs["dropped_issues"]),
            "exported_flagged": int(table["label_issue"].sum()),
            **{k: v for k, v in stage_stats.get("noise", {}).items() if k != "seconds"},
        },
        "split": {"val_fraction": ctx.config.export.val_fraction, "seed": ctx.seed, "stratified": True},
    }
