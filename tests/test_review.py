"""The review stage and what export does with its decisions, on the fixture corpus with the simulated crowd
(ground truth known). ``annotated`` runs synsets, candidates and annotate once; each test works on its own
copy, writes the issues it needs straight into the catalog (as the noise stage would, without embedding
anything) and runs review and export.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from conftest import CAT, DOG, MOUSE, build_corpus, pipeline_dict, write_pipeline
from test_labelstudio import annotators, ls_env, server  # noqa: F401  (fixtures: a Label Studio on loopback)

from curate.catalog import Catalog
from curate.catalog.decisions import review_queue
from curate.catalog.schema import MIGRATIONS, SCHEMA_VERSION
from curate.cli import main
from curate.config import load_config
from curate.crowd.simulated import SimulatedCrowd
from curate.errors import ConfigError
from curate.runner import open_run, run_stage
from curate.stages.annotate import AnnotateStage
from curate.stages.candidates import CandidatesStage
from curate.stages.export import ExportStage
from curate.stages.review import ReviewStage, Rule, plan_decisions
from curate.stages.synsets import SynsetsStage

TRAINED, UNTRAINED = "mobilenet_v2:imagenet", "mobilenet_v3_small:none"
QUEUE = review_queue("simulated")


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("review")
    data = pipeline_dict(build_corpus(tmp / "corpus"), tmp / "run")
    with open_run(load_config(write_pipeline(tmp / "pipeline.yaml", data)), progress=False) as ctx:
        for stage in (SynsetsStage(), CandidatesStage(), AnnotateStage()):
            run_stage(stage, ctx)
    return tmp


@pytest.fixture
def run(annotated: Path, tmp_path: Path):
    """A private copy of the annotated run; ``run(review=..., export=...)`` writes its pipeline file."""
    shutil.copytree(annotated / "run", tmp_path / "run")
    base = yaml.safe_load((annotated / "pipeline.yaml").read_text())
    base["run"]["dir"] = str(tmp_path / "run")

    def configure(**sections) -> Path:
        data = json.loads(json.dumps(base))
        for name, section in sections.items():
            data.setdefault(name, {}).update(section)
        return write_pipeline(tmp_path / "pipeline.yaml", data)

    return configure


def images_of(catalog: Catalog, wnid: str) -> list[str]:
    """Exported-to-be images truly of ``wnid`` (accepted by the crowd), in sha256 order."""
    truth = catalog.truth_table()
    return sorted(r["sha256"] for r in catalog.final_labels() if r["rank"] == 1 and truth.get(r["sha256"]) == {wnid})


def flag(catalog: Catalog, backbone: str, issues: list[dict]) -> None:
    """What the noise stage leaves behind: issues, and its stats naming the backbone that found them."""
    kinds = ("label", "outlier", "near_duplicate")
    catalog.replace_issues(kinds, [{"score": 0.05, "suggested_wnid": None, "detail": None, **i} for i in issues])
    catalog.finish_stage(catalog.start_stage("noise", "fp-noise"), "ok", {"backbone": backbone})


def dog_flagged_as_cat(chosen: dict, backbone: str = TRAINED):
    """A setup for :func:`review_and_export`: the first dog image flagged as a label issue that suggests
    cat, by ``backbone``; its sha256 is left in ``chosen["sha"]``."""
    def setup(catalog: Catalog) -> None:
        chosen["sha"] = sha = images_of(catalog, DOG)[0]
        flag(catalog, backbone, [{"sha256": sha, "wnid": DOG, "kind": "label", "suggested_wnid": CAT}])
    return setup


def mislabel(catalog: Catalog, sha: str, wnid: str) -> None:
    """The crowd's label of ``sha`` moved to ``wnid`` (a wrong label for the noise stage to find)."""
    catalog.db.execute("UPDATE labels SET wnid = ? WHERE sha256 = ? AND accepted = 1", (wnid, sha))


def review_and_export(pipeline: Path, setup=None, review_force: bool = False):
    with open_run(load_config(pipeline), progress=False) as ctx:
        if setup is not None:
            setup(ctx.catalog)
        review = run_stage(ReviewStage(), ctx, force=review_force)
        export = run_stage(ExportStage(), ctx)
        decisions = {(r["sha256"], r["wnid"]): dict(r) for r in ctx.catalog.decisions()}
    return review, export, decisions


