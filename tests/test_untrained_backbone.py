"""A run without a trained backbone (``noise.weights: none``, as the demo's fallback) does not pretend: the
noise stage looks for no issue and says why, and every place a user reads (the run summary, ``curate status``,
``curate report``, the report page, labels.csv and the datasheet, the benchmark page) says so with the fix."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
import torch
from conftest import build_corpus, pipeline_dict, write_pipeline
from torch import nn

from curate.cli import main
from curate.stages.benchmark import result_warnings
from curate.vision.backbones import Backbone
from curate.vision.results_page import write_results_page

FIX = "give ImageNet weights with --set noise.weights=FILE or put the checkpoint in the torch hub cache"
NOISE_LINE = f"noise       skipped (no trained backbone: {FIX})"
UNTRAINED_PROBE = "untrained backbone (mobilenet_v3_small:none): linear_probe ran on random weights"


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory) -> tuple[Path, str]:
    """The fixture pipeline as it is (``weights: none``), run once: its run directory and printed summary."""
    tmp = tmp_path_factory.mktemp("untrained")
    pipeline = write_pipeline(tmp / "pipeline.yaml", pipeline_dict(build_corpus(tmp / "corpus"), tmp / "run"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", str(pipeline), "--no-progress"]) == 0
    return tmp / "run", out.getvalue()


def test_the_run_summary_says_the_noise_check_was_skipped_and_how_to_fix_it(untrained_run):
    _, out = untrained_run
    assert f"  {NOISE_LINE} (" in out
    benchmark = out.split("  benchmark   ")[1].splitlines()
    assert benchmark[1] == f"              warning: {UNTRAINED_PROBE}, not ImageNet's; give ImageNet weights with " \
        "--set noise.weights=FILE or put the checkpoint in the torch hub cache"


def test_status_warns_with_the_fix(untrained_run, capsys):
    run_dir, _ = untrained_run
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"  noise       ok          skipped (no trained backbone: {FIX})" in out
    assert f"                          warning: {UNTRAINED_PROBE}" in out


def test_report_says_why_there_are_no_flags(untrained_run, capsys):
    run_dir, _ = untrained_run
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"warning: noise check skipped (no trained backbone: {FIX}): no issue was looked for" in out
    assert "24 images in 3 classes" in out and "flagged" not in out
    html = (run_dir / "report" / "index.html").read_text()
    assert "Noise check skipped" in html and FIX in html and "n02084071" in html


def test_nothing_is_flagged_or_dropped_and_the_export_says_the_check_did_not_run(untrained_run):
    run_dir, _ = untrained_run
    with sqlite3.connect(run_dir / "catalog.sqlite") as con:
        kinds = dict(con.execute("SELECT kind, COUNT(*) FROM issues GROUP BY kind").fetchall())
        accepted = con.execute("SELECT COUNT(*) FROM labels WHERE accepted = 1").fetchone()[0]
    assert not {"label", "outlier", "near_duplicate"} & set(kinds)
    with (run_dir / "export" / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == accepted == 24  # nothing dropped
    assert {r["label_issue"] for r in rows} == {""}  # not checked, rather than "False"
    sheet = json.loads((run_dir / "export" / "datasheet.json").read_text())
    assert sheet["label_noise"]["skipped"].startswith("no trained backbone")
    assert "**The noise check did not run** (no trained backbone" in (run_dir / "export" / "datasheet.md").read_text()


def test_the_benchmark_page_warns_about_random_features(untrained_run):
    run_dir, _ = untrained_run
    html = (run_dir / "benchmark" / "index.html").read_text()
    assert f"<strong>Warning:</strong> {UNTRAINED_PROBE}" in html
    assert FIX in html


def backbone(weights: str) -> Backbone:
    return Backbone("resnet50", weights, f"resnet50:{weights}", nn.Identity(), 4, lambda image: image,
                    torch.device("cpu"))


def test_a_top1_no_better_than_chance_is_marked(tmp_path: Path):
    results = {"linear_probe": {"mode": "linear_probe", "top1": 0.6, "num_classes": 8},
               "finetune": {"mode": "finetune", "top1": 0.054, "num_classes": 8}}
    warnings = result_warnings(results, backbone("imagenet"), "noise.weights")
    assert warnings == ["finetune: top-1 5.4 % is no better than chance (12.5 % with 8 classes)"]
    page = write_results_page(tmp_path / "index.html", "Benchmark: demo", {}, [], warnings=warnings)
    assert "<strong>Warning:</strong> finetune: top-1 5.4 % is no better than chance" in page.read_text()


def test_scratch_on_an_untrained_backbone_is_no_reason_to_warn():
    scratch = {"scratch": {"mode": "scratch", "top1": 0.6, "num_classes": 3}}
    assert result_warnings(scratch, backbone("none"), "noise.weights") == []
    probe = {"linear_probe": {"mode": "linear_probe", "top1": 0.6, "num_classes": 3}}
    assert "--set benchmark.weights=FILE" in result_warnings(probe, backbone("none"), "benchmark.weights")[0]


def test_report_prints_the_warning_of_a_report_written_before_the_check_was_skipped(tmp_path: Path, capsys):
    report = tmp_path / "run" / "report"
    report.mkdir(parents=True)
    (report / "index.html").write_text("<!doctype html>")
    summary = {"title": "Label noise report: demo", "meta": {"warning": "random backbone weights: noise estimates are "
                                                                        "unreliable"}, "n_images": 183,
               "n_classes": 8, "n_label_issues": 137, "estimated_noise_rate": 0.75}
    (report / "summary.json").write_text(json.dumps(summary))
    assert main(["report", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "  warning: random backbone weights: noise estimates are unreliable\n  183 images in 8 classes" in out
