"""write_noise_report: HTML (escaped), CSV tables, thumbnails, chart, atomic replacement."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from curate.report.noise_report import write_noise_report

EVIL = "<script>alert(1)</script>"


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    """sha256 -> path of four 300x200 JPEGs."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = {}
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200), (90, 90, 90)]):
        path = folder / f"{i}.jpg"
        Image.new("RGB", (300, 200), colour).save(path)
        paths[hashlib.sha256(path.read_bytes()).hexdigest()] = path
    return paths


def frames(shas: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = pd.DataFrame({
        "sha256": shas,
        "given_label": ["n01", "n01", "n02", "n02"],
        "given_name": ["tench", "tench", EVIL, EVIL],
        "predicted_label": ["n02", "n01", "n01", "n02"],
        "predicted_name": [EVIL, "tench", "tench", EVIL],
        "label_score": [0.05, 0.9, 0.2, 0.8],
        "is_label_issue": [True, False, True, False],
        "issue_rank": [1.0, float("nan"), 2.0, float("nan")],
    })
    summary = pd.DataFrame({"label": ["n01", "n02"], "name": ["tench", EVIL], "n_given": [2, 2],
                            "n_label_issues": [1, 1], "estimated_noise_rate": [0.5, 0.25],
                            "label_quality": [0.5, 0.75]})
    return table, summary


def write(out_dir: Path, images: dict[str, Path], warning: str | None = "random backbone weights",
          **kwargs) -> Path:
    table, summary = frames(list(images))
    meta = {"run": "unit", "backbone": "resnet18:none", "images": 4}
    if warning:
        meta["warning"] = warning
    return write_noise_report(out_dir, table, summary, image_path=images.__getitem__, title="Noise <test>",
                              meta=meta, **kwargs)


def test_report_files_and_content(tmp_path: Path, images: dict[str, Path]):
    index = write(tmp_path / "report", images, thumb_px=64)
    html = index.read_text()
    assert index == tmp_path / "report" / "index.html"
    assert "tench" in html and "random backbone weights" in html and "resnet18:none" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Noise &lt;test&gt;" in html
    for name in ("label_issues.csv", "all_labels.csv", "class_summary.csv", "noise_rate_by_class.png"):
        assert (index.parent / name).is_file() and name in html
    issues = pd.read_csv(index.parent / "label_issues.csv")
    assert list(issues["issue_rank"]) == [1.0, 2.0] and issues["given_name"].iloc[1] == EVIL
    assert len(pd.read_csv(index.parent / "all_labels.csv")) == 4
    shas = list(images)
    thumbs = sorted(p.stem for p in (index.parent / "thumbs").iterdir())
    assert thumbs == sorted([shas[0], shas[2]])  # flagged images only
    with Image.open(index.parent / "thumbs" / f"{shas[0]}.jpg") as thumb:
        assert max(thumb.size) == 64
    assert f"thumbs/{shas[0]}.jpg" in html
    assert not list(tmp_path.glob(".report.*"))  # no staging folder left behind


def test_max_flagged_limits_the_page_not_the_csv(tmp_path: Path, images: dict[str, Path]):
    index = write(tmp_path / "report", images, warning=None, max_flagged=1)
    html = index.read_text()
    assert "Warning" not in html
    shas = list(images)
    assert f"thumbs/{shas[0]}.jpg" in html and f"thumbs/{shas[2]}.jpg" not in html
    assert "1 most likely wrong of 2" in html
    assert len(pd.read_csv(index.parent / "label_issues.csv")) == 2


def test_rerun_replaces_the_whole_report(tmp_path: Path, images: dict[str, Path]):
    out_dir = tmp_path / "report"
    write(out_dir, images)
    (out_dir / "stale.txt").write_text("from an older run")
    write(out_dir, images)
    assert not (out_dir / "stale.txt").exists() and (out_dir / "index.html").is_file()


def test_missing_image_gets_a_placeholder(tmp_path: Path, images: dict[str, Path]):
    first = next(iter(images))
    images[first].unlink()
    html = write(tmp_path / "report", images).read_text()
    assert "no thumbnail" in html and not (tmp_path / "report" / "thumbs" / f"{first}.jpg").exists()


def test_missing_columns_are_refused(tmp_path: Path, images: dict[str, Path]):
    table, summary = frames(list(images))
    with pytest.raises(ValueError, match="predicted_name"):
        write_noise_report(tmp_path / "r", table.drop(columns="predicted_name"), summary, images.__getitem__,
                           "t", {})


def test_failure_leaves_the_previous_report(tmp_path: Path, images: dict[str, Path]):
    out_dir = tmp_path / "report"
    write(out_dir, images)
    before = (out_dir / "index.html").read_text()

    def exploding(sha256: str) -> Path:
        raise KeyboardInterrupt  # e.g. Ctrl-C while thumbnails are written

    table, summary = frames(list(images))
    with pytest.raises(KeyboardInterrupt):
        write_noise_report(out_dir, table, summary, exploding, "t", {})
    assert (out_dir / "index.html").read_text() == before
    assert not list(tmp_path.glob(".report.*"))
