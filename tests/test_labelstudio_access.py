"""What annotators can and cannot open, against a real Label Studio served for a run as ``curate labelstudio serve``
serves it (behind the annotators' gate, its document root the run's ``served/`` folder), driven in headless Chromium.

Two annotators sign up through the invite link in their own browser contexts. Each may work in the run's labeling
stream; neither may open the data manager's table, settings, storages, exports, members or tokens, see the other's
answers or the model's predictions, answer in the other's name, or read the run's secrets through local-files
storage. The API probes go through the browser context's own session (cookie and CSRF token), as a person at the
keyboard would send them.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import pipeline_dict, write_pipeline
from test_labelstudio import build_small_corpus, free_port

from curate.cli import main
from curate.labelstudio import AlreadyServing, LabelStudioError
from curate.labelstudio.client import connect, invite_link
from curate.labelstudio.server import find_executable, start_server
from curate.layout import RunLayout

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TASK_ID_JS = "() => document.querySelector('.lsf-current-task__task-id')?.firstChild?.textContent?.trim()"
LISTED = ("ann-a@example.org", "ann-b@example.org", "ann-c@example.org")


def _require(what: str, missing: bool) -> None:
    if missing:
        if os.environ.get("CURATE_REQUIRE_LABELSTUDIO") == "1":
            pytest.fail(f"CURATE_REQUIRE_LABELSTUDIO=1 but {what}")
        pytest.skip(what)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A run whose tasks wait in its own Label Studio, started as `serve` starts it, with two listed annotators."""
    try:
        find_executable()
    except LabelStudioError as exc:
        _require(f"Label Studio is not installed (run `make labelstudio`): {exc}", True)
    tmp = tmp_path_factory.mktemp("served")
    data = pipeline_dict(build_small_corpus(tmp / "corpus"), tmp / "run")
    data["annotate"] = {"backend": {"type": "labelstudio"}, "votes_per_image": 2, "aggregate": "majority"}
    pipeline = write_pipeline(tmp / "pipeline.yaml", data)
    server = start_server(tmp / "run", "127.0.0.1", free_port(), annotators=LISTED)
    try:
        assert main(["run", str(pipeline), "--no-progress", "--only", "synsets", "--only", "candidates",
                     "--only", "annotate"]) == 0
        with connect(server.url, server.token) as ls:
            invite = invite_link(ls, server.url)
        project = json.loads(RunLayout(tmp / "run").labelstudio_projects.read_text())[server.url]["project"]
        yield {"server": server, "run_dir": tmp / "run", "pipeline": pipeline, "invite": invite, "project": project}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    _require("no chromium on PATH (apt-get install chromium)", CHROMIUM is None)
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Person:
    """One annotator's browser context: pages and API calls share its session."""

    def __init__(self, browser, served: dict, email: str):
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.url = served["server"].url
        self.email = email
        page = self.page
        page.goto(served["invite"])
        page.fill("#email", email)
        page.fill("#password", "annotator-pass-1")
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/user/signup" not in url, timeout=30_000)

    def landed(self, path: str) -> str:
        """Open ``path``; where the person ends up (path and query)."""
        self.page.goto(self.url + path)
        return self.page.url.removeprefix(self.url)

    def api(self, method: str, path: str, data: object = None):
        csrf = next((c["value"] for c in self.context.cookies() if c["name"] == "csrftoken"), "")
        headers = {"X-CSRFToken": csrf, "Referer": self.url + "/"}
        return self.context.request.fetch(self.url + path, method=method, headers=headers,
                                          data=json.dumps(data) if data is not None else None)

    def answer_next(self, key: str) -> str:
        """Answer the task on screen with a key and Ctrl+Enter; returns its Label Studio task id."""
        page = self.page
        page.locator("text=/^Is this an? /").first.wait_for(timeout=60_000)
        page.wait_for_function("() => [...document.images].some(i => i.src.startsWith('blob:') && i.complete "
                               "&& i.naturalWidth > 0)", timeout=30_000)
        task_id = page.evaluate(TASK_ID_JS)
        if key == "y" and os.environ.get("CURATE_SCREENSHOT"):  # the README's picture of the task screen
            page.screenshot(path=os.environ["CURATE_SCREENSHOT"])
        page.keyboard.press(key)
        with page.expect_response(lambda r: "/annotations" in r.url and r.request.method == "POST") as posted:
            page.keyboard.press("Control+Enter")
        assert posted.value.status == 201
        page.wait_for_function(f"(id) => ({TASK_ID_JS})() !== id", arg=task_id, timeout=30_000)
        return task_id

    def close(self) -> None:
        self.context.close()


