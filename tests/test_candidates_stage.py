"""The candidates stage's download path: every per-item failure becomes a status and an error on its
candidate (the stage finishes, a resume has nothing left to retry), ``file://`` only from the local
source, and one slow host never holds back the others."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import DOG, write_pipeline
from http_fixtures import start_server
from PIL import Image

from curate.config import load_config
from curate.executors.local import LocalExecutor, LocalExecutorConfig, TaskError
from curate.reasons import reason_of
from curate.runner import open_run, run_stage
from curate.stages.candidates import CandidatesStage

MALFORMED = ["/chunked-truncated.png", "/duplicate-length.png", "/to-ftp", "/loop-a", "/bad-status-line.png",
             "/noai.png", "/html-as-image.jpg", "/huge.png", "/reset.png",
             "/status/404?from=stage", "/status/500?from=stage"]  # (the query keeps test_http's hit counts apart)
# the reason code each one ends with (curate status groups failures by it)
REASONS = {"/noai.png": "noai", "/html-as-image.jpg": "not_image", "/huge.png": "too_many_pixels",
           "/loop-a": "redirects", "/status/404?from=stage": "http_404", "/status/500?from=stage": "http_500",
           "/reset.png": "connection"}


def web_candidates(ctx, urls: list[str]) -> None:
    """Candidates as a web source would have stored them."""
    ctx.catalog.upsert_synsets([{"wnid": DOG, "name": "dog.n.01", "lemmas": "dog", "gloss": "a dog", "depth": 0,
                                 "hypernym_wnid": None, "lexname": "noun.animal"}])
    ctx.catalog.add_queries([{"wnid": DOG, "text": "dog", "lang": "en", "kind": "synonym"}])
    (query,) = ctx.catalog.pending_searches("web")
    rows = [{"wnid": DOG, "source": "web", "query_id": query["id"], "url": url, "page_url": None, "title": "dog",
             "license": None, "creator": None, "rank": i, "true_wnids": None} for i, url in enumerate(urls)]
    ctx.catalog.add_search_results(query["id"], "web", rows)


def loopback_pipeline(pipeline_file: Path) -> Path:
    data = yaml.safe_load(pipeline_file.read_text())
    data["candidates"]["download"].update(allow_private_networks=True, retries=0, deadline_s=5)
    return write_pipeline(pipeline_file, data)


def test_malformed_responses_and_foreign_file_urls_become_statuses(pipeline_file: Path, tmp_path: Path):
    httpd, port = start_server()
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not even an image")
    urls = [f"http://127.0.0.1:{port}{p}" for p in [*MALFORMED, "/ok.png"]] + [outside.as_uri(),
                                                                                "file:///etc/pass%00wd"]
    try:
        with open_run(load_config(loopback_pipeline(pipeline_file)), progress=False) as ctx:
            web_candidates(ctx, urls)
            result = run_stage(CandidatesStage(), ctx)
            rows = {r["url"]: r for r in ctx.catalog.all_candidates()}
            again = run_stage(CandidatesStage(), ctx)
    finally:
        httpd.shutdown()
    web = {u: rows[u] for u in urls}
    assert web[urls[len(MALFORMED)]]["status"] == "downloaded"
    failed = [u for u in urls if u != urls[len(MALFORMED)]]
    assert result.stats["failed"] + result.stats["rejected"] == len(failed)
    rejected = {f"http://127.0.0.1:{port}/huge.png"}
    assert all(web[u]["status"] == ("rejected" if u in rejected else "failed") and web[u]["error"] for u in failed), \
        {u: dict(web[u]) for u in failed}
    assert "only allowed for sources of local files" in web[outside.as_uri()]["error"]
    for path, reason in REASONS.items():
        assert reason_of(web[f"http://127.0.0.1:{port}{path}"]["error"]) == reason, (path, web[f"http://127.0.0.1:{port}{path}"]["error"])
    assert again.nothing_to_do


class SlowFirst:
    """A task whose item 0 takes ``slow_s``; picklable, so worker processes can run it."""

    def __init__(self, slow_s: float, each_s: float = 0.0):
        self.slow_s, self.each_s = slow_s, each_s

    def setup(self, shards: int) -> None:
        self.shards = shards

    def fetch(self, item: int) -> int:
        time.sleep(self.slow_s if item == 0 else self.each_s)
        return item

    def process(self, item: int) -> tuple[int, int]:
        return item * item, os.getpid()


class WaitsForLaterFetch:
    def __init__(self, workers: int, n: int):
        self.workers, self.n = workers, n
        self.started = [threading.Event() for _ in range(n)]

    def setup(self, shards: int) -> None:
        pass

    def fetch(self, item: int) -> int:
        self.started[item].set()
        return item

    def process(self, item: int) -> bool:
        later = item + self.workers
        return later >= self.n or self.started[later].wait(timeout=3)


class Buggy:
    def setup(self, shards: int) -> None:
        pass

    def fetch(self, item: int) -> int:
        return item

    def process(self, item: int) -> int:
        if item == 5:
            raise ZeroDivisionError("a bug in the task")
        return item


@pytest.mark.parametrize("processes", [0, 2])
def test_a_slow_item_does_not_hold_back_the_others(processes: int):
    executor = LocalExecutor(LocalExecutorConfig(processes=processes))
    order = [item for item, _ in executor.map_unordered(SlowFirst(2.0), range(60), workers=4)]
    assert order[-1] == 0 and sorted(order) == list(range(60))


def test_worker_processes_share_the_work():
    executor = LocalExecutor(LocalExecutorConfig(processes=2))
    results = dict(executor.map_unordered(SlowFirst(0.0, each_s=0.01), range(400), workers=4))
    assert {item: square for item, (square, _) in results.items()} == {i: i * i for i in range(400)}
    assert len({pid for _, pid in results.values()} - {os.getpid()}) == 2


@pytest.mark.parametrize("processes", [0, 2])
def test_an_exception_escaping_a_task_stops_the_iteration_with_its_traceback(processes: int):
    results = LocalExecutor(LocalExecutorConfig(processes=processes)).map_unordered(Buggy(), range(20), 2)
    with pytest.raises(TaskError, match=r"(?s)on 5.*ZeroDivisionError: a bug in the task"):
        list(results)


def test_a_fetch_slot_is_free_while_its_item_is_computed():
    """``workers`` = downloads in flight: computing an item does not hold its fetch slot. Each item's
    computation waits for the fetch of an item ``workers`` places later to start, which deadlocks (and
    times out) if fetch threads also compute."""
    task = WaitsForLaterFetch(workers=2, n=12)
    results = dict(LocalExecutor(LocalExecutorConfig(processes=0)).map_unordered(task, range(12), workers=2))
    assert results == {i: True for i in range(12)}


@pytest.mark.parametrize("processes", [0, 2])
def test_stopping_early_does_not_wait_for_stragglers(processes: int):
    started = time.monotonic()
    results = LocalExecutor(LocalExecutorConfig(processes=processes)).map_unordered(SlowFirst(8.0), range(10), 2)
    assert next(iter(results))[0] != 0
    results.close()
    assert time.monotonic() - started < 6


def test_the_executor_yields_none_while_no_result_comes():
    """``idle_s``: the consumer gets control back while every item in flight is still working."""
    executor = LocalExecutor(LocalExecutorConfig(processes=0))
    got = list(executor.map_unordered(SlowFirst(2.5), [0], workers=1, idle_s=0.5))
    assert got[-1][0] == 0 and 2 <= got.count(None) <= 6 and len(got) == got.count(None) + 1


class HangingHost(BaseHTTPRequestHandler):
    """/img/<n>.png: a distinct image; /hang/<n>.png: no answer until ``release`` is set, then a 404."""

    release = threading.Event()

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/hang/"):
            self.release.wait(120)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            return self.end_headers()
        out = io.BytesIO()
        Image.new("RGB", (64, 64), (int(self.path.split("/")[-1].removesuffix(".png")) * 30, 80, 80)).save(out, "PNG")
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(out.getvalue())))
        self.end_headers()
        self.wfile.write(out.getvalue())

    def log_message(self, *args):
        pass


def catalog_statuses(catalog: Path) -> dict[str, str]:
    try:
        with sqlite3.connect(catalog, timeout=1) as con:
            return dict(con.execute("SELECT url, status FROM candidates").fetchall())
    except sqlite3.Error:
        return {}


def test_finished_downloads_reach_the_catalog_while_others_hang(pipeline_file: Path, tmp_path: Path):
    """Six images download at once, two downloads hang (until released): the six are in the catalog, as
    another process reads it, while the two still hang."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), HangingHost)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    good, hung = [f"{base}/img/{i}.png" for i in range(6)], [f"{base}/hang/{i}.png" for i in range(2)]
    data = yaml.safe_load(loopback_pipeline(pipeline_file).read_text())
    data["candidates"]["download"].update(workers=8, timeout_s=120, deadline_s=120)
    pipeline = write_pipeline(pipeline_file, data)
    with open_run(load_config(pipeline), progress=False) as ctx:
        web_candidates(ctx, hung + good)
    command = [sys.executable, "-m", "curate", "run", str(pipeline), "--no-progress", "--only", "candidates",
               "--set", "run.executor={type: local, processes: 2}"]
    catalog = tmp_path / "run" / "catalog.sqlite"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # generous: worker processes start on a busy machine
        while proc.poll() is None and time.monotonic() < deadline:
            seen = catalog_statuses(catalog)
            if [seen.get(url) for url in good] == ["downloaded"] * 6:
                break
            time.sleep(0.1)
    finally:
        HangingHost.release.set()
        ended = proc.wait(timeout=60)
        httpd.shutdown()
    assert {url: seen.get(url) for url in good + hung} == {**dict.fromkeys(good, "downloaded"),
                                                           **dict.fromkeys(hung, "pending")}
    assert ended == 0 and {catalog_statuses(catalog)[url] for url in hung} == {"failed"}


def test_pending_downloads_take_the_hosts_in_turn():
    """A host whose limits make its downloads queue must not hold every fetch thread while the other hosts'
    candidates wait behind a long run of its URLs: the work is handed out one host at a time in turn."""
    from curate.stages.candidates import interleave_hosts

    rows = [{"id": i, "url": url} for i, url in enumerate([
        "https://slow.example/1.jpg", "https://slow.example/2.jpg", "https://slow.example/3.jpg",
        "https://slow.example/4.jpg", "https://b.example/1.jpg", "http://[bad/x.jpg", "file:///corpus/a.jpg",
        "https://b.example/2.jpg"])]
    order = [row["id"] for row in interleave_hosts(rows)]
    # hosts by first appearance (slow.example, b.example, none: a malformed URL and a file), each in its order
    assert order == [0, 4, 5, 1, 7, 6, 2, 3]