def exported(run_dir: Path) -> dict[str, dict[str, str]]:
    with (run_dir / "export" / "labels.csv").open(newline="", encoding="utf-8") as fh:
        return {(row["sha256"], row["wnid"]): row for row in csv.DictReader(fh)}


def table_counts(run_dir: Path) -> dict[str, int]:
    with sqlite3.connect(run_dir / "catalog.sqlite") as con:
        return {"tasks": con.execute("SELECT COUNT(*) FROM tasks").fetchone()[0],
                "votes": con.execute("SELECT COUNT(*) FROM votes").fetchone()[0],
                "review_tasks": con.execute("SELECT COUNT(*) FROM tasks WHERE backend = ?", (QUEUE,)).fetchone()[0]}


# ---------------------------------------------------------------------------------------------- policy
def test_each_policy_action_shapes_the_export(run, capsys):
    pipeline = run(review={"policy": {"label": "relabel", "outlier": "drop", "near_duplicate": "keep"}})
    chosen = {}

    def setup(catalog: Catalog) -> None:
        dog, cat, mouse = images_of(catalog, DOG), images_of(catalog, CAT), images_of(catalog, MOUSE)
        chosen.update(relabeled=dog[0], dropped=cat[0], near=mouse[:2])
        flag(catalog, TRAINED, [
            {"sha256": dog[0], "wnid": DOG, "kind": "label", "score": 0.031, "suggested_wnid": CAT},
            {"sha256": cat[0], "wnid": CAT, "kind": "outlier", "score": 0.9},
            *({"sha256": s, "wnid": MOUSE, "kind": "near_duplicate", "detail": "group 1"} for s in mouse[:2]),
        ])

    review, export, decisions = review_and_export(pipeline, setup)
    relabeled, dropped, near = chosen["relabeled"], chosen["dropped"], chosen["near"]
    assert decisions[(relabeled, DOG)]["action"] == "relabel" and decisions[(relabeled, DOG)]["new_wnid"] == CAT
    assert decisions[(relabeled, DOG)]["reason"] == (
        f"label issue (self-confidence 0.031, suggested {CAT}), policy relabel to {CAT}")
    assert decisions[(dropped, CAT)]["reason"] == "outlier (score 0.900), policy drop"
    assert {decisions[(s, MOUSE)]["action"] for s in near} == {"keep"}
    assert {d["source"] for d in decisions.values()} == {"policy"}
    assert review.stats["relabel"] == 1 and review.stats["drop"] == 1 and review.stats["keep"] == 2

    run_dir = Path(load_config(pipeline).run.dir)
    rows = exported(run_dir)
    assert (relabeled, DOG) not in rows and rows[(relabeled, CAT)]["given_wnid"] == DOG
    assert rows[(relabeled, CAT)]["decision"] == "relabel" and rows[(relabeled, CAT)]["label_issue"] == "False"
    assert rows[(relabeled, CAT)]["path"].split("/")[1] == CAT  # under the new class's folder
    assert (run_dir / "export" / rows[(relabeled, CAT)]["path"]).is_file()
    assert not any(sha == dropped for sha, _ in rows)
    assert all(rows[(s, MOUSE)]["decision"] == "keep" for s in near)
    assert export.stats["dropped"] == 1 and export.stats["relabeled"] == 1
    sheet = json.loads((run_dir / "export" / "datasheet.json").read_text())
    assert sheet["decisions"]["by_action"] == {"drop": 1, "keep": 2, "relabel": 1}
    assert sheet["decisions"]["applied_to_export"]["relabeled"] == 1
    assert {"kind": "outlier", "action": "drop", "source": "policy", "images": 1} in \
        sheet["decisions"]["by_kind_action_source"]
    assert "## Noise decisions" in (run_dir / "export" / "datasheet.md").read_text()
    capsys.readouterr()
    assert main(["status", str(run_dir)]) == 0
    status = capsys.readouterr().out.split("decisions about issues")[1].splitlines()
    assert status[1].split() == ["kind", "action", "source", "n"] and ["outlier", "drop", "policy", "1"] in \
        [line.split() for line in status]


