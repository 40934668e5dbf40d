"""The label-noise report: one folder an analyst opens in a browser or loads into pandas.

Reads: the per-image table and per-class summary of the noise stage, and the images (through
``image_path(sha256)``) of the flagged rows. Writes into ``out_dir``: ``index.html`` (jinja2,
autoescaped, inline CSS, no external assets), ``label_issues.csv`` (flagged rows by rank),
``all_labels.csv``, ``class_summary.csv``, ``noise_rate_by_class.png`` and ``thumbs/<sha256>.jpg``.
Everything is written into ``<name>.incomplete/`` first and swapped into place at the end
(:mod:`curate.atomic`), so a crash never leaves a half report and the previous one survives until the
new one is complete. Web-sourced text (captions, sources) is escaped in the page (jinja2 autoescape)
and neutralised against spreadsheet formulas in the CSVs (:mod:`curate.tables`).
On failure: an image that cannot be read gets no thumbnail (a logged warning, a placeholder in the
page); missing table columns raise ``ValueError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from curate.atomic import replace_dir
from curate.tables import write_csv

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("sha256", "given_label", "given_name", "predicted_label", "predicted_name", "label_score",
                 "is_label_issue", "issue_rank")
SUMMARY_COLUMNS = ("label", "name", "n_given", "n_label_issues", "estimated_noise_rate", "label_quality")
CHART_NAME = "noise_rate_by_class.png"
THUMBS_DIR = "thumbs"
NAME_COLUMNS = {"given_name": "given_label", "predicted_name": "predicted_label"}


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
) -> Path:
    """Write the report folder and return the path of its ``index.html``; ``annotators``: per-annotator
    rows (votes, unsure, gold_votes, gold_accuracy, median_s_per_task), shown and written as a CSV."""
    _require_columns(table, TABLE_COLUMNS, "table")
    _require_columns(class_summary, SUMMARY_COLUMNS, "class_summary")
    out_dir = Path(out_dir)
    flagged = table[table["is_label_issue"]].sort_values("issue_rank")
    summary = class_summary.sort_values("estimated_noise_rate", ascending=False)
    with replace_dir(out_dir) as staging:
        _write_tables(staging, table, flagged, class_summary)
        if annotators:
            write_csv(pd.DataFrame(annotators), staging / "annotators.csv")
        thumbs = _write_thumbs(staging / THUMBS_DIR, flagged.head(max_flagged), image_path, thumb_px)
        _write_chart(staging / CHART_NAME, summary)
        html = _render(title, meta, table, flagged, summary, thumbs, max_flagged, thumb_px, annotators or [])
        (staging / "index.html").write_text(html, encoding="utf-8")
    log.info("noise report: %s (%d flagged of %d)", out_dir / "index.html", len(flagged), len(table))
    return out_dir / "index.html"


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns: {', '.join(missing)}")


def _write_tables(folder: Path, table: pd.DataFrame, flagged: pd.DataFrame, summary: pd.DataFrame) -> None:
    write_csv(flagged, folder / "label_issues.csv")
    write_csv(table, folder / "all_labels.csv")
    write_csv(summary, folder / "class_summary.csv")


def _write_thumbs(
    folder: Path, rows: pd.DataFrame, image_path: Callable[[str], Path], thumb_px: int
) -> set[str]:
    """JPEG thumbnails of the flagged images; returns the sha256 of those written."""
    folder.mkdir()
    written: set[str] = set()
    for sha256 in tqdm(rows["sha256"].unique(), desc="thumbnails", unit="img", disable=len(rows) < 100):
        try:
            with Image.open(image_path(sha256)) as image:
                thumb = ImageOps.exif_transpose(image).convert("RGB")
                thumb.thumbnail((thumb_px, thumb_px))
                thumb.save(folder / f"{sha256}.jpg", quality=85)
            written.add(sha256)
        except (OSError, ValueError) as exc:
            log.warning("no thumbnail for %s: %s", sha256, exc)
    return written


def _write_chart(path: Path, summary: pd.DataFrame) -> None:
    """Horizontal bars of cleanlab's estimated noise rate per class, noisiest on top."""
    rows = summary.iloc[::-1]
    fig = Figure(figsize=(7, max(2.0, 0.28 * len(rows) + 0.9)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    names = _with_names(rows, {"name": "label"})["name"]
    ax.barh([f"{n} ({lbl})" for n, lbl in zip(names, rows["label"], strict=True)],
            rows["estimated_noise_rate"], color="#c0392b")
    ax.set_xlabel("estimated noise rate (fraction of given labels that are wrong)")
    ax.set_xlim(0, max(0.05, float(rows["estimated_noise_rate"].max()) * 1.1))
    ax.tick_params(axis="y", labelsize=8)
    fig.savefig(path)


def _render(title: str, meta: dict, table: pd.DataFrame, flagged: pd.DataFrame, summary: pd.DataFrame,
            thumbs: set[str], max_flagged: int, thumb_px: int, annotators: list[dict]) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("curate.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    meta = {**meta}
    meta.setdefault("generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    return env.get_template("noise_report.html.j2").render(
        title=title,
        meta=meta,
        n_images=len(table),
        n_flagged=len(flagged),
        classes=_with_names(summary, {"name": "label"}).to_dict("records"),
        flagged=_with_names(flagged.head(max_flagged), NAME_COLUMNS).to_dict("records"),
        thumbs=thumbs,
        thumbs_dir=THUMBS_DIR,
        thumb_px=thumb_px,
        chart=CHART_NAME,
        annotators=annotators,
    )


def _with_names(frame: pd.DataFrame, name_to_label: dict[str, str]) -> pd.DataFrame:
    """Human names where known, the wnid where not (a synset without lemmas must not show "nan")."""
    return frame.assign(**{name: frame[name].fillna(frame[label]) for name, label in name_to_label.items()})
