"""The commons source against a loopback server replaying the MediaWiki Action API of Wikimedia Commons:
continuation, ranking, field mapping, licence filter, MediaWiki errors (maxlag retried), HTTP failures,
and a run of the real candidates stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from api_replay import (  # noqa: F401  (server, waits: fixtures)
    ReplayServer,
    image_route,
    loopback_only,
    run_collection,
    sequence,
    server,
    stored_candidates,
    unused_port,
    waits,
)
from conftest import CAT, DOG
from pydantic import ValidationError

import curate.sources.commons  # noqa: F401  (registers 'commons' before the pipeline model is built)
from curate.sources import web
from curate.sources.base import Query, SourceError
from curate.sources.commons import CommonsSource, CommonsSourceConfig, file_title, plain_text

UA = "curate-test (mailto:x@example.org)"
API = "/w/api.php"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_only(monkeypatch)
    monkeypatch.setattr(web.WebSource, "backoff_s", 0.01)


def source(server: ReplayServer, **config: Any) -> CommonsSource:
    return CommonsSource(CommonsSourceConfig(base_url=server.url + API, retries=2, **config), user_agent=UA)


def meta(value: Any) -> dict[str, Any]:
    return {"value": value, "source": "commons-desc-page", "hidden": ""}


def file_page(i: int, base: str = "https://upload.example", **info: Any) -> dict[str, Any]:
    """One search result page (formatversion=2) as Commons sends it; ``info`` overrides imageinfo fields."""
    name = f"Red_fox_{i}.jpg"
    image = {"size": 123456, "width": 1600, "height": 1200, "thumburl": f"{base}/thumb/{i}/640px-{name}",
             "thumbwidth": 640, "thumbheight": 480, "url": f"{base}/{name}",
             "descriptionurl": f"https://commons.wikimedia.org/wiki/File:{name}",
             "descriptionshorturl": f"https://commons.wikimedia.org/w/index.php?curid={1000 + i}",
             "mime": "image/jpeg",
             "extmetadata": {"LicenseShortName": meta("CC BY-SA 4.0"),
                             "Artist": meta('<a href="//commons.wikimedia.org/wiki/User:Ann">Ann &amp; Bob</a>'),
                             "ImageDescription": meta(f"<p>A red fox <b>in the snow</b>, number {i}.</p>")},
             **info}
    return {"pageid": 1000 + i, "ns": 6, "title": f"File:Red fox {i}.jpg", "index": i + 1,
            "imagerepository": "local", "imageinfo": [image]}


def batch(pages: list[dict[str, Any]], cont: dict[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {"batchcomplete": True, "query": {"pages": pages}}
    if cont:
        body["continue"] = cont
    return 200, {}, body


def searched(total: int, base: str = "https://upload.example") -> Any:
    """A search over ``total`` files paged by gsroffset/gsrlimit, each batch's pages in reverse rank order."""
    def route(query: dict[str, str]) -> Any:
        offset, limit = int(query.get("gsroffset", 0)), int(query["gsrlimit"])
        pages = [file_page(i, base) for i in range(offset, min(offset + limit, total))]
        more = {"gsroffset": offset + limit, "continue": "gsroffset||"} if offset + limit < total else None
        return batch(pages[::-1], more)
    return route


def numbers(hits: list) -> list[int]:
    return [int(h.url.rsplit("/", 2)[1]) for h in hits]


# --------------------------------------------------------------------------- paging and request


def test_three_batches_in_rank_order_with_the_query_sent(server: ReplayServer):
    server.routes[API] = searched(120)
    hits = source(server, thumb_width_px=320).search(Query("red fox"), 500)
    assert numbers(hits) == list(range(120))
    sent = [r.query for r in server.requests_to(API)]
    assert [(q.get("gsroffset"), q["gsrlimit"]) for q in sent] == [(None, "50"), ("50", "50"), ("100", "50")]
    assert sent[1]["continue"] == "gsroffset||"
    expected = {"action": "query", "format": "json", "formatversion": "2", "maxlag": "5", "generator": "search",
                "gsrsearch": "red fox filetype:bitmap", "gsrnamespace": "6", "prop": "imageinfo",
                "iiprop": "url|extmetadata|mime|size", "iiurlwidth": "320"}
    assert all(q.items() >= expected.items() for q in sent)