def test_annotators_see_their_task_and_nothing_else(served, browser):
    """Item by item: the stream works; pages lead back to it; the API refuses what is not the stream's; the other
    annotator's answer, the model's prediction and the side panels are not on screen."""
    project, url = served["project"], served["server"].url
    a, b = Person(browser, served, LISTED[0]), Person(browser, served, LISTED[1])
    stream = f"/projects/{project}/data/?labeling=1"
    try:
        assert a.page.url.removeprefix(url).startswith(stream)  # sign-up lands on the run's questions
        # a prediction on the task A will get first: the admin (curate) sees it, annotators never do
        with connect(url, served["server"].token) as ls:
            assert ls.projects.get(id=project).show_collab_predictions is False
            assert str(served["run_dir"]) not in (ls.projects.get(id=project).description or "")
        a.page.locator("text=/^Is this an? /").first.wait_for(timeout=60_000)
        first = int(a.page.evaluate(TASK_ID_JS))
        with connect(url, served["server"].token) as ls:
            ls.predictions.create(task=first, score=0.99, model_version="curate", result=[
                {"from_name": "answer", "to_name": "image", "type": "choices", "value": {"choices": ["yes"]}}])
        a.page.reload()
        a.page.locator("text=/^Is this an? /").first.wait_for(timeout=60_000)
        assert int(a.page.evaluate(TASK_ID_JS)) == first
        assert a.page.locator("input[type=radio]:checked").count() == 0  # nothing pre-filled
        for panel in (".lsf-sidepanels__wrapper_align_right", ".lsf-tabs-panel_alignment_right",
                      ".main-menu-trigger", "text=Regions", "text=Relations", "text=History"):
            assert not a.page.locator(panel).first.is_visible(), panel
        assert "Examples of this class" not in a.page.content()  # nothing accepted yet: no examples shown
        assert a.answer_next("y") == str(first)

        # B: the same task is served (overlap 2) without A's answer; A's answer cannot be read, edited or deleted
        [mine] = a.api("GET", f"/api/tasks/{first}/").json()["annotations"]
        author = mine["completed_by"]["id"] if isinstance(mine["completed_by"], dict) else mine["completed_by"]
        assert author == a.api("GET", "/api/current-user/whoami").json()["id"]
        mine = mine["id"]
        seen_by_b = b.api("GET", f"/api/tasks/{first}/").json()
        assert seen_by_b["annotations"] == [] and seen_by_b["predictions"] == []
        assert b.api("GET", f"/api/tasks/{first}/annotations/").json() == []
        assert len(a.api("GET", f"/api/tasks/{first}/annotations/").json()) == 1
        listing = b.api("GET", f"/api/tasks?page=1&page_size=30&project={project}").json()
        assert all(t.get("annotations", []) == [] and not t.get("annotations_results") for t in listing["tasks"])
        assert b.api("PATCH", f"/api/annotations/{mine}/", {"result": []}).status == 403
        assert b.api("DELETE", f"/api/annotations/{mine}/").status == 403
        assert b.api("GET", f"/api/annotations/{mine}/").status == 403
        b_id = b.api("GET", "/api/current-user/whoami").json()["id"]
        forged = {"result": [], "completed_by": a.api("GET", "/api/current-user/whoami").json()["id"]}
        assert b.api("POST", f"/api/tasks/{first}/annotations/", forged).status == 403  # a vote in A's name
        assert [u["id"] for u in b.api("GET", "/api/users").json()] == [b_id]

        # pages: everything leads back to the stream
        for path in ("/", "/projects/", f"/projects/{project}/data", f"/projects/{project}/settings/",
                     f"/projects/{project}/data/export", "/organization/", "/user/account/", "/admin/",
                     f"/projects/{project + 1}/data/?labeling=1"):
            assert b.landed(path).startswith(stream), path
        # the API: nothing beyond the stream's calls
        refused = [("GET", "/api/projects/"), ("GET", f"/api/projects/{project}/export?exportType=JSON"),
                   ("PATCH", f"/api/projects/{project}/", {"title": "mine now"}),
                   ("GET", f"/api/storages/localfiles/?project={project}"), ("GET", "/api/current-user/token"),
                   ("POST", "/api/current-user/reset-token", {}), ("GET", "/api/invite"),
                   ("GET", "/api/organizations/"), ("POST", f"/api/projects/{project}/import", [{"image": "x"}]),
                   ("POST", f"/api/dm/actions?id=delete_tasks&project={project}", {}),
                   ("GET", f"/api/tasks?page=1&page_size=30&project={project + 1}"),
                   ("POST", "/api/projects/", {"title": "another"})]
        for method, path, *body in refused:
            assert b.api(method, path, *body).status in (401, 403), (method, path)
        # B is served the task A answered (overlap 2) with nothing on it, and answers it and the next
        b.page.goto(url + stream)
        b.page.locator("text=/^Is this an? /").first.wait_for(timeout=60_000)
        assert int(b.page.evaluate(TASK_ID_JS)) == first
        assert b.page.locator("input[type=radio]:checked").count() == 0
        assert b.answer_next("n") == str(first)
        b.answer_next("y")
    finally:
        a.close()
        b.close()

    # curate collects exactly their answers, each under its own email; the console shows curate's lines only
    from curate.cli import main as curate

    assert curate(["run", str(served["pipeline"]), "--no-progress", "--only", "annotate"]) == 0
    import sqlite3

    con = sqlite3.connect(served["run_dir"] / "catalog.sqlite")
    votes = con.execute("SELECT annotator, COUNT(*), MIN(lead_time_s) > 0 AND MAX(lead_time_s) < 120 FROM votes "
                        "GROUP BY annotator").fetchall()
    con.close()
    assert {who: (n, timed) for who, n, timed in votes} == {LISTED[0]: (1, 1), LISTED[1]: (2, 1)}


