"""The whole pipeline over a fixture corpus: catalog, report, export, benchmark, resume, stage selection.

``finished_run`` is shared by the module and only read; a test that runs the pipeline again works on its
own copy (``run_copy``), so no test depends on the order the others ran in.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from conftest import CAT, DOG, MOUSE, build_corpus, pipeline_dict, write_pipeline
from torchvision.datasets import ImageFolder

from curate.cli import main


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, seeded_weights: Path) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("e2e")
    corpus = tmp / "corpus"
    build_corpus(corpus, extra_rows=[
        {"file": "images/broken.png", "caption": "a dog photo", "true_wnids": DOG, "license": "", "creator": ""},
        {"file": "images/copy.png", "caption": "dog again", "true_wnids": DOG, "license": "", "creator": ""},
        {"file": "images/both.png", "caption": "dog and cat", "true_wnids": f"{DOG} {CAT}", "license": "",
         "creator": ""},
    ])
    (corpus / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    shutil.copyfile(corpus / "images" / "img_000.png", corpus / "images" / "copy.png")
    shutil.copyfile(corpus / "images" / "img_001.png", corpus / "images" / "both.png")
    data = pipeline_dict(corpus, tmp / "run")
    # a backbone the noise stage runs on (weights: none skips it, tests/test_untrained_backbone.py); its
    # flags on these few drawings are kept, so every accepted image reaches the export
    data["noise"]["weights"] = str(seeded_weights)
    data["review"] = {"policy": {"label": "keep"}}
    pipeline = write_pipeline(tmp / "pipeline.yaml", data)
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    return pipeline, tmp / "run"


@pytest.fixture
def run_copy(finished_run, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the finished run (same corpus), with a pipeline file pointing at it."""
    pipeline, run_dir = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    data = yaml.safe_load(pipeline.read_text())
    data["run"]["dir"] = str(copy)
    return write_pipeline(tmp_path / "pipeline.yaml", data), copy


def db(run_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(run_dir / "catalog.sqlite")


def counts(run_dir: Path) -> dict[str, int]:
    with db(run_dir) as con:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("candidates", "images", "tasks", "votes", "labels", "searches")}


def test_catalog_records_every_outcome(finished_run):
    _, run_dir = finished_run
    with db(run_dir) as con:
        status = dict(con.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall())
        error = con.execute("SELECT error FROM candidates WHERE url LIKE '%broken.png'").fetchone()[0]
        synsets = {r[0] for r in con.execute("SELECT wnid FROM synsets")}
        stages = dict(con.execute("SELECT stage, status FROM stage_runs").fetchall())
    assert synsets == {DOG, CAT, MOUSE}
    # dog: 8 dogs + 2 hot dogs, the broken file, and copy/both (same bytes as two dog images: duplicates);
    # cat: 8 + 'both' (a cross-class copy, downloaded for cat); mouse: 8 + 2 computer mice
    assert status == {"downloaded": 10 + 9 + 10, "duplicate": 2, "rejected": 1}
    assert "cannot decode" in error
    assert set(stages.values()) == {"ok"} and len(stages) == 7
    assert len(list((run_dir / "images").rglob("*.jpg"))) == counts(run_dir)["images"] == 28
    assert counts(run_dir)["votes"] == 3 * counts(run_dir)["tasks"]


def test_crowd_removes_the_polysemy_noise(finished_run):
    _, run_dir = finished_run
    with db(run_dir) as con:
        accepted = dict(con.execute("SELECT wnid, SUM(accepted) FROM labels GROUP BY wnid").fetchall())
        hotdogs = con.execute(
            "SELECT l.accepted FROM labels l JOIN candidates c ON c.sha256 = l.sha256 AND c.wnid = l.wnid "
            "WHERE c.title LIKE 'hot dog%'").fetchall()
    assert all(a == 0 for (a,) in hotdogs)  # 7 workers at ~95 %: the hot dogs are voted out
    assert accepted[DOG] == 8 and accepted[CAT] == 9 and accepted[MOUSE] == 8


def test_report_and_issues(finished_run):
    _, run_dir = finished_run
    html = (run_dir / "report" / "index.html").read_text()
    assert "fixture" in html and DOG in html
    assert (run_dir / "report" / "class_summary.csv").is_file()
    with db(run_dir) as con:
        kinds = dict(con.execute("SELECT kind, COUNT(*) FROM issues GROUP BY kind").fetchall())
    assert kinds.get("cross_class_duplicate") == 1  # 'dog and cat' is kept in one class only