def test_a_limit_that_stops_mid_batch(server: ReplayServer):
    server.routes[API] = searched(120)
    assert numbers(source(server).search(Query("fox"), 60)) == list(range(60))
    # one batch size for the whole search (WebSource pages with min(page_size, limit)); the surplus is trimmed
    assert [(r.query.get("gsroffset"), r.query["gsrlimit"]) for r in server.requests_to(API)] == [
        (None, "50"), ("50", "50")]


def test_an_empty_answer_ends_the_search(server: ReplayServer):
    server.routes[API] = lambda q: (200, {}, {"batchcomplete": True})
    assert source(server).search(Query("qwxzzy"), 50) == []
    assert len(server.requests_to(API)) == 1


def test_no_continue_block_ends_the_search(server: ReplayServer):
    server.routes[API] = searched(30)
    assert len(source(server).search(Query("fox"), 100)) == 30
    assert len(server.requests_to(API)) == 1


def test_the_continue_block_is_sent_back_verbatim(server: ReplayServer):
    """When the API thumbnails only part of a batch it continues imageinfo (iicontinue), not the search."""
    half = [file_page(i) for i in range(2)] + [{"pageid": 7, "ns": 6, "title": "File:Later.jpg", "index": 3}]
    cont = {"iicontinue": "Later.jpg|20240101000000", "gsroffset": 3, "continue": "gsroffset||"}
    rest = [{"pageid": 7, "ns": 6, "title": "File:Later.jpg", "index": 3, "imageinfo": file_page(2)["imageinfo"]}]
    server.routes[API] = sequence(batch(half, cont), batch(rest))
    assert numbers(source(server).search(Query("fox"), 10)) == [0, 1, 2]
    assert server.requests_to(API)[1].query.items() >= {k: str(v) for k, v in cont.items()}.items()


# --------------------------------------------------------------------------- fields


def test_a_hit_carries_thumbnail_licence_creator_page_and_title(server: ReplayServer):
    server.routes[API] = searched(1)
    (hit,) = source(server).search(Query("fox"), 5)
    assert hit.url == "https://upload.example/thumb/0/640px-Red_fox_0.jpg"
    assert hit.page_url == "https://commons.wikimedia.org/wiki/File:Red_fox_0.jpg"
    assert (hit.license, hit.creator) == ("CC BY-SA 4.0", "Ann & Bob")
    assert hit.title == "Red fox 0 | A red fox in the snow, number 0."


def test_missing_fields_become_none_and_non_images_are_skipped(server: ReplayServer):
    no_thumb = file_page(0)
    del no_thumb["imageinfo"][0]["thumburl"]
    pages = [
        no_thumb,
        file_page(1, extmetadata={}),
        {**file_page(2), "imageinfo": [{k: v for k, v in file_page(2)["imageinfo"][0].items() if k != "extmetadata"}]},
        file_page(3, extmetadata={"LicenseShortName": meta(None), "Artist": meta("  ")}),
        file_page(4, mime="application/pdf"), file_page(5, mime="video/webm"),
        file_page(6, url=None, thumburl=None), {"pageid": 8, "ns": 6, "title": "File:Gone.jpg", "index": 9},
        {**file_page(9), "imageinfo": []},
    ]
    server.routes[API] = lambda q: batch(pages)
    hits = source(server).search(Query("fox"), 50)
    assert [h.url for h in hits] == ["https://upload.example/Red_fox_0.jpg"] + [
        f"https://upload.example/thumb/{i}/640px-Red_fox_{i}.jpg" for i in (1, 2, 3)]
    assert hits[0].license == "CC BY-SA 4.0"
    bare = [(h.license, h.creator, h.title) for h in hits[1:]]
    assert bare == [(None, None, f"Red fox {i}") for i in (1, 2, 3)]


