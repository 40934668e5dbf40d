"""The annotate stage's rounds, gold items and annotator statistics, on the fixture corpus with the
simulated crowd (ground truth known): gold tasks are marked and score annotators, a gold task's label
is its known answer, adaptive aggregators ask for more votes only where they are unsure, and
``curate status`` shows the annotators."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import CAT, DOG, write_pipeline

from curate.cli import main
from curate.config import load_config
from curate.runner import open_run, run_stage
from curate.stages.annotate import AnnotateStage
from curate.stages.candidates import CandidatesStage
from curate.stages.synsets import SynsetsStage


def configured(pipeline_file: Path, **annotate) -> Path:
    data = yaml.safe_load(pipeline_file.read_text())
    data["annotate"].update(annotate)
    return write_pipeline(pipeline_file, data)


def annotated(pipeline: Path):
    """Run synsets, candidates and annotate; return the stage result and the open context's catalog rows."""
    with open_run(load_config(pipeline), progress=False) as ctx:
        run_stage(SynsetsStage(), ctx)
        run_stage(CandidatesStage(), ctx)
        result = run_stage(AnnotateStage(), ctx)
        tasks = [dict(r) for r in ctx.catalog.query("SELECT * FROM tasks ORDER BY id")]
        labels = {(r["sha256"], r["wnid"]): dict(r) for r in ctx.catalog.query("SELECT * FROM labels")}
        gold = ctx.catalog.gold_answers()
        annotators = [dict(r) for r in ctx.catalog.annotator_stats()]
        votes = [dict(r) for r in ctx.catalog.vote_table(complete_only=False)]
    return result, tasks, labels, gold, annotators, votes


def test_gold_from_truth_marks_tasks_scores_annotators_and_fixes_their_labels(pipeline_file: Path):
    pipeline = configured(pipeline_file, gold={"from_truth_per_class": 2},
                          backend={"type": "simulated", "workers": 7, "accuracy": 0.6, "accuracy_spread": 0.0,
                                   "spammer_share": 0.0})
    result, tasks, labels, gold, annotators, votes = annotated(pipeline)
    # dog: the dog photos are positives, the hot dogs found by the word "dog" negatives
    assert {(w, a) for (_, w), a in gold.items()} >= {(DOG, "yes"), (DOG, "no"), (CAT, "yes")}
    assert sum(1 for (_, w), a in gold.items() if w == DOG and a == "yes") == 2
    gold_tasks = {(t["sha256"], t["wnid"]) for t in tasks if t["is_gold"]}
    assert gold_tasks == set(gold)
    for key, answer in gold.items():  # the known answer is the label, whatever 60 %-accurate workers said
        assert labels[key]["accepted"] == (answer == "yes")
    assert result.stats["gold"] == len(gold)
    gold_task_ids = {t["id"] for t in tasks if t["is_gold"]}
    answered = [v for v in votes if v["task_id"] in gold_task_ids and v["answer"] != "unsure"]
    assert sum(a["gold_votes"] for a in annotators) == len(answered) > 0
    right = sum(v["answer"] == gold[(v["sha256"], v["wnid"])] for v in answered)
    weighted = sum(a["gold_accuracy"] * a["gold_votes"] for a in annotators if a["gold_votes"])
    assert abs(weighted - right) < 0.01 * len(annotators)  # (accuracies are rounded to 3 places)
    assert 0.3 < right / len(answered) < 0.9  # workers of 60 % accuracy


