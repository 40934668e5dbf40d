"""The ``labelstudio`` crowd against a real Label Studio on loopback (from ``.venv-labelstudio``: ``make labelstudio``).

One server serves the whole module (its first start migrates a database: ~30 s); its local-files document
root is pytest's base temporary folder, so every test's run directory (under ``tmp_path``) is servable and
each run gets its own project. Annotators answer through the API as the labeling UI would (choice aliases
``yes``/``no``/``unsure``). Without ``.venv-labelstudio`` the server tests are skipped, unless
``CURATE_REQUIRE_LABELSTUDIO=1`` (as ``.ci/run`` sets) makes that a failure.
"""

from __future__ import annotations

import csv
import json
import shutil
import socket
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from conftest import CORPUS_SPEC, DOG, draw_image, pipeline_dict, require_labelstudio, write_pipeline

from curate.catalog import Catalog
from curate.cli import main
from curate.crowd.labelstudio import NO_EXAMPLES, LabelStudioCrowd, LabelStudioCrowdConfig
from curate.crowd.truth import make_truth
from curate.errors import StageError
from curate.labelstudio.client import connect
from curate.labelstudio.server import start_server
from curate.layout import RunLayout

SMALL = (0, 1, 2, 8, 9, 10, 16, 17, 24, 26)  # 3 dogs, 3 cats, 2 mice, a hot dog, a computer mouse


def build_small_corpus(root: Path) -> Path:
    """Ten of the fixture corpus's pictures: every answer costs Label Studio ~0.2 s, so fewer questions."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in SMALL:
        caption, wnid, colour, shape = CORPUS_SPEC[i]
        name = f"images/img_{i:03d}.png"
        draw_image(colour, shape, seed=i).save(root / name)
        rows.append({"file": name, "caption": caption, "true_wnids": wnid, "license": "CC0-1.0", "creator": "tests"})
    with (root / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The module's server; a test may stop it and start it again (same port, same data)."""

    def __init__(self, run_dir: Path, root: Path):
        self.run_dir, self.root, self.port = run_dir, root, free_port()
        self.current = start_server(run_dir, "127.0.0.1", self.port, document_root=root)

    def restart(self) -> None:
        self.current.stop()
        self.current = start_server(self.run_dir, "127.0.0.1", self.port, document_root=self.root)

    @property
    def url(self) -> str:
        return self.current.url

    @property
    def token(self) -> str:
        return self.current.token


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_labelstudio()
    root = tmp_path_factory.getbasetemp()
    srv = Server(tmp_path_factory.mktemp("ls-server"), root)
    yield srv
    srv.current.stop()


@pytest.fixture(scope="module")
def annotators(server) -> dict[str, int]:
    """Three annotator accounts: email -> user id."""
    with connect(server.url, server.token) as ls:
        users = {}
        for name in ("ann1", "ann2", "ann3"):
            user = ls.users.create(email=f"{name}@example.org", username=name, password="not-a-secret-1")
            users[user.email] = user.id
        return users


@pytest.fixture
def ls_env(server, monkeypatch):
    """The run uses the module's server as "an existing server": URL and token from the environment."""
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    return server


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> dict:
    """Synsets and candidates of the small corpus, done once; tests annotate copies of it."""
    tmp = tmp_path_factory.mktemp("ls-base")
    data = pipeline_dict(build_small_corpus(tmp / "corpus"), tmp / "run")
    pipeline = write_pipeline(tmp / "pipeline.yaml", data)
    assert main(["run", str(pipeline), "--no-progress", "--only", "synsets", "--only", "candidates"]) == 0
    return data