@pytest.mark.parametrize("raw, text", [
    ('<a href="//x">Ann</a> &amp; <span class="fn">Bob&nbsp;Smith</span>', "Ann & Bob Smith"),
    ("<div>Line one</div><div>line two</div>", "Line one line two"),
    ("Plain &lt;b&gt; text", "Plain <b> text"),
    ("  <br/> ", None),
])
def test_html_becomes_plain_text(raw: str, text: str | None):
    assert plain_text(raw) == text


def test_titles_drop_the_namespace_and_extension_and_keep_descriptions_short():
    assert file_title("File:Vulpes_vulpes in snow.JPEG", None) == "Vulpes vulpes in snow"
    assert file_title(None, "A fox") == "A fox"
    title = file_title("File:Fox.png", "word " * 100)
    assert title.startswith("Fox | word word") and title.endswith("…") and len(title) < 180


# --------------------------------------------------------------------------- licence filter


def test_the_licence_filter_keeps_case_insensitive_prefixes(server: ReplayServer):
    licences = ["CC BY-SA 4.0", "Public domain", "CC BY 2.0", None, "CC-BY-SA-3.0-de", "cc by-sa 3.0"]
    pages = [file_page(i, extmetadata={"LicenseShortName": meta(lic)}) for i, lic in enumerate(licences)]
    server.routes[API] = lambda q: batch(pages)
    hits = source(server, licenses=["cc by-sa", "Public Domain"]).search(Query("fox"), 50)
    assert [h.license for h in hits] == ["CC BY-SA 4.0", "Public domain", "cc by-sa 3.0"]


def test_a_batch_the_filter_empties_does_not_end_the_search(server: ReplayServer):
    unwanted = [file_page(i, extmetadata={"LicenseShortName": meta("CC BY-NC 2.0")}) for i in range(3)]
    server.routes[API] = sequence(batch(unwanted, {"gsroffset": 3, "continue": "gsroffset||"}),
                                  batch([file_page(3)]))
    assert numbers(source(server, licenses=["CC BY-SA"]).search(Query("fox"), 10)) == [3]


# --------------------------------------------------------------------------- headers and failures


def test_the_user_agent_is_sent(server: ReplayServer):
    server.routes[API] = searched(1)
    source(server).search(Query("fox"), 5)
    assert server.requests_to(API)[0].headers["User-Agent"] == UA


@pytest.mark.parametrize("status", [401, 403])
def test_refusals_are_source_errors(server: ReplayServer, status: int):
    server.routes[API] = lambda q: (status, {}, "You are blocked")
    with pytest.raises(SourceError, match=rf"commons: refused the request \(HTTP {status}\)"):
        source(server).search(Query("fox"), 5)


def test_rate_limited_then_answered_waits_as_told(server: ReplayServer, waits: list[float]):
    server.routes[API] = sequence((429, {"Retry-After": "3"}, "slow down"), batch([file_page(0)]))
    assert numbers(source(server).search(Query("fox"), 5)) == [0]
    assert waits == [3.0]


def test_rate_limited_forever_says_so(server: ReplayServer, waits: list[float]):
    server.routes[API] = lambda q: (429, {}, "slow down")
    with pytest.raises(SourceError, match=r"rate limit or quota reached \(HTTP 429\)"):
        source(server).search(Query("fox"), 5)


def test_a_server_error_then_an_answer_succeeds(server: ReplayServer):
    server.routes[API] = sequence((500, {}, "oops"), batch([file_page(0)]))
    assert numbers(source(server).search(Query("fox"), 5)) == [0]


def test_invalid_json_is_a_source_error(server: ReplayServer):
    server.routes[API] = lambda q: (200, {"Content-Type": "application/json"}, b"<html>not json</html>")
    with pytest.raises(SourceError, match="not JSON"):
        source(server).search(Query("fox"), 5)


def test_an_unreachable_service_is_a_source_error():
    config = CommonsSourceConfig(base_url=f"http://127.0.0.1:{unused_port()}/w/api.php", retries=1)
    with pytest.raises(SourceError, match="unreachable"):
        CommonsSource(config, user_agent=UA).search(Query("fox"), 5)