def test_gold_csv_by_url_and_its_errors(pipeline_file: Path, corpus: Path, tmp_path: Path, capsys):
    url = (corpus / "images" / "img_000.png").resolve().as_uri()
    good = tmp_path / "gold.csv"
    good.write_text(f"url,wnid,answer\n{url},{DOG},yes\nfile:///nowhere.png,{DOG},no\n")
    _, tasks, _, gold, _, _ = annotated(configured(pipeline_file, gold={"path": str(good)}))
    assert [a for (_, w), a in gold.items()] == ["yes"] and sum(t["is_gold"] for t in tasks) == 1

    bad = tmp_path / "bad.csv"
    bad.write_text(f"url,wnid,verdict\n{url},{DOG},yes\n")
    data = yaml.safe_load(pipeline_file.read_text())
    data["annotate"]["gold"] = {"path": str(bad)}
    data["run"]["dir"] = str(tmp_path / "run2")
    assert main(["run", str(write_pipeline(tmp_path / "p2.yaml", data)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "annotate.gold.path" in err and "answer" in err and "Traceback" not in err

    data["annotate"]["gold"] = {"path": str(tmp_path / "missing.csv")}
    assert main(["validate", str(write_pipeline(tmp_path / "p3.yaml", data))]) == 2
    assert "annotate.gold.path: file not found" in capsys.readouterr().err


def test_status_shows_annotators(pipeline_file: Path, capsys):
    pipeline = configured(pipeline_file, gold={"from_truth_per_class": 1})
    assert main(["run", str(pipeline), "--no-progress", "--only", "synsets", "--only", "candidates",
                 "--only", "annotate"]) == 0
    capsys.readouterr()
    run_dir = yaml.safe_load(pipeline.read_text())["run"]["dir"]
    assert main(["status", run_dir]) == 0
    out = capsys.readouterr().out
    assert "annotators" in out and "gold_accuracy" in out and "sim-0" in out


@pytest.mark.parametrize("aggregate", [{"type": "dynamic_consensus", "seed_tasks_per_class": 2}, "dawid_skene"])
def test_adaptive_rounds_ask_more_votes_only_where_unsure(pipeline_file: Path, aggregate):
    crowd = {"type": "simulated", "workers": 12, "accuracy": 0.8, "accuracy_spread": 0.1, "spammer_share": 0.1}
    fixed, _, _, _, _, _ = annotated(configured(pipeline_file, backend=crowd, votes_per_image=2,
                                             max_votes_per_image=2, aggregate="majority"))
    data = yaml.safe_load(pipeline_file.read_text())
    data["run"]["dir"] = str(Path(data["run"]["dir"]).with_name("run-adaptive"))
    adaptive_file = write_pipeline(pipeline_file.with_name("adaptive.yaml"), data)
    result, tasks, _, _, _, _ = annotated(configured(adaptive_file, backend=crowd, votes_per_image=2,
                                                  max_votes_per_image=8, aggregate=aggregate))
    wanted = [t["votes_wanted"] for t in tasks]
    assert fixed.stats["more_votes_asked"] == 0
    assert all(2 <= w <= 8 for w in wanted) and result.stats["more_votes_asked"] == sum(w - 2 for w in wanted)
    if aggregate != "dawid_skene":  # seeds and split votes get more; confident tasks stop before the cap
        assert max(wanted) == 8 and min(wanted) < 8
    assert "missing_votes" not in result.stats


def test_crowdlab_with_the_model_scores_tasks_from_cached_embeddings(pipeline_file: Path):
    crowd = {"type": "simulated", "workers": 12, "accuracy": 0.8, "accuracy_spread": 0.1, "spammer_share": 0.1}
    pipeline = configured(pipeline_file, backend=crowd, votes_per_image=1, max_votes_per_image=5,
                          aggregate="crowdlab", model={"enabled": True})
    result, tasks, labels, _, _, _ = annotated(pipeline)
    assert len(labels) == len(tasks) and all(t["state"] == "complete" for t in tasks)
    assert all(1 <= t["votes_wanted"] <= 5 for t in tasks)
    assert result.stats["more_votes_asked"] == sum(t["votes_wanted"] - 1 for t in tasks)
    with open_run(load_config(pipeline), progress=False) as ctx:  # the noise stage will reuse them
        cached = ctx.catalog.embeddings("mobilenet_v3_small:none+regions", [t["sha256"] for t in tasks])
    assert len(cached) == len({t["sha256"] for t in tasks})
    assert result.stats["label_accuracy_vs_truth"] >= 0.85


def test_crowdlab_without_the_model_is_a_config_error(pipeline_file: Path, capsys):
    pipeline = configured(pipeline_file, aggregate="crowdlab")
    assert main(["validate", str(pipeline)]) == 2
    err = capsys.readouterr().err
    assert "'crowdlab' combines the votes with the model's scores" in err and "annotate.model.enabled: true" in err