def test_near_duplicate_drop_keeps_one_image_per_group():
    issues = [{"sha256": s, "wnid": DOG, "kind": "near_duplicate", "score": None, "suggested_wnid": None,
               "detail": "group 7"} for s in ("aa", "bb", "cc")]
    p_true = {("aa", DOG): 0.8, ("bb", DOG): 1.0, ("cc", DOG): 1.0}
    plan = {d.sha256: d for d in plan_decisions(issues, {"near_duplicate": Rule("drop", "policy drop")}, p_true)}
    assert plan["bb"].action == "keep" and "highest agreement" in plan["bb"].reason  # most agreed, then lowest sha
    assert plan["aa"].action == plan["cc"].action == "drop" and f"(bb in {DOG})" in plan["cc"].reason


def test_the_strongest_action_wins_and_the_reason_names_every_issue():
    issues = [{"sha256": "aa", "wnid": DOG, "kind": "label", "score": 0.2, "suggested_wnid": CAT, "detail": None},
              {"sha256": "aa", "wnid": DOG, "kind": "outlier", "score": 0.7, "suggested_wnid": None, "detail": None}]
    rules = {"label": Rule("review", "policy review"), "outlier": Rule("drop", "policy drop")}
    (decision,) = plan_decisions(issues, rules, {})
    assert decision.action == "drop" and decision.kind == "outlier"
    assert decision.reason == f"outlier (score 0.700), policy drop; also label issue (self-confidence 0.200, " \
                              f"suggested {CAT})"
    rules["outlier"] = Rule("keep", "policy keep")
    (decision,) = plan_decisions(issues, rules, {})
    assert decision.action == "review" and decision.ask == (DOG, CAT)


def test_flags_of_an_untrained_backbone_are_kept_with_that_reason(run):
    pipeline = run(review={"policy": {"label": "relabel", "outlier": "drop"}})
    chosen: dict = {}
    setup = dog_flagged_as_cat(chosen, UNTRAINED)

    _, _, decisions = review_and_export(pipeline, setup)
    decision = decisions[(chosen["sha"], DOG)]
    assert decision["action"] == "keep" and "untrained backbone" in decision["reason"]
    row = exported(Path(load_config(pipeline).run.dir))[(chosen["sha"], DOG)]
    assert row["label_issue"] == "True" and row["decision"] == "keep"
    assert table_counts(Path(load_config(pipeline).run.dir))["review_tasks"] == 0


def test_deprecated_drop_label_issues_still_decides_an_unset_label_policy(run):
    chosen: dict = {}
    setup = dog_flagged_as_cat(chosen)

    pipeline = run(export={"drop_label_issues": True})
    _, export, decisions = review_and_export(pipeline, setup)
    assert decisions[(chosen["sha"], DOG)]["reason"].endswith("export.drop_label_issues true")
    assert export.stats["dropped_label_issues"] == 1
    pipeline = run(export={"drop_label_issues": True}, review={"policy": {"label": "keep"}})  # the policy wins
    _, _, decisions = review_and_export(pipeline)
    assert decisions[(chosen["sha"], DOG)]["action"] == "keep"


def test_deprecated_drop_label_issues_drops_undecided_issues_when_review_did_not_run(run):
    """A pipeline that names its stages and leaves review out (as ``--only ... --only export``)."""
    chosen = {}
    pipeline = run(export={"drop_label_issues": True})
    with open_run(load_config(pipeline), progress=False) as ctx:
        chosen["sha"] = sha = images_of(ctx.catalog, DOG)[0]
        flag(ctx.catalog, TRAINED, [{"sha256": sha, "wnid": DOG, "kind": "label", "suggested_wnid": CAT}])
        assert run_stage(ExportStage(), ctx).stats["dropped_label_issues"] == 1
    assert not any(sha == chosen["sha"] for sha, _ in exported(Path(load_config(pipeline).run.dir)))


