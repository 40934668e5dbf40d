"""Stale results: stages fingerprint what they would actually use, not only what was asked for."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import urllib.error
from collections import Counter
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from conftest import CAT, DOG, MOBILENET, MOUSE, build_corpus, draw_image, pipeline_dict, write_pipeline

from curate.catalog import Catalog
from curate.cli import main
from curate.config import load_config
from curate.crowd.simulated import SimulatedCrowd
from curate.runner import open_run, run_stage
from curate.stages.annotate import AnnotateStage


def stage_line(out: str, stage: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"  {stage:<11}"))


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch) -> Path:
    """An empty torch hub cache, and a network that refuses every download (as on an offline machine)."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError(f"offline: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return tmp_path / "hub" / "checkpoints"


@pytest.mark.skipif(not MOBILENET.is_file(), reason="needs the pretrained MobileNetV2 state_dict (shared/models)")
def test_weights_that_appear_after_a_fallback_run_rerun_noise_and_benchmark(pipeline_file, offline_hub, capsys):
    data = yaml.safe_load(pipeline_file.read_text())
    data["noise"].update(backbone="mobilenet_v2", weights="imagenet", weights_fallback="none")
    pipeline = write_pipeline(pipeline_file, data)
    run_dir = Path(data["run"]["dir"])

    assert main(["run", str(pipeline), "--no-progress"]) == 0
    assert "skipped (no trained backbone" in stage_line(capsys.readouterr().out, "noise")

    assert main(["run", str(pipeline), "--no-progress"]) == 0  # nothing changed: nothing to do
    assert stage_line(capsys.readouterr().out, "noise").endswith("nothing to do")

    url = torchvision.models.get_model_weights("mobilenet_v2").DEFAULT.url
    offline_hub.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MOBILENET, offline_hub / Path(url).name)  # the checkpoint is now in the cache
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "backbone=mobilenet_v2:imagenet" in stage_line(out, "noise")
    assert json.loads((run_dir / "benchmark" / "linear_probe.json").read_text())["backbone"] == "mobilenet_v2:imagenet"


def test_the_benchmark_reruns_when_the_backbone_it_inherits_changes(pipeline_file, capsys):
    run_dir = Path(yaml.safe_load(pipeline_file.read_text())["run"]["dir"])
    assert main(["run", str(pipeline_file), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", str(pipeline_file), "--no-progress", "--only", "benchmark",
                 "--set", "noise.backbone=resnet18"]) == 0
    assert not stage_line(capsys.readouterr().out, "benchmark").endswith("nothing to do")
    assert json.loads((run_dir / "benchmark" / "linear_probe.json").read_text())["backbone"] == "resnet18:none"


# ---------------------------------------------------------------------------------------------- votes change
# A dog the crowd knows is a dog (the corpus's truth) drawn in the cat's colours and shape: the crowd accepts
# it as a dog, the noise stage flags it (it looks like the cats), and the review asks the crowd again.
CAT_LOOKING_DOG = {"file": "images/cat_looking_dog.png", "caption": "a dog in disguise", "true_wnids": DOG,
                   "license": "CC0-1.0", "creator": "tests"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, seeded_weights: Path) -> Path:
    """The fixture pipeline run once with a backbone the noise stage trusts; only read (``copied`` copies it)."""
    tmp = tmp_path_factory.mktemp("finished")
    corpus = build_corpus(tmp / "corpus", extra_rows=[CAT_LOOKING_DOG])
    draw_image((40, 40, 200), "rectangle", seed=99).save(corpus / CAT_LOOKING_DOG["file"])
    data = pipeline_dict(corpus, tmp / "run")
    data["noise"]["weights"] = str(seeded_weights)
    assert main(["run", str(write_pipeline(tmp / "pipeline.yaml", data)), "--no-progress"]) == 0
    return tmp


