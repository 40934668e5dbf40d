"""Write the label-noise report analysts review.

Reads: the per-image table (sha256, given/predicted label and name, label_score, is_label_issue,
issue_rank), the per-class summary and the stored images. Writes into ``out_dir``: ``index.html``
(standalone, inline CSS, autoescaped), ``label_issues.csv`` (flagged rows, most likely wrong first),
``all_labels.csv``, ``class_summary.csv``, ``noise_by_class.png`` and ``thumbs/<sha256>.jpg`` for
flagged images. The HTML is written last, through a temporary file, so a report that exists is whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from jinja2 import Environment, PackageLoader, select_autoescape  # noqa: E402
from PIL import Image  # noqa: E402

_ENV = Environment(loader=PackageLoader("curate.report", "templates"), autoescape=select_autoescape(["html", "j2"]))


def write_noise_report(
    out_dir: Path,
    table: pd.DataFrame,
    class_summary: pd.DataFrame,
    image_path: Callable[[str], Path],
    title: str,
    meta: dict,
    max_flagged: int = 500,
    thumb_px: int = 128,
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    flagged = table[table["is_label_issue"]].sort_values("issue_rank")
    flagged.to_csv(out_dir / "label_issues.csv", index=False)
    table.to_csv(out_dir / "all_labels.csv", index=False)
    class_summary.to_csv(out_dir / "class_summary.csv", index=False)
    shown = flagged.head(max_flagged)
    _write_thumbs(out_dir / "thumbs", shown["sha256"], image_path, thumb_px)
    _plot_noise(out_dir / "noise_by_class.png", class_summary)
    html = _ENV.get_template("noise_report.html.j2").render(
        title=title, meta=meta, classes=class_summary.sort_values("estimated_noise_rate", ascending=False)
        .to_dict("records"), flagged=shown.to_dict("records"), n_flagged=len(flagged), n_total=len(table),
    )
    target = out_dir / "index.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, target)
    return target


def _write_thumbs(folder: Path, shas: pd.Series, image_path: Callable[[str], Path], thumb_px: int) -> None:
    folder.mkdir(exist_ok=True)
    for sha in shas:
        target = folder / f"{sha}.jpg"
        if target.exists():
            continue
        with Image.open(image_path(sha)) as img:
            thumb = img.convert("RGB")
            thumb.thumbnail((thumb_px, thumb_px))
            thumb.save(target, quality=85)


def _plot_noise(path: Path, summary: pd.DataFrame) -> None:
    ordered = summary.sort_values("estimated_noise_rate")
    labels = [f"{n} ({w})" if n else w for n, w in zip(ordered.get("name", ordered["label"]), ordered["label"],
                                                        strict=True)]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ordered) + 1.2))
    ax.barh(labels, ordered["estimated_noise_rate"] * 100, color="#c0504d")
    ax.set_xlabel("estimated label noise (%)")
    ax.set_xlim(0, max(5.0, float(ordered["estimated_noise_rate"].max() * 110)))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
