"""The report's newer inputs: Datalab issues, the confident joint, dataset checks, audited paths; its
Parquet tables, summary.json and the page's Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from report_fixtures import CASSETTE, PWN, SPRINGER, TENCH, report_inputs, write_rich_report

from curate.report.charts import MAX_HEATMAP_CLASSES, heatmap_classes, write_joint_heatmap
from curate.report.noise_report import write_noise_report


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, attrs))


def parse(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every element as a browser's parser sees it: (tag, attributes)."""
    parser = _Elements()
    parser.feed(html)
    return parser.found


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    return write_rich_report(tmp / "report", tmp / "images").parent


def test_heatmap_and_sections(report: Path):
    html = (report / "index.html").read_text()
    with Image.open(report / "confident_joint.png") as heatmap:
        assert heatmap.width > 300 and heatmap.height > 300
    assert 'id="joint-heatmap" src="confident_joint.png"' in html and "Largest confusions" in html
    for kind in ("label", "outlier", "near_duplicate"):
        assert f'data-section-kind="{kind}"' in html
    assert "Outliers: 2 images" in html and "Near-duplicates: 2 groups of 4 images" in html
    assert html.count('class="group mixed"') == 1 and html.count('class="group"') == 1  # across classes, within
    assert "non_iid" in html and "no sign of non-IID ordering" in html
    assert "4 yes / 1 no / 1 unsure" in html and "n02102040/n02102040_1.png" in html


def test_web_text_is_escaped_everywhere(report: Path):
    html = (report / "index.html").read_text()
    assert PWN in html  # the text is there, as text
    assert "<script>window" not in html and "<img src=x" not in html and "<svg" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    elements = parse(html)
    assert not [(t, a) for t, attrs in elements for a, _ in attrs if a.startswith("on")], "an event handler got in"
    assert [t for t, _ in elements].count("script") == 1 and "svg" not in [t for t, _ in elements]
    sources = [dict(attrs).get("src") or "" for t, attrs in elements if t == "img"]
    assert sources and all(re.fullmatch(r"thumbs/[0-9a-f]{64}\.jpg|[a-z_]+\.png", s) for s in sources)
    assert 'href="javascript:' not in html and 'href="https://example.org/0.jpg"' in html
    assert "{{ 7*7 }}" in html  # not evaluated


def test_the_policy_allows_only_the_page_own_script_and_style(report: Path):
    html = (report / "index.html").read_text()
    (policy,) = [dict(a)["content"] for t, a in parse(html) if dict(a).get("http-equiv") == "Content-Security-Policy"]
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    (style,) = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)

    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert f"script-src 'sha256-{digest(script)}'" in policy and f"style-src 'sha256-{digest(style)}'" in policy
    assert "default-src 'none'" in policy and "img-src 'self' data:" in policy and "unsafe" not in policy
    assert not re.search(r"<[^>]*\sstyle\s*=", html), "inline style attributes would be refused by the policy"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html.replace('href="https://example.org', "")), \
        "only the images' origin links may point outside the folder"


def test_parquet_tables_match_the_csv(report: Path):
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["tables"]) == {"label_issues", "all_labels", "class_summary", "issues", "annotators",
                                      "confident_joint"}
    for name, entry in summary["tables"].items():
        parquet = pd.read_parquet(report / entry["parquet"])
        csv = pd.read_csv(report / entry["csv"])
        assert len(parquet) == len(csv) == entry["rows"], name
        assert list(parquet.columns) == list(csv.columns), name
    captions = pd.read_parquet(report / "all_labels.parquet")["caption"]
    assert captions.str.startswith("{{ 7*7 }} =HYPERLINK").any()  # Parquet keeps the text as it is
    joint = pd.read_parquet(report / "confident_joint.parquet").set_index("given_label")
    assert joint.loc[TENCH, SPRINGER] == 1 and joint.loc[TENCH, TENCH] == 3
    classes = pd.read_parquet(report / "class_summary.parquet")
    assert list(classes["label"]) == [SPRINGER, TENCH, CASSETTE]  # noisiest first
    assert dict(zip(classes["label"], classes["n_outlier"], strict=True)) == {SPRINGER: 1, TENCH: 1, CASSETTE: 0}


