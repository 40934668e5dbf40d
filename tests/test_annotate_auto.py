"""``annotate.aggregate: auto``, the default: the annotate stage runs crowdlab with the model's scores
where the noise backbone has real weights (a weights file here), dynamic consensus where it has random
ones, majority where no task can get a vote more; the stage reports the policy it ran, an unset
``votes_per_image`` is 1 under auto and 3 otherwise, and an explicit aggregate is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import write_pipeline

from curate.config import load_config
from curate.runner import open_run, run_stage
from curate.stages.annotate import AnnotateConfig, AnnotateStage
from curate.stages.candidates import CandidatesStage
from curate.stages.synsets import SynsetsStage

CROWD = {"type": "simulated", "workers": 12, "accuracy": 0.8, "accuracy_spread": 0.1, "spammer_share": 0.1}


def auto_pipeline(pipeline_file: Path, weights: str, **annotate) -> Path:
    """The fixture pipeline with the default aggregate and votes_per_image (both unset) and 12 workers."""
    data = yaml.safe_load(pipeline_file.read_text())
    for key in ("aggregate", "votes_per_image"):
        data["annotate"].pop(key, None)
    data["annotate"] |= {"backend": CROWD, "max_votes_per_image": 5, **annotate}
    data["noise"]["weights"] = weights
    return write_pipeline(pipeline_file, data)


def annotate(pipeline: Path) -> tuple[dict, list[dict], list[dict], int]:
    """Run synsets, candidates and annotate: the stats, the tasks, the labels and how many images have
    embeddings of the noise backbone cached (the model scored the tasks)."""
    with open_run(load_config(pipeline), progress=False) as ctx:
        run_stage(SynsetsStage(), ctx)
        run_stage(CandidatesStage(), ctx)
        result = run_stage(AnnotateStage(), ctx)
        tasks = [dict(r) for r in ctx.catalog.query("SELECT * FROM tasks ORDER BY id")]
        labels = [dict(r) for r in ctx.catalog.query("SELECT * FROM labels")]
        embedded = ctx.catalog.query("SELECT COUNT(*) AS n FROM embeddings")[0]["n"]
    return result.stats, tasks, labels, embedded


def test_auto_runs_crowdlab_with_the_model_where_the_backbone_has_real_weights(pipeline_file: Path,
                                                                              seeded_weights: Path):
    stats, tasks, labels, embedded = annotate(auto_pipeline(pipeline_file, str(seeded_weights)))
    assert stats["aggregate"] == "crowdlab" and {r["method"] for r in labels} == {"crowdlab"}
    assert embedded == len({t["sha256"] for t in tasks})  # the model scored every task
    assert all(t["votes_wanted"] <= 5 for t in tasks)
    assert stats["more_votes_asked"] == sum(t["votes_wanted"] - 1 for t in tasks)  # from one vote each


def test_auto_runs_dynamic_consensus_where_the_backbone_has_random_weights(pipeline_file: Path):
    stats, tasks, labels, embedded = annotate(auto_pipeline(pipeline_file, "none"))
    assert stats["aggregate"] == "dynamic_consensus" and {r["method"] for r in labels} == {"dynamic_consensus"}
    assert embedded == 0  # random features are no evidence: the model stays out
    assert max(t["votes_wanted"] for t in tasks) == 5  # the seeds: 10 votes, capped at 5
    assert stats["more_votes_asked"] == sum(t["votes_wanted"] - 1 for t in tasks)  # from one vote each


def test_auto_is_majority_where_no_task_can_get_a_vote_more(pipeline_file: Path, seeded_weights: Path):
    pipeline = auto_pipeline(pipeline_file, str(seeded_weights), votes_per_image=3, max_votes_per_image=3)
    stats, tasks, labels, embedded = annotate(pipeline)
    assert stats["aggregate"] == "majority" and {r["method"] for r in labels} == {"majority"}
    assert embedded == 0 and {t["votes_wanted"] for t in tasks} == {3}


@pytest.mark.parametrize(("annotate_section", "aggregate", "first_votes"), [
    ({}, "auto", 1),
    ({"aggregate": "auto", "votes_per_image": 2}, "auto", 2),
    ({"aggregate": "majority"}, "majority", 3),
    ({"aggregate": {"type": "dynamic_consensus"}}, "dynamic_consensus", 3),
    ({"aggregate": "crowdlab", "model": {"enabled": True}, "votes_per_image": 1}, "crowdlab", 1),
])
def test_an_explicit_aggregate_is_kept_and_first_votes_follow_it(annotate_section: dict, aggregate: str,
                                                                 first_votes: int):
    config = AnnotateConfig.model_validate(annotate_section)
    assert config.aggregate.type == aggregate and config.votes_per_image == first_votes