def make_pipeline(base: dict, root: Path, document_root: Path, run_dir: Path | None = None, votes: int = 3,
                  **backend) -> Path:
    """A copy of the base run in ``run_dir`` (default ``root/run``) whose crowd is Label Studio."""
    run_dir = run_dir or root / "run"
    shutil.copytree(base["run"]["dir"], run_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock"))
    data = json.loads(json.dumps(base))
    data["run"]["dir"] = str(run_dir)
    data["annotate"] = {"backend": {"type": "labelstudio", "local_files_root": str(document_root), **backend},
                        "votes_per_image": votes, "aggregate": "majority"}  # a fixed number of votes per task
    return write_pipeline(root / "pipeline.yaml", data)


def run(pipeline: Path, *args: str) -> int:
    return main(["run", str(pipeline), "--no-progress", "--only", "annotate", *args])


def catalog_rows(run_dir: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(run_dir / "catalog.sqlite")
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def project_id(run_dir: Path, url: str, queue: str | None = None) -> int:
    """The run's project on ``url``: the first rounds', or that of another ``queue`` (the review round's)."""
    entry = json.loads(RunLayout(run_dir).labelstudio_projects.read_text())[url]
    return (entry["queues"][queue] if queue else entry)["project"]


def remote_tasks(ls, project: int) -> list:
    return list(ls.tasks.list(project=project, fields="all", include="id,data,annotations,predictions",
                              page_size=1000))


def choice(answer: str, name: str = "answer") -> list[dict]:
    values = answer if isinstance(answer, list) else [answer]
    return [{"from_name": name, "to_name": "image", "type": "choices", "value": {"choices": values}}]


def answer_all(ls, project: int, annotators: dict[str, int], run_dir: Path, unsure: int | None = None) -> dict:
    """Every annotator answers every task truthfully (ann3 says "unsure" on task ``unsure``);
    returns Label Studio task id -> {email: annotation id}."""
    with _open(run_dir) as catalog:
        is_true = make_truth(catalog.truth_table())
    done: dict[int, dict[str, int]] = {}
    for task in remote_tasks(ls, project):
        truth = is_true(task.data["sha256"], task.data["wnid"])
        for email, uid in annotators.items():
            answer = "yes" if truth else "no"
            if task.id == unsure and email == "ann3@example.org":
                answer = "unsure"
            made = ls.annotations.create(id=task.id, result=choice(answer), completed_by=uid)
            done.setdefault(task.id, {})[email] = made.id
    return done


class _open:
    def __init__(self, run_dir: Path):
        self.catalog = Catalog(run_dir / "catalog.sqlite", readonly=True)

    def __enter__(self) -> Catalog:
        return self.catalog

    def __exit__(self, *exc: object) -> None:
        self.catalog.close()


# ---------------------------------------------------------------------------------------------- tests


def test_push_answer_pull_aggregate(ls_env, annotators, base_run, tmp_path: Path, capsys):
    pipeline = make_pipeline(base_run, tmp_path, ls_env.root)
    run_dir = tmp_path / "run"
    assert run(pipeline) == 0
    out = capsys.readouterr().out
    tasks = catalog_rows(run_dir, "SELECT * FROM tasks")
    assert tasks and all(t["remote_id"] for t in tasks)
    assert f"waiting for {3 * len(tasks)} votes" in out and "/data?labeling=1" in out

    project = project_id(run_dir, ls_env.url)
    with connect(ls_env.url, ls_env.token) as ls:
        remote = remote_tasks(ls, project)
        assert len(remote) == len(tasks)
        assert {t.data["curate_task_id"] for t in remote} == {t["id"] for t in tasks}
        sample = next(t for t in remote if t.data["wnid"] == DOG)
        assert sample.data["question"].startswith("Is this a dog?")
        # nothing is verified yet: no example images (never unverified candidates), the gloss is the definition
        assert "domestic dog" in sample.data["about"] and "<img" not in sample.data["about"]
        assert NO_EXAMPLES in sample.data["about"]
        # the image and the examples are served from the run's image store through the local-files storage
        headers = {"Authorization": f"Token {ls_env.token}"}
        image = requests.get(ls_env.url + sample.data["image"], headers=headers, timeout=10)
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        outside = requests.get(f"{ls_env.url}/data/local-files/?d=" + str((run_dir / "catalog.sqlite").relative_to(
            ls_env.root)), headers=headers, timeout=10)
        assert outside.status_code == 404
        project_info = ls.projects.get(id=project)
        assert project_info.maximum_annotations == 3
        assert 'hotkey="y"' in project_info.label_config and "Unsure" in project_info.label_config

        unsure_task = remote[0].id
        answer_all(ls, project, annotators, run_dir, unsure=unsure_task)

    assert run(pipeline) == 0
    out = capsys.readouterr().out
    assert "waiting" not in out
    votes = catalog_rows(run_dir, "SELECT * FROM votes")
    assert len(votes) == 3 * len(tasks)
    assert {v["annotator"] for v in votes} == set(annotators)
    assert all(v["remote_id"].startswith("ls:") and v["superseded_by"] is None for v in votes)
    unsure_curate = next(t.data["curate_task_id"] for t in remote if t.id == unsure_task)
    assert [v["answer"] for v in votes if v["task_id"] == unsure_curate and v["annotator"] == "ann3@example.org"] \
        == ["unsure"]
    assert all(t["state"] == "complete" for t in catalog_rows(run_dir, "SELECT state FROM tasks"))
    with _open(run_dir) as catalog:
        is_true = make_truth(catalog.truth_table())
    labels = catalog_rows(run_dir, "SELECT * FROM labels")
    assert len(labels) == len(tasks)
    assert all(bool(row["accepted"]) == bool(is_true(row["sha256"], row["wnid"])) for row in labels)
    status = catalog_rows(run_dir, "SELECT status FROM stage_runs WHERE stage = 'annotate' ORDER BY id")
    assert [r["status"] for r in status] == ["waiting", "ok"]


def test_repush_creates_no_duplicates(ls_env, base_run, tmp_path: Path):
    pipeline = make_pipeline(base_run, tmp_path, ls_env.root)
    run_dir = tmp_path / "run"
    assert run(pipeline) == 0
    before = {r["id"]: r["remote_id"] for r in catalog_rows(run_dir, "SELECT id, remote_id FROM tasks")}
    # a push cut short after the import, before curate kept the remote ids: the next push finds the tasks
    con = sqlite3.connect(run_dir / "catalog.sqlite")
    with con:
        con.execute("UPDATE tasks SET remote_id = NULL WHERE id % 2 = 0")
    con.close()
    assert run(pipeline) == 0
    assert run(pipeline) == 0  # and a plain rerun publishes nothing either
    after = {r["id"]: r["remote_id"] for r in catalog_rows(run_dir, "SELECT id, remote_id FROM tasks")}
    assert after == before
    with connect(ls_env.url, ls_env.token) as ls:
        remote = remote_tasks(ls, project_id(run_dir, ls_env.url))
    assert len(remote) == len(before)
    assert len(json.loads(RunLayout(run_dir).labelstudio_projects.read_text())) == 1


def test_changed_and_deleted_answers(ls_env, annotators, base_run, tmp_path: Path, capsys):
    pipeline = make_pipeline(base_run, tmp_path, ls_env.root)
    run_dir = tmp_path / "run"
    assert run(pipeline) == 0
    project = project_id(run_dir, ls_env.url)
    with connect(ls_env.url, ls_env.token) as ls:
        made = answer_all(ls, project, annotators, run_dir)
        assert run(pipeline) == 0  # all votes in, every task complete
        first, second = sorted(made)[:2]
        changed, deleted = made[first]["ann1@example.org"], made[second]["ann2@example.org"]
        old_answer = catalog_rows(run_dir, f"SELECT answer FROM votes WHERE remote_id = 'ls:{changed}'")[0]["answer"]
        new_answer = "no" if old_answer == "yes" else "yes"
        time.sleep(0.01)
        ls.annotations.update(id=changed, result=choice(new_answer))
        ls.annotations.delete(id=deleted)
    capsys.readouterr()
    assert run(pipeline, "--force") == 0  # every task was complete: a forced run looks for changed answers
    assert "waiting for 1 votes" in capsys.readouterr().out  # the deleted answer is missing again

    old = catalog_rows(run_dir, f"SELECT * FROM votes WHERE remote_id = 'ls:{changed}'")[0]
    new = catalog_rows(run_dir, f"SELECT * FROM votes WHERE remote_id LIKE 'ls:{changed}:%'")
    assert len(new) == 1 and new[0]["answer"] == new_answer and new[0]["superseded_by"] is None
    assert old["superseded_by"] == new[0]["id"]
    gone = catalog_rows(run_dir, f"SELECT * FROM votes WHERE remote_id = 'ls:{deleted}'")[0]
    assert gone["superseded_by"] == gone["id"]  # withdrawn
    second_task = catalog_rows(run_dir, f"SELECT state FROM tasks WHERE remote_id = '{project}/{second}'")[0]
    assert second_task["state"] == "open"
    current = catalog_rows(run_dir, f"SELECT COUNT(*) AS n FROM votes v JOIN tasks t ON t.id = v.task_id "
                                    f"WHERE t.remote_id = '{project}/{first}' AND v.superseded_by IS NULL")
    assert current[0]["n"] == 3

    with connect(ls_env.url, ls_env.token) as ls:  # a new answer arrives: the task completes again
        ls.annotations.create(id=second, result=choice("unsure"), completed_by=annotators["ann2@example.org"])
    assert run(pipeline) == 0
    assert "waiting" not in capsys.readouterr().out
    assert catalog_rows(run_dir, f"SELECT state FROM tasks WHERE remote_id = '{project}/{second}'")[0]["state"] \
        == "complete"
    assert run(pipeline, "--force") == 0  # nothing changed: nothing revised twice
    assert len(catalog_rows(run_dir, "SELECT id FROM votes")) == 3 * len(made) + 2

    # an aggregator asks one task for a fourth vote: Label Studio is told to serve it once more
    con = sqlite3.connect(run_dir / "catalog.sqlite")
    with con:
        con.execute(f"UPDATE tasks SET votes_wanted = 4, state = 'open' WHERE remote_id = '{project}/{first}'")
    con.close()
    assert run(pipeline) == 0
    assert "waiting for 1 votes" in capsys.readouterr().out
    with connect(ls_env.url, ls_env.token) as ls:
        task = ls.tasks.get(id=str(first))
    assert task.overlap == 4 and not task.is_labeled


def test_server_stopped_mid_pull_is_reported_and_the_next_run_resumes(ls_env, annotators, base_run,
                                                                        tmp_path: Path, monkeypatch, capsys):
    import curate.stages.annotate as annotate

    pipeline = make_pipeline(base_run, tmp_path, ls_env.root)
    run_dir = tmp_path / "run"
    assert run(pipeline) == 0
    with connect(ls_env.url, ls_env.token) as ls:
        made = answer_all(ls, project_id(run_dir, ls_env.url), annotators, run_dir)

    monkeypatch.setattr(annotate, "PULL_BATCH", 3)
    original = LabelStudioCrowd.pull
    calls: list[int] = []

    def pull_then_stop(self, tasks):
        calls.append(len(tasks))
        if len(calls) == 3:
            ls_env.current.stop()  # the server goes away after two batches were pulled and stored
        return original(self, tasks)

    monkeypatch.setattr(LabelStudioCrowd, "pull", pull_then_stop)
    capsys.readouterr()
    assert run(pipeline) == 1
    err = capsys.readouterr().err
    assert f"Label Studio at {ls_env.url} is unreachable" in err and "resume with: curate run" in err
    assert "Traceback" not in err
    assert len(made) > 6
    assert len(catalog_rows(run_dir, "SELECT id FROM votes")) == 2 * 3 * 3  # the first two batches are kept

    monkeypatch.setattr(LabelStudioCrowd, "pull", original)
    ls_env.restart()
    assert run(pipeline) == 0
    assert "waiting" not in capsys.readouterr().out
    assert len(catalog_rows(run_dir, "SELECT id FROM votes")) == 3 * len(made)
    assert [r["status"] for r in catalog_rows(run_dir, "SELECT status FROM stage_runs WHERE stage = 'annotate' "
                                                       "ORDER BY id")] == ["waiting", "failed", "ok"]


def test_local_server_for_a_run_is_found_without_environment(server, base_run, tmp_path: Path, monkeypatch):
    """`curate labelstudio serve RUN_DIR` leaves server.json and a 0600 credentials file: `curate run` needs no
    environment. (The module's server is that run's local server.)"""
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    layout = RunLayout(server.run_dir)
    assert layout.labelstudio_credentials.stat().st_mode & 0o777 == 0o600
    assert json.loads(layout.labelstudio_server.read_text())["url"] == server.url
    pipeline = make_pipeline(base_run, tmp_path, server.root, run_dir=server.run_dir, votes=1)
    assert run(pipeline) == 0
    tasks = catalog_rows(server.run_dir, "SELECT * FROM tasks")
    assert tasks and all(t["remote_id"] for t in tasks)


def test_multi_class_mode(ls_env, annotators, base_run, tmp_path: Path):
    pipeline = make_pipeline(base_run, tmp_path, ls_env.root, multi_class=True)
    run_dir = tmp_path / "run"
    assert run(pipeline) == 0
    tasks = catalog_rows(run_dir, "SELECT * FROM tasks")
    project = project_id(run_dir, ls_env.url)
    with connect(ls_env.url, ls_env.token) as ls:
        remote = remote_tasks(ls, project)
        assert len(remote) == len({t["sha256"] for t in tasks})  # one question per image
        assert sum(len(t.data["curate_task_ids"]) for t in remote) == len(tasks)
        with _open(run_dir) as catalog:
            is_true = make_truth(catalog.truth_table())
        for task in remote:
            wnids = [c["value"] for c in task.data["classes"] if c["value"] not in ("none", "unsure")]
            picked = [w for w in wnids if is_true(task.data["sha256"], w)] or ["none"]
            for email, uid in annotators.items():
                answer = ["unsure"] if email == "ann3@example.org" else picked
                ls.annotations.create(id=task.id, result=choice(answer, "classes"), completed_by=uid)
    assert run(pipeline) == 0
    votes = catalog_rows(run_dir, "SELECT v.*, t.sha256, t.wnid FROM votes v JOIN tasks t ON t.id = v.task_id")
    assert len(votes) == 3 * len(tasks)
    assert {v["answer"] for v in votes if v["annotator"] == "ann3@example.org"} == {"unsure"}
    assert all((v["answer"] == "yes") == bool(is_true(v["sha256"], v["wnid"]))
               for v in votes if v["annotator"] != "ann3@example.org")


def test_model_scores_become_predictions(ls_env, base_run, tmp_path: Path):
    from curate.config import load_config
    from curate.runner import open_run

    pipeline = make_pipeline(base_run, tmp_path, ls_env.root)
    with open_run(load_config(pipeline), progress=False) as ctx:
        ctx.catalog.create_missing_tasks("labelstudio", 3)
        rows = [dict(row) | {"score": score} for row, score in
                zip(ctx.catalog.unpublished_tasks("labelstudio")[:2], (0.9, 0.2), strict=True)]
        backend = LabelStudioCrowd(LabelStudioCrowdConfig(local_files_root=ls_env.root), ctx)
        try:
            remote = backend.push(rows)
            project = backend.project_id
        finally:
            backend.close()
    assert len(remote) == 2
    with connect(ls_env.url, ls_env.token) as ls:
        assert ls.projects.get(id=project).sampling == "Uncertainty sampling"
        predictions = {t.data["curate_task_id"]: t.predictions for t in remote_tasks(ls, project)}
    first, second = (predictions[r["id"]][0] for r in rows)
    assert first.result[0]["value"]["choices"] == ["yes"] and first.score == pytest.approx(0.9)
    assert second.result[0]["value"]["choices"] == ["no"] and second.score == pytest.approx(0.8)
    assert {first.model_version, second.model_version} == {"curate"}


def test_no_server_is_a_clear_stage_error(tmp_path: Path, monkeypatch):
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    ctx = SimpleNamespace(catalog=None, layout=RunLayout(tmp_path / "run"),
                          config=SimpleNamespace(run=SimpleNamespace(name="x"),
                                                 annotate=SimpleNamespace(votes_per_image=3)))
    with pytest.raises(StageError, match="curate labelstudio serve .*LABEL_STUDIO_URL"):
        LabelStudioCrowd(LabelStudioCrowdConfig(), ctx)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    with pytest.raises(StageError, match="no API token for Label Studio at http://127.0.0.1:9"):
        LabelStudioCrowd(LabelStudioCrowdConfig(), ctx)


def test_no_server_names_the_stage_that_needs_it(base_run, tmp_path: Path, monkeypatch, capsys):
    """The error of a crowd backend is the stage's: `annotate` failed, with the way to start a server."""
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    pipeline = make_pipeline(base_run, tmp_path, tmp_path)
    assert run(pipeline) == 1
    err = capsys.readouterr().err
    assert "stage 'annotate' failed: no Label Studio server" in err and "curate labelstudio serve" in err
    assert "stage 'labelstudio'" not in err and "Traceback" not in err


def test_serve_refuses_a_busy_port(tmp_path: Path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["labelstudio", "serve", str(tmp_path / "run"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err and "--port" in err
    assert "Traceback" not in err
    assert not RunLayout(tmp_path / "run").labelstudio_server.exists()


# What annotators see and can open, in Chromium, is tested in tests/test_labelstudio_access.py.


# ---------------------------------------------------------------------------------------------- a real crowd
T0 = "2025-05-01T10:00:00.000000Z"


def shas_of(catalog: Catalog, wnid: str) -> list[str]:
    """The corpus's images truly of ``wnid``, in sha256 order."""
    return sorted(sha for sha, wnids in catalog.truth_table().items() if wnids == {wnid})


def test_examples_are_only_gold_or_accepted_with_high_agreement(ls_env, base_run, tmp_path: Path):
    """Beside each question, examples of the class come from gold answers and from images the crowd accepted
    with p_true >= 0.9 from at least ``example_min_votes`` votes, never from candidates nobody verified, a
    rejected or doubted image, nor the image asked about; a class with none shows no image and says the gloss
    is the definition."""
    from conftest import CAT, HOTDOG, MOUSE

    from curate.config import load_config
    from curate.runner import open_run

    pipeline = make_pipeline(base_run, tmp_path, ls_env.root)
    with open_run(load_config(pipeline), progress=False) as ctx:
        catalog = ctx.catalog
        (hotdog,), (dog0, dog1, dog2), (cat0, *_), (mouse0, _) = (shas_of(catalog, w) for w in (HOTDOG, DOG, CAT,
                                                                                                 MOUSE))
        catalog.replace_labels("majority", [
            {"sha256": sha, "wnid": DOG, "method": "majority", "p_true": p, "accepted": int(p > 0.5), "n_votes": n}
            for sha, p, n in ((dog0, 1.0, 3),  # an example
                              (dog1, 0.67, 3),  # accepted, but 2 of 3: not agreement enough
                              (dog2, 1.0, 2),  # too few votes (but a gold answer below)
                              (hotdog, 0.0, 3),  # rejected
                              (cat0, 1.0, 3),  # accepted, then dropped by a review
                              (mouse0, 1.0, 3))])  # accepted against a known "no"
        catalog.add_gold([{"sha256": dog2, "wnid": DOG, "answer": "yes", "source": "tests"},
                          {"sha256": mouse0, "wnid": DOG, "answer": "no", "source": "tests"}])
        catalog.replace_policy_decisions([{"sha256": cat0, "wnid": DOG, "kind": "label", "action": "drop",
                                           "new_wnid": None, "reason": "tests"}])
        catalog.create_missing_tasks("labelstudio", 3)
        tasks = [t for t in catalog.unpublished_tasks("labelstudio") if t["wnid"] in (DOG, CAT)]
        paths = catalog.image_paths([dog0, dog1, dog2, hotdog, cat0, mouse0])
        backend = LabelStudioCrowd(LabelStudioCrowdConfig(local_files_root=ls_env.root), ctx)
        try:
            backend.push(tasks)
            project = backend.project_id
            urls = {sha: backend._image_url(path) for sha, path in paths.items()}
        finally:
            backend.close()
    with connect(ls_env.url, ls_env.token) as ls:
        about = {(t.data["sha256"], t.data["wnid"]): t.data["about"] for t in remote_tasks(ls, project)}
    assert {(dog0, DOG), (hotdog, DOG), (cat0, CAT)} <= set(about)
    for (sha, wnid), panel in about.items():
        shown = panel.count("<img")
        if wnid == CAT:  # nothing verified: no image, the definition counts
            assert shown == 0 and NO_EXAMPLES in panel and "cat" in panel
            continue
        expected = [s for s in (dog2, dog0) if s != sha]  # gold first, then the crowd's; never the one asked about
        assert shown == len(expected) and NO_EXAMPLES not in panel, (sha, panel)
        assert [panel.index(urls[s]) for s in expected] == sorted(panel.index(urls[s]) for s in expected)
        assert not any(urls[s] in panel for s in (dog1, hotdog, cat0, mouse0))


def annotation(ann_id: int, answer: str | dict = "yes", **fields) -> dict:
    """An annotation as a task listing holds it (the user inline, as some Label Studio versions list it)."""
    return {"id": ann_id, "updated_at": T0, "completed_by": {"id": 7, "email": "ann1@example.org"},
            "was_cancelled": False, "lead_time": 4.0,
            "result": [{"from_name": "answer", "to_name": "image", "type": "choices",
                        "value": {"choices": [answer] if isinstance(answer, str) else answer}}], **fields}


def test_malformed_annotations_are_skipped_and_counted_in_a_listing(base_run, tmp_path: Path, monkeypatch,
                                                                     caplog):
    """One unreadable annotation never stops the pull: each is skipped and counted (a stat, a warning with its
    id, and per task: each one asks Label Studio for one more answer), a vote it replaced is withdrawn, and a
    task curate did not ask about is ignored."""
    from curate.config import load_config
    from curate.runner import open_run

    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")  # never contacted: the listing is written here
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "never-sent")
    with open_run(load_config(make_pipeline(base_run, tmp_path, tmp_path)), progress=False) as ctx:
        ctx.catalog.create_missing_tasks("labelstudio", 2)
        first, second = ctx.catalog.unpublished_tasks("labelstudio")[:2]
        ctx.catalog.add_votes([{"task_id": first["id"], "annotator": "ann2@example.org", "answer": "yes",
                                "remote_id": "ls:3", "created_at": 0.0}])  # annotation 3 was readable once
        broken = [
            {k: v for k, v in annotation(2).items() if k != "updated_at"},  # KeyError: 'updated_at' before
            annotation(3, completed_by="ann2@example.org"),  # a string where a user id or a user belongs
            annotation(4) | {"result": [{"from_name": "answer", "type": "choices", "value": ["yes"]}]},  # a list
            annotation(5, {"yes": True}),  # choices a dict
            annotation(6) | {"result": [{"from_name": "answer", "type": "choices", "value": {"choices": "yes"}}]},
            annotation(8) | {"result": ["yes"]},  # a result item that is not an object
            annotation(9) | {"result": [{"from_name": "comment", "type": "choices", "value": {"choices": ["y"]}}]},
            annotation(10, "maybe"),  # a choice the question does not offer
            annotation(11, updated_at="yesterday"),
            "not an annotation",
        ]
        listing = [SimpleNamespace(id=101, overlap=2, annotations=[annotation(1, "yes"), *broken,
                                                                    annotation(12, "no", was_cancelled=True)]),
                   SimpleNamespace(id=102, overlap=2, annotations=[annotation(13, "No")]),
                   SimpleNamespace(id=999, overlap=2, annotations=[annotation(14)])]  # not asked about
        backend = LabelStudioCrowd(LabelStudioCrowdConfig(), ctx)
        with caplog.at_level("WARNING", logger="curate.crowd.labelstudio"):
            changes = backend._compare(listing, {101: [first], 102: [second]})
        backend.close()
    assert sorted((v.task_id, v.remote_id, v.answer, v.annotator) for v in changes.new) == sorted([
        (first["id"], "ls:1", "yes", "ann1@example.org"), (first["id"], "ls:12", "unsure", "ann1@example.org"),
        (second["id"], "ls:13", "no", "ann1@example.org")])
    assert changes.withdrawn == ["ls:3"] and changes.revisions == []
    assert changes.unreadable == {101: len(broken)}
    assert backend.stats["malformed"] == len(broken) and backend.stats["foreign_tasks"] == 1
    (warning,) = [r.getMessage() for r in caplog.records if "do not parse" in r.getMessage()]
    assert "ids 2, 3, 4, 5, 6, 8, 9, 10, 11, None" in warning and "updated_at" in warning


def post_annotation(url: str, token: str, task: int, result: object, user: int) -> int:
    """An annotation as the API takes it from anyone who may annotate (Label Studio keeps some results even
    where it answers 500); returns the HTTP status."""
    reply = requests.post(f"{url}/api/tasks/{task}/annotations/", json={"result": result, "completed_by": user},
                          headers={"Authorization": f"Token {token}"}, timeout=30)
    return reply.status_code


def test_malformed_annotations_posted_through_the_api_do_not_stop_collection(ls_env, annotators, base_run,
                                                                             tmp_path: Path, capsys):
    pipeline = make_pipeline(base_run, tmp_path, ls_env.root, votes=2)
    run_dir = tmp_path / "run"
    assert run(pipeline) == 0
    project = project_id(run_dir, ls_env.url)
    ann1, ann2, ann3 = (annotators[f"ann{i}@example.org"] for i in (1, 2, 3))
    answer = [{"from_name": "answer", "to_name": "image", "type": "choices"}]
    junk = [[answer[0] | {"value": ["yes"]}],  # a list where a value belongs (Label Studio: 500, kept)
            [answer[0] | {"value": {"choices": "yes"}}],  # choices a string
            [answer[0] | {"from_name": "comment", "value": {"choices": ["yes"]}}]]  # a control curate lacks
    with connect(ls_env.url, ls_env.token) as ls:
        remote = sorted(remote_tasks(ls, project), key=lambda t: t.id)
        with _open(run_dir) as catalog:
            is_true = make_truth(catalog.truth_table())
        truth = {t.id: "yes" if is_true(t.data["sha256"], t.data["wnid"]) else "no" for t in remote}
        for task in remote:
            ls.annotations.create(id=task.id, result=choice(truth[task.id]), completed_by=ann1)
        for task, result in zip(remote, junk, strict=False):
            post_annotation(ls_env.url, ls_env.token, task.id, result, ann3)
        for task in remote[len(junk):]:
            ls.annotations.create(id=task.id, result=choice(truth[task.id]), completed_by=ann2)
        kept = {t.id: len(t.annotations) for t in remote_tasks(ls, project)}
    assert all(kept[t.id] == 2 for t in remote)  # Label Studio holds every junk answer: those tasks look done

    capsys.readouterr()
    assert run(pipeline) == 0
    assert f"waiting for {len(junk)} votes" in capsys.readouterr().out  # the other votes are in
    log_text = RunLayout(run_dir).log_file.read_text()
    assert f"skipped {len(junk)} annotations that do not parse" in log_text
    with connect(ls_env.url, ls_env.token) as ls:
        for task in remote[: len(junk)]:  # served again, to someone else
            now = ls.tasks.get(id=str(task.id))
            assert now.overlap == 3 and not now.is_labeled
            ls.annotations.create(id=task.id, result=choice(truth[task.id]), completed_by=ann2)
    assert run(pipeline) == 0
    assert "waiting" not in capsys.readouterr().out
    votes = catalog_rows(run_dir, "SELECT v.annotator, v.answer, t.remote_id FROM votes v JOIN tasks t "
                                  "ON t.id = v.task_id WHERE v.superseded_by IS NULL")
    assert len(votes) == 2 * len(remote) and "ann3@example.org" not in {v["annotator"] for v in votes}
    assert all(v["answer"] == truth[int(v["remote_id"].split("/")[1])] for v in votes)


def test_review_questions_have_their_own_project_overlap_and_edits(ls_env, annotators, base_run, tmp_path: Path,
                                                                   capsys):
    """The review round's questions go to a project of their own whose overlap is review.votes_per_image (the
    first rounds' stays annotate.votes_per_image): an answered review task is done in Label Studio too. An
    answer changed there later changes the review's decision on the next run."""
    import yaml
    from conftest import CAT

    from curate.catalog.decisions import review_queue
    from curate.config import load_config
    from curate.runner import open_run

    pipeline = make_pipeline(base_run, tmp_path, ls_env.root, votes=2)
    data = yaml.safe_load(pipeline.read_text())
    data["review"] = {"votes_per_image": 1}
    write_pipeline(pipeline, data)
    run_dir = tmp_path / "run"
    assert run(pipeline) == 0
    annotate_project = project_id(run_dir, ls_env.url)
    two = {k: v for k, v in annotators.items() if k != "ann3@example.org"}
    with connect(ls_env.url, ls_env.token) as ls:
        answer_all(ls, annotate_project, two, run_dir)
    assert run(pipeline) == 0  # every task has its votes: labels
    with open_run(load_config(pipeline), progress=False) as ctx:  # the model doubts a dog: a cat, it says
        sha = next(r["sha256"] for r in ctx.catalog.final_labels() if r["wnid"] == DOG)
        ctx.catalog.replace_issues(("label", "outlier", "near_duplicate"), [
            {"sha256": sha, "wnid": DOG, "kind": "label", "score": 0.05, "suggested_wnid": CAT, "detail": None}])
        ctx.catalog.finish_stage(ctx.catalog.start_stage("noise", "fp-noise"), "ok",
                                 {"backbone": "mobilenet_v2:imagenet", "backbone_trained": True})
    review = ["run", str(pipeline), "--no-progress", "--only", "review"]
    capsys.readouterr()
    assert main(review) == 0
    assert "waiting for 2 review votes" in capsys.readouterr().out

    queue = review_queue("labelstudio")
    review_project = project_id(run_dir, ls_env.url, queue)
    ann3 = annotators["ann3@example.org"]
    with connect(ls_env.url, ls_env.token) as ls:
        assert review_project != annotate_project
        assert ls.projects.get(id=annotate_project).maximum_annotations == 2
        assert ls.projects.get(id=review_project).maximum_annotations == 1
        asked = {t.data["wnid"]: t for t in remote_tasks(ls, review_project)}
        assert set(asked) == {DOG, CAT} and {t.data["sha256"] for t in asked.values()} == {sha}
        made = {wnid: ls.annotations.create(id=task.id, result=choice("yes" if wnid == DOG else "no"),
                                            completed_by=ann3).id for wnid, task in asked.items()}
        assert all(ls.tasks.get(id=str(t.id)).is_labeled for t in asked.values())  # decided: served no more
    assert main(review) == 0
    assert "waiting" not in capsys.readouterr().out
    decision = catalog_rows(run_dir, f"SELECT * FROM decisions WHERE sha256 = '{sha}'")[0]
    assert decision["source"] == "review" and decision["action"] == "keep"

    with connect(ls_env.url, ls_env.token) as ls:  # the annotator changes their mind on the dog
        time.sleep(0.01)
        ls.annotations.update(id=made[DOG], result=choice("no"))
    assert main([*review, "--force"]) == 0
    decision = catalog_rows(run_dir, f"SELECT * FROM decisions WHERE sha256 = '{sha}'")[0]
    assert decision["action"] == "drop" and "review confirmed neither" in decision["reason"]
    (changed,) = catalog_rows(run_dir, f"SELECT * FROM votes WHERE remote_id LIKE 'ls:{made[DOG]}:%'")
    assert changed["answer"] == "no" and changed["superseded_by"] is None
    with connect(ls_env.url, ls_env.token) as ls:
        assert ls.projects.get(id=annotate_project).task_number == len(catalog_rows(
            run_dir, "SELECT id FROM tasks WHERE backend = 'labelstudio'"))  # no review task among the first