@pytest.fixture
def copied(finished: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the finished run and a pipeline file pointing at it."""
    shutil.copytree(finished / "run", tmp_path / "run")
    data = yaml.safe_load((finished / "pipeline.yaml").read_text())
    data["run"]["dir"] = str(tmp_path / "run")
    return write_pipeline(tmp_path / "pipeline.yaml", data), tmp_path / "run"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def crowd_votes(run_dir: Path) -> dict[tuple[str, str], Counter]:
    """(sha256, wnid) -> the labelling rounds' current answers, as the catalog holds them."""
    with sqlite3.connect(run_dir / "catalog.sqlite") as con:
        found = con.execute("SELECT t.sha256, t.wnid, v.answer FROM votes v JOIN tasks t ON t.id = v.task_id "
                            "WHERE v.superseded_by IS NULL AND t.backend = 'simulated'").fetchall()
    votes: dict[tuple[str, str], Counter] = {}
    for sha, wnid, answer in found:
        votes.setdefault((sha, wnid), Counter())[answer] += 1
    return votes


def trained_on(run_dir: Path) -> list[tuple[str, ...]]:
    """What a training reads of the export: each image's file, bytes, class and split."""
    return [(r["path"], r["sha256"], r["wnid"], r["split"]) for r in rows(run_dir / "export" / "labels.csv")]


def test_more_votes_rebuild_the_report_and_spare_the_benchmark(copied, capsys):
    pipeline, run_dir = copied
    before = trained_on(run_dir)
    capsys.readouterr()
    assert main(["run", str(pipeline), "--no-progress", "--set", "annotate.votes_per_image=5"]) == 0
    out = capsys.readouterr().out
    assert not stage_line(out, "noise").endswith("nothing to do")

    votes = crowd_votes(run_dir)
    table = rows(run_dir / "report" / "all_labels.csv")
    assert "n_votes" in table[0] and not [c for c in table[0] if c.startswith("n_votes_")]  # once, no merge suffix
    for row in table:  # every card's votes are the catalog's now
        answers = votes[(row["sha256"], row["given_label"])]
        assert int(row["n_votes"]) == sum(answers.values()) == 5
        assert row["votes"].startswith(f"{answers['yes']} yes / {answers['no']} no")

    assert trained_on(run_dir) == before  # no label changed: the same images, classes and splits
    assert stage_line(out, "benchmark").endswith("nothing to do")  # so nothing is trained again
    for label, path in (("report", "report/index.html"), ("export", "export"), ("benchmark", "benchmark/index.html")):
        assert f"  {label + ':':<11} {run_dir / path}" in out  # produced, or confirmed up to date


def test_the_report_shows_what_review_decided(finished: Path):
    run_dir = finished / "run"
    with sqlite3.connect(run_dir / "catalog.sqlite") as con:
        con.row_factory = sqlite3.Row
        decided = {(r["sha256"], r["wnid"]): r for r in con.execute("SELECT * FROM decisions")}
    flagged = rows(run_dir / "report" / "label_issues.csv")
    dog = next(r for r in flagged if r["path"] == CAT_LOOKING_DOG["file"])
    assert (dog["decision"], dog["decided_by"]) == ("keep", "review")
    assert dog["decision_reason"].startswith(f"review confirmed {DOG}")
    for row in flagged:
        decision = decided[(row["sha256"], row["given_label"])]
        assert row["decision"] == ("pending" if decision["action"] == "review" else decision["action"])
        assert (row["decided_by"], row["decision_reason"]) == (decision["source"], decision["reason"])
    shown = {(r["sha256"], r["given_label"]) for name in ("label_issues", "issues")
             for r in rows(run_dir / "report" / f"{name}.csv")}
    outcomes = Counter("pending" if decided[k]["action"] == "review" else decided[k]["action"] for k in shown)
    assert json.loads((run_dir / "report" / "summary.json").read_text())["decisions"] == outcomes
    html = (run_dir / "report" / "index.html").read_text()
    assert '<div class="decision decision-keep">review → keep</div>' in html
    assert f"review confirmed {DOG}" in html and 'id="decisions"' in html


def test_while_review_waits_the_summary_names_no_output_of_an_earlier_run(copied, capsys):
    pipeline, run_dir = copied
    data = yaml.safe_load(pipeline.read_text())
    data["review"] = {"backend": {**data["annotate"]["backend"], "answers_per_pull": 1}}  # a slow crowd
    catalog = Catalog(run_dir / "catalog.sqlite")
    try:  # one more label issue, of an image nobody reviewed yet
        issues = [dict(r) for r in catalog.issues_of(("label",))]
        sha = next(r["sha256"] for r in catalog.final_labels()
                   if r["wnid"] == MOUSE and r["sha256"] not in {i["sha256"] for i in issues})
        catalog.replace_issues(("label",), [*issues, {"sha256": sha, "wnid": MOUSE, "kind": "label", "score": 0.01,
                                                      "suggested_wnid": CAT, "detail": "rank 99"}])
    finally:
        catalog.close()
    capsys.readouterr()
    assert main(["run", str(write_pipeline(pipeline, data)), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "review: waiting for" in out and (run_dir / "export").is_dir() and (run_dir / "benchmark").is_dir()
    assert "export:" not in out and "benchmark:" not in out  # held back: what is on disk is an earlier run's
    assert f"  {'report:':<11} {run_dir / 'report' / 'index.html'}" in out  # the noise stage: up to date


def test_an_edit_pulled_from_the_crowd_is_aggregated_and_reported(copied, monkeypatch):
    """A crowd whose answers change (as in Label Studio, which reports edits while it publishes): an annotator
    turns every yes on an accepted task into a no; annotate re-aggregates and says what changed."""
    pipeline, _ = copied
    monkeypatch.setattr(SimulatedCrowd, "answers_change", True, raising=False)
    with open_run(load_config(pipeline), progress=False) as ctx:
        accepted = {(r["sha256"], r["wnid"]) for r in ctx.catalog.final_labels()}
        task = next(t for t in ctx.catalog.tasks_of("simulated", "complete") if (t["sha256"], t["wnid"]) in accepted)
        yes = [v for v in ctx.catalog.current_votes([task["id"]]) if v["answer"] == "yes"]
        push = SimulatedCrowd.push

        def push_and_report_edits(crowd, tasks):
            edits = [(v["remote_id"], {"task_id": v["task_id"], "annotator": v["annotator"], "answer": "no",
                                       "remote_id": f"{v['remote_id']}:edited", "created_at": 1.0}) for v in yes]
            ctx.catalog.revise_votes(edits, [])
            return push(crowd, tasks)

        monkeypatch.setattr(SimulatedCrowd, "push", push_and_report_edits)
        result = run_stage(AnnotateStage(), ctx)
        assert not result.nothing_to_do
        assert result.stats["new_votes"] == 0 and result.stats["votes_revised"] == len(yes) >= 2
        assert result.stats["labels_changed"] == 1
        assert (task["sha256"], task["wnid"]) not in {(r["sha256"], r["wnid"]) for r in ctx.catalog.final_labels()}