def test_a_mediawiki_error_names_its_code_and_info(server: ReplayServer):
    error = {"code": "badvalue", "info": 'Unrecognized value for parameter "gsrnamespace": 6x.', "docref": "..."}
    server.routes[API] = lambda q: (200, {"MediaWiki-API-Error": "badvalue"}, {"error": error, "servedby": "mw1"})
    with pytest.raises(SourceError, match=r"commons: the API answered error 'badvalue': Unrecognized value"):
        source(server).search(Query("fox"), 5)
    assert len(server.requests_to(API)) == 1


def test_maxlag_is_retried_after_the_wait_asked(server: ReplayServer, waits: list[float]):
    lag = {"error": {"code": "maxlag", "info": "Waiting for db1: 6 seconds lagged.", "host": "db1", "lag": 6}}
    server.routes[API] = sequence((200, {"Retry-After": "5", "X-Database-Lag": "6"}, lag), batch([file_page(0)]))
    assert numbers(source(server).search(Query("fox"), 5)) == [0]
    assert waits == [5.0]


def test_maxlag_forever_is_a_source_error(server: ReplayServer, waits: list[float]):
    lag = {"error": {"code": "maxlag", "info": "Waiting for db1: 6 seconds lagged."}}
    server.routes[API] = lambda q: (200, {}, lag)
    with pytest.raises(SourceError, match=r"maxlag.*after 3 attempts"):
        source(server).search(Query("fox"), 5)
    assert len(waits) == 2


def test_config_bounds():
    with pytest.raises(ValidationError, match="thumb_width_px"):
        CommonsSourceConfig(thumb_width_px=0)


# --------------------------------------------------------------------------- the candidates stage


def stage_search(base: str) -> Any:
    """Commons answers whose thumbnails point back at the replay server (one image per query and rank)."""
    def route(query: dict[str, str]) -> Any:
        text, limit = query["gsrsearch"].removesuffix(" filetype:bitmap"), int(query["gsrlimit"])
        return batch([file_page(i, thumburl=f"{base}/img.png?id={quote(text)}-{i}") for i in range(limit)])
    return route


def run_pipeline(tmp_path: Path, server: ReplayServer, wnids: list[str]) -> int:
    return run_collection(tmp_path, wnids, [{"type": "commons", "base_url": server.url + API, "max_per_query": 4,
                                              "retries": 1}])


def test_through_the_candidates_stage_then_a_failing_service(tmp_path: Path, server: ReplayServer,
                                                             capsys: pytest.CaptureFixture[str]):
    server.routes.update({API: stage_search(server.url), "/img.png": image_route})
    assert run_pipeline(tmp_path, server, [DOG]) == 0
    rows = stored_candidates(tmp_path / "run")
    assert rows and {r["source"] for r in rows} == {"commons"} and {r["wnid"] for r in rows} == {DOG}
    assert {r["status"] for r in rows} == {"downloaded"}, [dict(r) for r in rows if r["status"] != "downloaded"]
    assert all(r["license"] == "CC BY-SA 4.0" and r["creator"] == "Ann & Bob" and r["query_id"]
               and r["page_url"].startswith("https://commons.wikimedia.org/wiki/File:") for r in rows)
    first_query = [r for r in rows if r["query_id"] == rows[0]["query_id"]]
    assert [r["rank"] for r in first_query] == [0, 1, 2, 3]

    server.routes[API] = lambda q: (503, {}, "down for maintenance")  # a new class's queries cannot be searched
    capsys.readouterr()
    assert run_pipeline(tmp_path, server, [DOG, CAT]) == 1
    err = capsys.readouterr().err
    assert "commons: service error (HTTP 503)" in err and "queries left to search on the next run" in err
    assert [dict(r) for r in stored_candidates(tmp_path / "run")] == [dict(r) for r in rows]


def test_only_http_description_pages_are_kept(server: ReplayServer):
    server.routes[API] = sequence(batch([file_page(0, descriptionurl="javascript:alert(1)"),
                                         file_page(1, descriptionurl="vbscript:msgbox(1)"),
                                         file_page(2)]))
    pages = [hit.page_url for hit in source(server).search(Query("fox"), 5)]
    assert pages == [None, None, "https://commons.wikimedia.org/wiki/File:Red_fox_2.jpg"]
