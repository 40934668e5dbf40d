"""The label-noise report: one folder an analyst opens in a browser or loads into pandas.

Reads: the per-image table and per-class summary of the noise stage; optionally the other issues
cleanlab's Datalab found (outliers, near-duplicate groups), the confident joint, Datalab's dataset-level
checks and the annotators' statistics; the images (through ``image_path(sha256)``) of the cards shown.
Writes into ``out_dir``:

- ``index.html``: counts, dataset checks, the classes noisiest first, the confident joint as a heatmap
  with the largest confusions, thumbnail cards of label issues, outliers and near-duplicate groups with
  filters by class and issue type, the annotators (:mod:`curate.report.page`);
- ``label_issues``, ``all_labels``, ``class_summary``, ``issues``, ``annotators``, ``confident_joint``
  as ``.csv`` and ``.parquet`` (:mod:`curate.report.tables`);
- ``summary.json``, the counts for ``curate report`` and scripts (:mod:`curate.report.summary`);
- ``noise_rate_by_class.png``, ``confident_joint.png`` (:mod:`curate.report.charts`) and
  ``thumbs/<sha256>.jpg`` (:mod:`curate.report.thumbs`).

:func:`rewrite_with_decisions` writes a published report again with the decisions made since, from its own
tables and ``summary.json`` (no estimate is recomputed): the review stage decides after the noise stage.

Everything is written into ``<name>.incomplete/`` first and swapped into place at the end
(:mod:`curate.atomic`), so a crash never leaves a half report and the previous one survives until the
new one is complete. Links are relative and nothing is loaded from elsewhere: the folder can be zipped
and mailed. On failure: an image that cannot be read gets no thumbnail (a logged warning, a placeholder
in the page); missing columns raise ``ValueError`` naming them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from curate.atomic import published, replace_dir
from curate.report.charts import write_joint_heatmap, write_noise_rate_chart
from curate.report.content import ReportContent, build_content, records
from curate.report.page import render_page
from curate.report.summary import SUMMARY_NAME, build_summary, read_summary, write_summary
from curate.report.tables import write_tables
from curate.report.thumbs import THUMBS_DIR, write_thumbs

log = logging.getLogger(__name__)

CHART_NAME = "noise_rate_by_class.png"
HEATMAP_NAME = "confident_joint.png"
INDEX_NAME = "index.html"


def write_noise_report(
    out_dir: Path,
    table: pd.DataFrame,
    class_summary: pd.DataFrame,
    image_path: Callable[[str], Path],
    title: str,
    meta: dict,
    max_flagged: int = 500,
    thumb_px: int = 128,
    annotators: list[dict] | None = None,
    *,
    issues: pd.DataFrame | None = None,
    joint: pd.DataFrame | None = None,
    dataset_checks: dict[str, dict] | None = None,
    decisions: pd.DataFrame | None = None,
) -> Path:
    """Write the report folder and return the path of its ``index.html``.

    ``table``: one row per image (see :data:`curate.report.content.TABLE_COLUMNS`; optional ``source``,
    ``caption``, ``url``, ``path``, ``votes``, ``n_votes``); ``class_summary``: one row per class;
    ``max_flagged``: the most cards per section of the page (the tables hold every row);
    ``annotators``: per-annotator rows (votes, unsure, gold_votes, gold_accuracy, median_s_per_task);
    ``issues``: Datalab's other issues, one row per (image, kind) with ``sha256``, ``given_label``,
    ``kind``, ``score`` (0..1, lower = more severe) and ``group`` (near-duplicate set); ``joint``: the
    confident joint, given label (index) x suggested label (columns); ``dataset_checks``: name ->
    ``{"score": float, "summary": str}``; ``decisions``: one row per decided (``sha256``, ``given_label``)
    with ``decision`` (keep, drop, relabel, pending), ``decided_by`` (policy, review), ``new_label`` and
    ``decision_reason``.
    """
    content = build_content(table, class_summary, max_flagged, issues=issues, joint=joint,
                            dataset_checks=dataset_checks, annotators=annotators, decisions=decisions)
    out_dir = Path(out_dir)
    with replace_dir(out_dir) as staging:
        thumbs = write_thumbs(staging / THUMBS_DIR, _shown_images(content), image_path, thumb_px)
        files = _write_files(staging, content)
        summary = build_summary(content, title, meta, files["tables"], _summary_files(files), max_flagged)
        write_summary(staging, summary)
        html = render_page(content, title, meta, files, thumbs, thumb_px, max_flagged)
        (staging / INDEX_NAME).write_text(html, encoding="utf-8")
    log.info("noise report: %s (%d label issues, %d other issues, %d images)", out_dir / INDEX_NAME,
             len(content.flagged), len(content.issues), len(content.table))
    return out_dir / INDEX_NAME


def rewrite_with_decisions(out_dir: Path, decisions: pd.DataFrame, image_path: Callable[[str], Path]) -> Path | None:
    """The published report at ``out_dir`` written again with ``decisions`` (as :func:`write_noise_report` takes
    them), from its own tables and summary; None where there is none to rewrite (no report yet, or one that
    looked for no issue)."""
    folder = published(Path(out_dir))
    if folder is None or not (folder / "all_labels.parquet").is_file() or not (folder / SUMMARY_NAME).is_file():
        return None
    summary = read_summary(folder / SUMMARY_NAME)
    tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in summary.get("tables", {})}
    annotators = tables.get("annotators")
    joint = tables.get("confident_joint")
    return write_noise_report(
        folder, tables["all_labels"], tables["class_summary"], image_path, summary["title"], summary["meta"],
        max_flagged=summary.get("max_cards", 500), issues=tables.get("issues"), decisions=decisions,
        annotators=None if annotators is None else records(annotators),
        joint=None if joint is None else joint.set_index("given_label").rename_axis(None),
        dataset_checks=summary.get("dataset_checks"),
    )


def _shown_images(content: ReportContent) -> list[str]:
    """The images that get a card, hence a thumbnail."""
    cards = list(content.flagged_cards)
    for section in content.sections:
        cards += section.cards + [c for g in section.groups for c in g["cards"]]
    return [c["sha256"] for c in cards]


def _write_files(folder: Path, content: ReportContent) -> dict:
    """Tables and charts; returns the names (relative to the page) the page and summary link to."""
    files: dict = {"thumbs": THUMBS_DIR, "summary": SUMMARY_NAME, "noise_rate_chart": CHART_NAME,
                   "joint_heatmap": None, "joint_heatmap_classes": 0}
    files["tables"] = write_tables(folder, content.tables())
    files["noise_rate_chart_classes"] = write_noise_rate_chart(folder / CHART_NAME, content.classes)
    if content.joint is not None and len(content.joint):
        names = dict(zip(content.classes["label"].astype(str), content.classes["name"].astype(str), strict=True))
        files["joint_heatmap_classes"] = write_joint_heatmap(folder / HEATMAP_NAME, content.joint, names)
        files["joint_heatmap"] = HEATMAP_NAME
    return files


def _summary_files(files: dict) -> dict[str, str | None]:
    return {"index": INDEX_NAME, "noise_rate_chart": files["noise_rate_chart"],
            "joint_heatmap": files["joint_heatmap"], "thumbs": files["thumbs"]}