def test_path_is_the_second_column(report: Path):
    for name in ("label_issues", "all_labels", "issues"):
        assert list(pd.read_csv(report / f"{name}.csv").columns)[:2] == ["sha256", "path"], name
        assert list(pd.read_parquet(report / f"{name}.parquet").columns)[:2] == ["sha256", "path"], name


def test_summary_json(report: Path):
    summary = json.loads((report / "summary.json").read_text())
    assert (summary["n_images"], summary["n_classes"], summary["n_label_issues"]) == (12, 3, 3)
    assert (summary["n_outliers"], summary["n_near_duplicate_groups"], summary["n_near_duplicate_images"]) == (2, 2, 4)
    assert summary["estimated_noise_rate"] == pytest.approx((0.25 + 0.30 + 0.10) / 3)
    assert summary["issues_by_kind"] == {"near_duplicate": 4, "outlier": 2, f"<script>{PWN}</script>": 1}
    assert summary["dataset_checks"]["non_iid"] == {"score": 0.73, "summary": "no sign of non-IID ordering"}
    assert [o["score"] for o in summary["top_outliers"]] == [0.01, 0.2]
    assert summary["top_near_duplicate_groups"][0]["classes"] == sorted([TENCH, CASSETTE])
    assert summary["files"]["joint_heatmap"] == "confident_joint.png"
    assert all((report / entry["csv"]).is_file() for entry in summary["tables"].values())


def test_cards_get_thumbnails_in_every_section(report: Path):
    inputs = report_inputs(report.parent / "images")
    shown = set(inputs["issues"]["sha256"]) | set(inputs["table"].loc[inputs["table"]["is_label_issue"], "sha256"])
    assert {p.stem for p in (report / "thumbs").iterdir()} == shown


def test_without_the_new_inputs_the_report_has_no_such_sections(tmp_path: Path):
    index = write_rich_report(tmp_path / "report", tmp_path / "images", issues=None, joint=None,
                              dataset_checks=None, annotators=None)
    html = index.read_text()
    assert not (index.parent / "confident_joint.png").exists() and 'id="joint"' not in html
    assert 'data-section-kind="outlier"' not in html and "dataset check" not in html
    summary = json.loads((index.parent / "summary.json").read_text())
    assert summary["n_outliers"] == 0 and summary["n_near_duplicate_groups"] == 0
    assert set(summary["tables"]) == {"label_issues", "all_labels", "class_summary", "issues"}
    assert pd.read_parquet(index.parent / "issues.parquet").empty


def test_issues_missing_columns_are_refused(tmp_path: Path):
    inputs = report_inputs(tmp_path / "images")
    with pytest.raises(ValueError, match="issues lacks columns: kind"):
        write_noise_report(tmp_path / "report", **{**inputs, "issues": inputs["issues"].drop(columns="kind")})
    assert not (tmp_path / "report").exists()


def test_a_large_joint_is_cut_to_the_most_confused_classes(tmp_path: Path):
    labels = [f"n{i:08d}" for i in range(MAX_HEATMAP_CLASSES + 10)]
    joint = pd.DataFrame(0, index=labels, columns=labels)
    for i, label in enumerate(labels):
        joint.loc[label, label] = 50
        joint.loc[label, labels[i - 1]] = i  # later classes more confused
    shown = heatmap_classes(joint)
    assert len(shown) == MAX_HEATMAP_CLASSES and labels[0] not in shown and labels[-1] in shown
    assert write_joint_heatmap(tmp_path / "joint.png", joint, {labels[-1]: "$\\frac{$ broken math"}) == len(shown)