# ---------------------------------------------------------------------------------------------- review
def test_the_crowds_review_overrides_the_models_suggestion(run):
    """A right label the model doubts is kept, a wrong one moves to the class people confirm, and an image
    of neither class asked about is dropped; the review's tasks and votes are apart from the first rounds."""
    pipeline = run()  # label: unset -> review, as the simulated crowd can answer
    chosen = {}

    def setup(catalog: Catalog) -> None:
        chosen["votes"] = len(catalog.vote_table(complete_only=False, backend="simulated"))
        dog, cat, mouse = images_of(catalog, DOG), images_of(catalog, CAT), images_of(catalog, MOUSE)
        chosen.update(right=dog[0], cat_as_dog=cat[0], mouse_as_dog=mouse[0])
        mislabel(catalog, cat[0], DOG)
        mislabel(catalog, mouse[0], DOG)
        flag(catalog, TRAINED, [{"sha256": s, "wnid": DOG, "kind": "label", "suggested_wnid": CAT, "score": 0.01}
                                for s in (dog[0], cat[0], mouse[0])])

    review, export, decisions = review_and_export(pipeline, setup)
    right, cat_as_dog, mouse_as_dog = (decisions[(chosen[k], DOG)] for k in ("right", "cat_as_dog", "mouse_as_dog"))
    assert {d["source"] for d in (right, cat_as_dog, mouse_as_dog)} == {"review"}
    assert right["action"] == "keep" and right["reason"].startswith(f"review confirmed {DOG} ({DOG}: ")
    assert cat_as_dog["action"] == "relabel" and cat_as_dog["new_wnid"] == CAT
    assert cat_as_dog["reason"].startswith(f"review chose {CAT} over {DOG} ({DOG}: 0 of 5 voters said yes")
    assert mouse_as_dog["action"] == "drop" and "review confirmed neither" in mouse_as_dog["reason"]
    assert review.stats["review_tasks"] == 6 and review.stats["review_votes"] == 30 and review.waiting is None

    run_dir = Path(load_config(pipeline).run.dir)
    rows = exported(run_dir)
    assert rows[(chosen["right"], DOG)]["decision"] == "keep" and rows[(chosen["right"], DOG)]["label_issue"] == "False"
    assert rows[(chosen["cat_as_dog"], CAT)]["given_wnid"] == DOG
    assert not any(sha == chosen["mouse_as_dog"] for sha, _ in rows)
    catalog = Catalog(run_dir / "catalog.sqlite", readonly=True)
    try:  # the first rounds' votes are as they were: the review's are in their own queue
        assert len(catalog.vote_table(complete_only=False, backend="simulated")) == chosen["votes"]
        assert len(catalog.vote_table(complete_only=False, backend=QUEUE)) == 30
    finally:
        catalog.close()


def test_a_rerun_asks_nothing_twice_and_keeps_the_review_answers(run, monkeypatch):
    chosen: dict = {}
    setup = dog_flagged_as_cat(chosen)

    pipeline = run(review={"policy": {"label": "review"}})
    review_and_export(pipeline, setup)
    run_dir = Path(load_config(pipeline).run.dir)
    before = table_counts(run_dir)
    assert before["review_tasks"] == 2
    monkeypatch.setattr(SimulatedCrowd, "pull", lambda *_: pytest.fail("the crowd was asked again"))
    review, _, decisions = review_and_export(pipeline, review_force=True)
    assert table_counts(run_dir) == before and review.stats["review_votes"] == 0
    with open_run(load_config(pipeline), progress=False) as ctx:
        assert run_stage(ReviewStage(), ctx).nothing_to_do  # nothing pending, inputs unchanged
    pipeline = run(review={"policy": {"label": "drop"}})  # a later policy does not undo what people answered
    _, _, after = review_and_export(pipeline)
    assert after[(chosen["sha"], DOG)] == decisions[(chosen["sha"], DOG)]
    assert after[(chosen["sha"], DOG)]["source"] == "review" and table_counts(run_dir) == before


def test_review_stats_add_up_for_the_images_flagged_now(run):
    """flagged = keep + drop + relabel + review_pending, over the images flagged now; the crowd's answers about
    images no longer flagged still stand (export applies them) and are counted apart."""
    pipeline = run()
    chosen: dict = {}

    def three_dogs(catalog: Catalog) -> None:
        chosen["dogs"] = images_of(catalog, DOG)[:3]
        flag(catalog, TRAINED, [{"sha256": s, "wnid": DOG, "kind": "label", "suggested_wnid": CAT}
                                for s in chosen["dogs"]])

    def one_cat(catalog: Catalog) -> None:  # the noise stage ran again and flags something else
        flag(catalog, TRAINED, [{"sha256": images_of(catalog, CAT)[0], "wnid": CAT, "kind": "outlier"}])

    first = review_and_export(pipeline, three_dogs)[0].stats
    assert (first["flagged"], first["keep"]) == (3, 3)  # the crowd confirmed the three dogs
    review, _, decisions = review_and_export(pipeline, one_cat)
    stats = review.stats
    assert stats["flagged"] == stats["keep"] + stats["drop"] + stats["relabel"] + stats["review_pending"] == 1
    assert first["decided_by_review"] == 3
    assert (stats["decided_by_review"], stats["earlier_reviews_not_flagged"]) == (0, 3)
    assert {decisions[(sha, DOG)]["source"] for sha in chosen["dogs"]} == {"review"}


