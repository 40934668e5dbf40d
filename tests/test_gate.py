"""The annotators' gate's rules and filters, without a server (tests/test_labelstudio_access.py drives them through a
real Label Studio in Chromium)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from curate.labelstudio.access import (
    Rules,
    User,
    _speaks_for_another,
    only_self,
    own_items,
    private_task,
    run_projects,
)
from curate.labelstudio.server import serve_banner
from curate.layout import RunLayout

ANN = User(7, "ann@example.org")


def rules(projects=frozenset({3}), owners=None, tasks=None) -> Rules:
    owners = owners or {}
    tasks = tasks or {11: 3, 12: 4}
    return Rules(lambda: set(projects), lambda kind, i: owners.get((kind, i)), tasks.get)


def test_the_stream_and_its_calls_pass_for_the_runs_project_only():
    r = rules()
    assert r.decide(ANN, "GET", "/projects/3/data/", {"labeling": ["1"]}).action == "pass"
    assert r.decide(ANN, "GET", "/projects/4/data/", {"labeling": ["1"]}).location == "/projects/3/data/?labeling=1"
    assert r.decide(ANN, "POST", "/api/dm/actions", {"id": ["next_task"], "project": ["3"]}).filter is private_task
    assert r.decide(ANN, "POST", "/api/dm/actions", {"id": ["delete_tasks"], "project": ["3"]}).status == 403
    assert r.decide(ANN, "POST", "/api/tasks/11/annotations/", {}).action == "pass"
    assert r.decide(ANN, "POST", "/api/tasks/12/annotations/", {}).status == 403  # another project's task
    assert r.decide(ANN, "GET", "/api/tasks", {"project": ["4"]}).status == 403


def test_pages_lead_back_to_the_stream_and_other_api_calls_are_refused():
    r = rules()
    for path in ("/", "/projects/", "/organization/", "/user/account/", "/projects/3/settings/", "/admin/"):
        decision = r.decide(ANN, "GET", path, {})
        assert (decision.action, decision.location) == ("redirect", "/projects/3/data/?labeling=1"), path
    for method, path in (("GET", "/api/projects/"), ("GET", "/api/storages/localfiles/"),
                         ("POST", "/api/storages/localfiles/"), ("GET", "/api/current-user/token"),
                         ("GET", "/api/invite"), ("PATCH", "/api/projects/3/"), ("GET", "/api/projects/3/export")):
        assert r.decide(ANN, method, path, {}).status == 403, (method, path)
    assert rules(projects=frozenset()).stream() == "/user/no-tasks"


def test_answers_drafts_and_views_belong_to_their_author():
    r = rules(owners={("annotation", 5): 7, ("annotation", 6): 8, ("dm/view", 2): 8})
    assert r.decide(ANN, "PATCH", "/api/annotations/5/", {}).action == "pass"
    assert r.decide(ANN, "PATCH", "/api/annotations/6/", {}).status == 403
    assert r.decide(ANN, "DELETE", "/api/annotations/6/", {}).status == 403
    assert r.decide(ANN, "PATCH", "/api/dm/views/2/", {}).status == 403
    forged = json.dumps({"result": [], "completed_by": 8}).encode()
    assert r.decide(ANN, "POST", "/api/tasks/11/annotations/", {}, forged).status == 403
    assert r.decide(ANN, "POST", "/api/tasks/11/annotations/", {}, b'{"result": [], "completed_by": 7}').action \
        == "pass"
    assert _speaks_for_another(b'{"completed_by": ', 7)  # unreadable and naming an author: refused
    assert not _speaks_for_another(b'{"result": []}', 7)


def test_a_task_shows_only_the_persons_own_answers_and_no_predictions():
    task = {"id": 1, "annotations": [{"id": 1, "completed_by": 7}, {"id": 2, "completed_by": {"id": 8}}],
            "drafts": [{"id": 3, "user": 8}, {"id": 4, "user": 7}], "predictions": [{"result": ["yes"]}],
            "annotators": [7, 8], "annotations_results": "yes, no", "total_annotations": 2}
    seen = private_task({"tasks": [task], "total": 1}, 7)["tasks"][0]
    assert [a["id"] for a in seen["annotations"]] == [1] and [d["id"] for d in seen["drafts"]] == [4]
    assert seen["predictions"] == [] and seen["annotators"] == [] and seen["annotations_results"] == ""
    assert only_self([{"id": 7}, {"id": 8}], 7) == [{"id": 7}]
    listed = [{"id": 1, "completed_by": 7}, {"id": 2, "completed_by": {"id": 8}}, {"id": 3, "user": 8}]
    assert own_items(listed, 7) == [listed[0]] and own_items({"results": listed}, 8)["results"] == listed[1:]
    assert rules().decide(ANN, "GET", "/api/tasks/11/annotations/", {}).filter is own_items
    assert only_self({"results": [{"id": 7}, {"id": 8}], "count": 2}, 8) == {"results": [{"id": 8}], "count": 1}


def test_the_runs_projects_include_every_queue():
    state = {"http://h:1": {"project": 3, "queues": {"review": {"project": 9}}}, "http://other:2": {"project": 4}}
    assert run_projects(state, "http://h:1") == {3, 9}


def test_serve_says_plainly_that_the_invite_link_is_shared(tmp_path: Path):
    layout = RunLayout(tmp_path / "run")
    server = SimpleNamespace(layout=layout, url="http://127.0.0.1:8080",
                             credentials=SimpleNamespace(username="admin@localhost"))
    anyone = "\n".join(serve_banner(server, "http://127.0.0.1:8080/user/signup/?token=T", []))
    assert anyone.count("/user/signup/?token=T") == 1
    assert "one link, shared by everyone you send it to: anyone who has the link can sign up" in anyone
    listed = "\n".join(serve_banner(server, "http://127.0.0.1:8080/user/signup/?token=T", ["a@x.org", "b@x.org"]))
    assert listed.count("/user/signup/?token=T") == 1 and "only a@x.org, b@x.org may sign up" in listed
    assert str(tmp_path) not in anyone.split("admin:")[0]
