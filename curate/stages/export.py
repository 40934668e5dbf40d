"""``export`` stage: write the dataset in the configured formats, with labels.csv and a datasheet.

Reads: final labels (one class per accepted image), label issues, candidates' provenance, stage stats.
Writes: ``<run_dir>/export/``, built in ``export.incomplete/`` and swapped in only when complete
(:mod:`curate.atomic`), so the previous export survives any failure or kill and a reader never sees
half an export. Each writer of ``export.formats`` writes its files (the default ``imagenet`` writer:
``train/<wnid>/<wnid>_<n>.JPEG``, ``val/…``, ``synsets.txt``); beside them ``labels.csv`` (one row per
exported image with provenance: URLs of local corpora relative to the corpus root, text cells
neutralised against spreadsheet formulas) and ``datasheet.json``.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from curate import __version__
from curate.config import Section, plugin_config
from curate.exporters import WRITERS
from curate.stages.base import Context, Stage, StageResult, fingerprint

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class ExportConfig(Section):
    formats: list[plugin_config(WRITERS)] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [{"type": "imagenet"}], validate_default=True, min_length=1,
        description="writers, by name or with settings: [imagenet]",
    )
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    drop_label_issues: bool = True
    min_images_per_class: int = Field(1, ge=1)


class ExportStage(Stage):
    name = "export"
    description = "write the ImageNet-style class-folder dataset with synset mapping and datasheet"
    Config = ExportConfig

    def fingerprint_inputs(self, ctx: Context) -> object:
        labels = [tuple(r) for r in ctx.catalog.final_labels()]
        issues = sorted(ctx.catalog.issue_shas("label"))
        return {"config": ctx.config.export.model_dump(mode="json"), "labels": fingerprint(labels),
                "issues": fingerprint(issues), "noise_run": ctx.catalog.last_ok_fingerprint("noise")}

    def run(self, ctx: Context) -> StageResult:
        from curate.atomic import replace_dir
        from curate.exporters import create_writer

        table = assign_split(self._select(ctx), ctx.config.export.val_fraction, ctx.seed)
        dropped = int(table.attrs["dropped_issues"])
        with replace_dir(ctx.layout.export) as staging:
            for writer_config in ctx.config.export.formats:
                table = create_writer(writer_config).write(table, staging, ctx)
            self._write_labels(ctx, table, staging)
            self._write_datasheet(ctx, table, staging, dropped)
        counts = table["split"].value_counts()
        stats = {"classes": int(table["wnid"].nunique()), "train": int(counts.get("train", 0)),
                 "val": int(counts.get("val", 0)), "dropped_label_issues": dropped}
        return StageResult(stats=stats, outputs={"export": str(ctx.layout.export)})

    # ------------------------------------------------------------------ steps
    def _select(self, ctx: Context) -> pd.DataFrame:
        import pandas as pd

        cfg = ctx.config.export
        rows = [dict(r) for r in ctx.catalog.final_labels() if r["rank"] == 1]
        table = pd.DataFrame(rows, columns=["sha256", "wnid", "p_true", "n_votes", "path", "rank"])
        table = table.drop(columns="rank").rename(columns={"path": "store_path"})
        table["label_issue"] = table["sha256"].isin(ctx.catalog.issue_shas("label"))
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

    @staticmethod
    def _write_labels(ctx: Context, table: pd.DataFrame, root: Path) -> None:
        from curate.tables import write_csv

        write_csv(table.drop(columns=["store_path"]), root / "labels.csv")

    @staticmethod
    def _write_datasheet(ctx: Context, table: pd.DataFrame, root: Path, dropped: int) -> None:
        sheet = datasheet(ctx, table, dropped)
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
    """The first candidate (by id) that brought each (image, class): source, URL, licence, creator.
    URLs are shown as their source shows them (local corpora: relative to the corpus root)."""
    import pandas as pd

    from curate.sources import create_source

    display = {s.instance: s.display_url for s in map(create_source, ctx.config.candidates.sources)}
    rows = [dict(r) for r in ctx.catalog.provenance()]
    for row in rows:
        row["url"] = display.get(row["source"], _basename_if_file)(row["url"])
    columns = ["sha256", "wnid", "source", "url", "page_url", "title", "license", "creator"]
    return pd.DataFrame(rows, columns=columns)


def _basename_if_file(url: str) -> str:
    """A ``file://`` URL of a source no longer configured: its file name only, never the curator's path."""
    return url.rsplit("/", 1)[-1] if url.startswith("file://") else url


def datasheet(ctx: Context, table: pd.DataFrame, dropped: int) -> dict:
    """Datasheet for the export (after Gebru et al.): composition, collection, labelling, noise."""
    cat = ctx.catalog
    synsets = {r["wnid"]: dict(r) for r in cat.synsets()}
    per_class = {
        wnid: {"words": synsets[wnid]["lemmas"], "gloss": synsets[wnid]["gloss"],
               "train": int((g["split"] == "train").sum()), "val": int((g["split"] == "val").sum())}
        for wnid, g in table.groupby("wnid")
    }
    stage_stats = cat.stage_stats()
    statuses = cat.candidate_status_counts()
    return {
        "name": ctx.config.run.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "created_with": f"curate {__version__}",
        "wordnet": "WordNet 3.0",
        "formats": [f.type for f in ctx.config.export.formats],
        "counts": {"images": len(table), "classes": len(per_class),
                   "train": int((table["split"] == "train").sum()), "val": int((table["split"] == "val").sum())},
        "classes": per_class,
        "collection": {
            "sources": dict(Counter(table["source"].fillna("unknown"))),
            "licenses": dict(Counter(table["license"].fillna("unknown"))),
            "candidates_by_status": statuses,
            "exact_duplicates": {"within_class": statuses.get("duplicate", 0),
                                 "across_classes": cat.count_issues("cross_class_duplicate")},
        },
        "labeling": {
            "backend": ctx.config.annotate.backend.type, "aggregation": ctx.config.annotate.aggregate.type,
            "votes_per_image": ctx.config.annotate.votes_per_image,
            **cat.vote_totals(),
            "question": "Is this a <first lemma>? (<gloss>)",
            **{k: v for k, v in stage_stats.get("annotate", {}).items() if k != "seconds"},
        },
        "label_noise": {
            "method": "cleanlab find_label_issues on out-of-sample logistic-regression probabilities "
                      f"over {ctx.config.noise.backbone} embeddings",
            "flagged": len(cat.issue_shas("label")),
            "flagged_dropped_from_export": dropped,
            "exported_flagged": int(table["label_issue"].sum()),
            **{k: v for k, v in stage_stats.get("noise", {}).items() if k != "seconds"},
        },
        "split": {"val_fraction": ctx.config.export.val_fraction, "seed": ctx.seed, "stratified": True},
    }