def test_pending_review_waits_and_export_follows_review_pending(run, capsys):
    slow = {"type": "simulated", "workers": 7, "accuracy": 0.95, "accuracy_spread": 0.03, "spammer_share": 0.0,
            "answers_per_pull": 1}
    chosen: dict = {}
    setup = dog_flagged_as_cat(chosen)

    pipeline = run(review={"backend": slow})
    review, export, decisions = review_and_export(pipeline, setup)
    key = (chosen["sha"], DOG)
    assert review.waiting is not None and review.waiting.count == 9 and "run the same command" in str(review.waiting)
    assert decisions[key]["action"] == "review" and decisions[key]["reason"].endswith(f"about {DOG} and {CAT}")
    run_dir = Path(load_config(pipeline).run.dir)
    assert key not in exported(run_dir) and export.stats["pending_excluded"] == 1

    pipeline = run(review={"backend": slow, "pending": "keep"})
    review, export, _ = review_and_export(pipeline)  # one more vote (the crowd answers one per pull)
    assert review.waiting.count == 8
    row = exported(run_dir)[key]
    assert row["decision"] == "pending" and row["label_issue"] == "True" and export.stats["pending_exported"] == 1

    assert main(["run", str(run()), "--no-progress", "--only", "review", "--only", "export"]) == 0  # answers now
    assert exported(run_dir)[key]["decision"] == "keep"
    assert "review confirmed" in exported(run_dir)[key]["decision_reason"]


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(("policy", "message"), [
    ({"label": "remove"}, "review.policy.label: Input should be 'keep', 'drop', 'relabel' or 'review'"),
    ({"outlier": "relabel"}, "review.policy.outlier: relabel moves an image to the suggested class, and outlier "
                             "issues suggest none"),
    ({"near_duplicate": "review"}, "review.policy.near_duplicate: review asks the crowd"),
    ({"cross_class": "drop"}, "review.policy.cross_class: unknown key; did you mean cross_class_duplicate?"),
])
def test_policy_errors_name_their_yaml_path(pipeline_file: Path, policy: dict, message: str, capsys):
    data = yaml.safe_load(pipeline_file.read_text())
    data["review"] = {"policy": policy}
    assert main(["validate", str(write_pipeline(pipeline_file, data))]) == 2
    assert message in capsys.readouterr().err


def test_review_needs_a_crowd_that_can_answer(run, monkeypatch):
    monkeypatch.setattr(SimulatedCrowd, "can_review", False, raising=False)  # as a crowd of given labels
    with pytest.raises(ConfigError, match="review.backend: the 'simulated' crowd cannot answer review questions"):
        load_config(run(review={"backend": "simulated"}))
    chosen: dict = {}
    setup = dog_flagged_as_cat(chosen)

    with pytest.raises(ConfigError, match=r"review.policy.label: review needs a crowd that answers"):
        review_and_export(run(review={"policy": {"label": "review"}}), setup)
    _, _, decisions = review_and_export(run())  # the unset default falls back to keep
    assert decisions[(chosen["sha"], DOG)]["action"] == "keep"
    assert "'simulated' crowd cannot review" in decisions[(chosen["sha"], DOG)]["reason"]


# ---------------------------------------------------------------------------------------------- catalog
def test_export_reruns_when_a_decision_changes(run):
    pipeline = run(review={"policy": {"label": "keep"}})

    def setup(catalog: Catalog) -> None:
        flag(catalog, TRAINED, [{"sha256": images_of(catalog, DOG)[0], "wnid": DOG, "kind": "label",
                                 "suggested_wnid": CAT}])

    review_and_export(pipeline, setup)
    with open_run(load_config(run(review={"policy": {"label": "drop"}})), progress=False) as ctx:
        before = ExportStage().fingerprint_inputs(ctx)
        run_stage(ReviewStage(), ctx)
        assert ExportStage().fingerprint_inputs(ctx)["decisions"] != before["decisions"]