def test_export_is_an_imagefolder_with_mapping_and_datasheet(finished_run):
    _, run_dir = finished_run
    export = run_dir / "export"
    train, val = ImageFolder(export / "train"), ImageFolder(export / "val")
    assert set(train.classes) == set(val.classes) == {DOG, CAT, MOUSE}
    assert all(Path(p).name.startswith(Path(p).parent.name + "_") and p.endswith(".JPEG") for p, _ in train.samples)
    synsets = (export / "synsets.txt").read_text().splitlines()
    assert f"{DOG} dog, domestic dog, Canis familiaris" in synsets
    sheet = json.loads((export / "datasheet.json").read_text())
    assert sheet["counts"]["images"] == len(train) + len(val)
    assert sheet["collection"]["exact_duplicates"] == {"within_class": 2, "across_classes": 1}
    assert sheet["counts"]["images"] == 8 + 9 + 8 - 1  # the dog-and-cat image is exported once
    assert sheet["labeling"]["votes"] == counts(run_dir)["votes"]
    labels = (export / "labels.csv").read_text().splitlines()
    assert labels[0].startswith("path,sha256,wnid") and len(labels) == 1 + len(train) + len(val)
    assert not (run_dir / "export.incomplete").exists()


def test_benchmark_json(finished_run):
    _, run_dir = finished_run
    result = json.loads((run_dir / "benchmark" / "linear_probe.json").read_text())
    # with 3 classes top-5 is top-3, always 1.0: only top-1 says something here (top-k is tested in
    # tests/vision/test_train.py with more classes than k)
    assert result["k_top5"] == 3 and result["num_classes"] == 3
    assert 0.5 <= result["top1"] <= 1.0  # colours separate even a random backbone
    assert result["backbone"].startswith("mobilenet_v3_small:sha256-")  # the noise stage's weights file
    assert result["n_val"] == json.loads((run_dir / "export" / "datasheet.json").read_text())["counts"]["val"]


def test_resolved_config_and_log_saved(finished_run):
    _, run_dir = finished_run
    assert "votes_per_image: 3" in (run_dir / "config.yaml").read_text()
    assert "[annotate]" in (run_dir / "logs" / "curate.log").read_text()


def test_second_run_repeats_no_work(run_copy, capsys):
    pipeline, run_dir = run_copy
    before = counts(run_dir)
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    assert counts(run_dir) == before
    out = capsys.readouterr().out
    for stage in ("synsets", "candidates", "annotate", "noise", "review", "export", "benchmark"):
        assert f"{stage:<11} nothing to do" in out


def test_more_votes_per_image_through_set_asks_only_for_the_missing_votes(run_copy, capsys):
    pipeline, run_dir = run_copy
    tasks, votes = counts(run_dir)["tasks"], counts(run_dir)["votes"]
    with db(run_dir) as con:
        first_votes = set(con.execute("SELECT remote_id, answer FROM votes").fetchall())
    assert main(["run", str(pipeline), "--no-progress", "--set", "annotate.votes_per_image=5"]) == 0
    out = capsys.readouterr().out
    assert counts(run_dir)["votes"] == 5 * tasks and votes == 3 * tasks
    assert f"new_votes={2 * tasks}" in out and f"{'candidates':<11} nothing to do" in out
    with db(run_dir) as con:
        assert first_votes <= set(con.execute("SELECT remote_id, answer FROM votes").fetchall())  # kept as paid
        assert con.execute("SELECT COUNT(*) FROM tasks WHERE state = 'complete' AND votes_wanted = 5").fetchone()[0] \
            == tasks


def test_status_prints_stages_and_classes(finished_run, capsys):
    _, run_dir = finished_run
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "candidates" in out and DOG in out and "label_issues" in out
    assert "local:corpus  32          0        29          2          0       1         25" in out  # per source
    assert "local:corpus  rejected  undecodable  1" in out  # failures by reason


def test_status_of_missing_run(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "no run found" in capsys.readouterr().err


def test_only_and_from_select_stages(pipeline_file: Path, tmp_path: Path, capsys):
    assert main(["run", str(pipeline_file), "--no-progress", "--only", "synsets"]) == 0
    with db(tmp_path / "run") as con:
        assert con.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 0
        assert con.execute("SELECT COUNT(*) FROM synsets").fetchone()[0] == 3
    assert main(["run", str(pipeline_file), "--no-progress", "--from", "candidates", "--set",
                 "noise.min_images_per_class=100"]) == 0
    out = capsys.readouterr().out
    assert "synsets " not in out.split("finished")[-1] and "candidates" in out
    assert main(["run", str(pipeline_file), "--only", "nosuchstage"]) == 2