def test_secrets_stay_out_of_every_served_tree(served, browser):
    """Item 1: the run's secrets are unreachable. The gate refuses storages to annotators, and Label Studio itself
    (asked directly, as its admin) refuses a storage outside ``served/``, which holds only the image store."""
    layout = RunLayout(served["run_dir"])
    served_root = layout.served
    assert sorted(p.name for p in served_root.iterdir()) == ["images"] and layout.served_images.is_symlink()
    person = Person(browser, served, LISTED[2])
    try:
        for folder in (layout.labelstudio, layout.logs, layout.root):
            attach = {"project": served["project"], "path": str(folder.resolve()), "use_blob_urls": False}
            assert person.api("POST", "/api/storages/localfiles/", attach).status == 403
        for sneaky in ("../labelstudio/credentials.json", "images/../../labelstudio/credentials.json",
                       "../logs/curate.log", "../catalog.sqlite"):
            response = person.api("GET", f"/data/local-files/?d={sneaky}")
            assert response.status >= 400 and b"token" not in response.body(), sneaky
        image = next(p for p in layout.images.rglob("*.jpg"))
        rel = image.relative_to(layout.root).as_posix()
        assert person.api("GET", f"/data/local-files/?d={rel}").status == 200  # the images themselves are served
    finally:
        person.close()
    import requests

    internal = served["server"].internal_url
    headers = {"Authorization": f"Token {served['server'].token}"}
    for folder in (layout.labelstudio, layout.logs):
        answer = requests.post(f"{internal}/api/storages/localfiles/", headers=headers, timeout=30, json={
            "project": served["project"], "path": str(folder.resolve()), "use_blob_urls": False})
        assert answer.status_code == 400 and "LOCAL_FILES_DOCUMENT_ROOT" in answer.text


def test_only_listed_annotators_may_sign_up(served, browser):
    """With ``--annotator`` emails, the shared invite link admits those people only."""
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(served["invite"])
        page.fill("#email", "stranger@example.org")
        page.fill("#password", "annotator-pass-1")
        with page.expect_response(lambda r: "/user/signup" in r.url and r.request.method == "POST") as answer:
            page.click("button[type=submit]")
        assert answer.value.status == 403
        assert "not on the run's list of annotators" in page.content()
    finally:
        context.close()
    with connect(served["server"].url, served["server"].token) as ls:
        assert "stranger@example.org" not in {u.email for u in ls.users.list()}


def test_a_second_serve_on_the_same_run_says_where_the_first_is(served, capsys):
    """Item 7: one server per run. A second start is refused (exit 2) naming the first's URL; the first keeps its
    ``server.json`` and ``curate run`` keeps using it."""
    run_dir, url = served["run_dir"], served["server"].url
    with pytest.raises(AlreadyServing, match=f"already running at {url}"):
        start_server(run_dir, "127.0.0.1", free_port())
    assert main(["labelstudio", "serve", str(run_dir), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert f"already running at {url}" in err and "Traceback" not in err
    assert json.loads(RunLayout(run_dir).labelstudio_server.read_text())["url"] == url
    # a project as an earlier curate left it: its storage on the run directory's images, predictions shown
    layout = RunLayout(run_dir)
    state = json.loads(layout.labelstudio_projects.read_text())
    state[url].pop("storage_path")
    layout.labelstudio_projects.write_text(json.dumps(state))
    with connect(url, served["server"].token) as ls:
        ls.projects.update(id=served["project"], show_collab_predictions=True)
    assert main(["run", str(served["pipeline"]), "--no-progress", "--only", "annotate", "--force"]) == 0
    with connect(url, served["server"].token) as ls:
        assert ls.projects.get(id=served["project"]).show_collab_predictions is False
        paths = {s.path for s in ls.import_storage.local.list(project=served["project"])}
    assert str(layout.served.resolve() / "images") in paths
    assert json.loads(layout.labelstudio_projects.read_text())[url]["storage_path"] in paths
    out, err = capsys.readouterr()
    assert "HTTP Request" not in out + err  # the SDK's request lines stay in the log file