def test_a_v3_catalog_is_upgraded_keeping_its_rows(tmp_path: Path):
    path = tmp_path / "catalog.sqlite"
    con = sqlite3.connect(path)
    for _, script in MIGRATIONS[:3]:
        con.executescript(script)
    con.execute("PRAGMA user_version=3")
    con.execute("INSERT INTO synsets VALUES (?, 'dog.n.01', 'dog', 'a dog', 13, NULL, 'noun.animal')", (DOG,))
    con.execute("INSERT INTO images (sha256, path, width, height, nbytes, mime) VALUES ('aa', 'p', 1, 1, 1, 'x')")
    con.execute("INSERT INTO tasks (sha256, wnid, backend, votes_wanted) VALUES ('aa', ?, 'simulated', 1)", (DOG,))
    con.execute("INSERT INTO votes (task_id, annotator, answer, remote_id, created_at, lead_time_s) "
                "VALUES (1, 'w', 'yes', 'r1', 0, 2.5)")
    con.execute("INSERT INTO issues (sha256, wnid, kind, score) VALUES ('aa', ?, 'label', 0.1)", (DOG,))
    con.commit()
    con.close()

    catalog = Catalog(path)
    try:
        assert catalog.version == SCHEMA_VERSION == 4
        assert [dict(r)["answer"] for r in catalog.vote_table(complete_only=False)] == ["yes"]
        assert [r["kind"] for r in catalog.issues_of(("label",))] == ["label"]
        catalog.replace_policy_decisions([{"sha256": "aa", "wnid": DOG, "kind": "label", "action": "keep",
                                           "new_wnid": None, "reason": "label issue, policy keep"}])
        assert [(r["action"], r["source"]) for r in catalog.decisions()] == [("keep", "policy")]
        with pytest.raises(sqlite3.IntegrityError):  # a relabel names its class
            catalog.record_review_decisions([{"sha256": "aa", "wnid": DOG, "kind": "label", "action": "relabel",
                                              "new_wnid": None, "reason": "x"}])
    finally:
        catalog.close()
    with sqlite3.connect(tmp_path / "catalog.sqlite.v3.bak") as backup:
        assert backup.execute("PRAGMA user_version").fetchone()[0] == 3
        assert backup.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 1


# ---------------------------------------------------------------------------------------------- people
def test_a_review_by_people_in_label_studio_waits_then_decides(ls_env, annotators, run, capsys):  # noqa: F811
    """People: the review's questions go to a Label Studio project of their own; the stage waits until they
    have answered (here through the API, as the labeling screen would), and the next run decides."""
    from test_labelstudio import choice, connect, project_id, remote_tasks

    backend = {"type": "labelstudio", "local_files_root": str(ls_env.root)}
    pipeline = run(review={"backend": backend, "votes_per_image": 3})
    run_dir = Path(load_config(pipeline).run.dir)
    with open_run(load_config(pipeline), progress=False) as ctx:
        cat = images_of(ctx.catalog, CAT)[0]
        mislabel(ctx.catalog, cat, DOG)
        flag(ctx.catalog, TRAINED, [{"sha256": cat, "wnid": DOG, "kind": "label", "suggested_wnid": CAT}])
    only = ["--no-progress", "--only", "review", "--only", "export"]
    assert main(["run", str(pipeline), *only]) == 0
    assert "review: waiting for 6 review votes" in capsys.readouterr().out
    assert not (run_dir / "export").exists()  # the export waits for the review

    with connect(ls_env.url, ls_env.token) as ls:
        project = project_id(run_dir, ls_env.url, review_queue("labelstudio"))
        questions = [t for t in remote_tasks(ls, project) if t.data["sha256"] == cat]
        assert sorted(t.data["wnid"] for t in questions) == [DOG, CAT]
        for task in questions:
            for uid in annotators.values():
                ls.annotations.create(id=task.id, result=choice("yes" if task.data["wnid"] == CAT else "no"),
                                      completed_by=uid)
    assert main(["run", str(pipeline), *only]) == 0
    assert "waiting" not in capsys.readouterr().out
    row = exported(run_dir)[(cat, CAT)]
    assert row["decision"] == "relabel" and row["given_wnid"] == DOG
    assert row["decision_reason"] == (f"review chose {CAT} over {DOG} ({DOG}: 0 of 3 voters said yes; "
                                      f"{CAT}: 3 of 3 voters said yes)")
