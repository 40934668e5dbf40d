"""The openverse source against a loopback server replaying the Openverse API v1: paging, field mapping,
licence filters, headers, every failure as a SourceError, and a run of the real candidates stage."""

from __future__ import annotations

import math
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

import curate.sources.openverse  # noqa: F401  (registers 'openverse' before the pipeline model is built)
from curate.sources import web
from curate.sources.base import Query, SourceError
from curate.sources.openverse import OpenverseSource, OpenverseSourceConfig, license_name

UA = "curate-test (mailto:x@example.org)"
SEARCH = "/v1/images/"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_only(monkeypatch)
    monkeypatch.setattr(web.WebSource, "backoff_s", 0.01)
    monkeypatch.delenv("OPENVERSE_TOKEN", raising=False)


def source(server: ReplayServer, **config: Any) -> OpenverseSource:
    return OpenverseSource(OpenverseSourceConfig(base_url=server.url, retries=2, **config), user_agent=UA)


def result(key: str, **fields: Any) -> dict[str, Any]:
    """One API result as Openverse sends it."""
    return {"id": f"id-{key}", "title": f"Fox {key}", "indexed_on": "2024-01-01T00:00:00Z",
            "foreign_landing_url": f"https://www.flickr.com/photos/x/{key}", "url": f"https://live.example/{key}.jpg",
            "creator": "Ann", "creator_url": "https://www.flickr.com/photos/x", "license": "by",
            "license_version": "4.0", "license_url": "https://creativecommons.org/licenses/by/4.0/",
            "provider": "flickr", "source": "flickr", "category": "photograph", "filesize": 1234,
            "filetype": "jpg", "tags": [], "attribution": "...", "mature": False, "height": 480, "width": 640,
            "thumbnail": f"https://api.openverse.org/v1/images/id-{key}/thumb/", **fields}


def answer(results: list[dict[str, Any]], page: int = 1, page_count: int = 1, total: int | None = None) -> Any:
    body = {"result_count": len(results) if total is None else total, "page_count": page_count,
            "page_size": len(results), "page": page, "results": results}
    return 200, {}, body


def paged(total: int, base: str = "https://live.example") -> Any:
    """A search route over ``total`` results that pages as the API does (``page`` and ``page_size``)."""
    def route(query: dict[str, str]) -> Any:
        page, size = int(query["page"]), int(query["page_size"])
        keys = range((page - 1) * size, min(page * size, total))
        results = [result(str(i), url=f"{base}/{i}.jpg") for i in keys]
        return answer(results, page, min(math.ceil(total / size), 12), total)
    return route


def urls(hits: list) -> list[str]:
    return [h.url.rsplit("/", 1)[1] for h in hits]


# --------------------------------------------------------------------------- paging


def test_three_pages_in_rank_order_with_the_query_sent(server: ReplayServer):
    server.routes[SEARCH] = paged(55)
    hits = source(server).search(Query("red fox"), 100)
    assert urls(hits) == [f"{i}.jpg" for i in range(55)]
    sent = [r.query for r in server.requests_to(SEARCH)]
    assert [(q["page"], q["page_size"]) for q in sent] == [("1", "20"), ("2", "20"), ("3", "20")]
    assert all(q["q"] == "red fox" and q["mature"] == "false" for q in sent)
    assert not any("license" in q or "license_type" in q for q in sent)


def test_a_limit_that_stops_mid_page_keeps_the_page_size_and_the_offsets(server: ReplayServer):
    server.routes[SEARCH] = paged(55)
    assert urls(source(server).search(Query("fox"), 25)) == [f"{i}.jpg" for i in range(25)]
    assert [(r.query["page"], r.query["page_size"]) for r in server.requests_to(SEARCH)] == [("1", "20"), ("2", "20")]
    assert urls(source(server).search(Query("fox"), 5)) == [f"{i}.jpg" for i in range(5)]
    assert server.requests_to(SEARCH)[-1].query["page_size"] == "5"


def test_an_empty_page_ends_the_search(server: ReplayServer):
    server.routes[SEARCH] = sequence(answer([result(str(i)) for i in range(20)], 1, 5), answer([], 2, 5))
    assert len(source(server).search(Query("fox"), 100)) == 20
    assert len(server.requests_to(SEARCH)) == 2


def test_a_page_without_usable_results_does_not_end_the_search(server: ReplayServer):
    no_urls = [result(str(i), url=None) for i in range(20)]
    server.routes[SEARCH] = sequence(answer(no_urls, 1, 5), answer([result("a")], 2, 5), answer([], 3, 5))
    assert urls(source(server).search(Query("fox"), 100)) == ["a.jpg"]
    assert [r.query["page"] for r in server.requests_to(SEARCH)] == ["1", "2", "3"]


def test_the_page_count_ends_the_search(server: ReplayServer):
    server.routes[SEARCH] = paged(20)
    assert len(source(server).search(Query("fox"), 100)) == 20
    assert len(server.requests_to(SEARCH)) == 1


def test_the_api_pagination_depth_ends_the_search(server: ReplayServer):
    server.routes[SEARCH] = paged(10_000)
    assert len(source(server, max_per_query=1000).search(Query("fox"), 1000)) == 240
    assert len(server.requests_to(SEARCH)) == 12


# --------------------------------------------------------------------------- fields


def test_missing_fields_become_none_and_results_without_an_image_url_are_skipped(server: ReplayServer):
    full = result("full", license="by-sa", license_version="2.0")
    sparse = {"id": "sparse", "url": "https://live.example/sparse.jpg", "license": "cc0", "license_version": None}
    results = [full, result("no-url", url=None), sparse, result("blank", url="  "),
               result("untitled", title=None, creator=None, foreign_landing_url=None, license_version=None),
               {k: v for k, v in result("absent").items() if k != "url"}, "not a record"]
    server.routes[SEARCH] = lambda q: answer(results)
    hits = source(server).search(Query("fox"), 20)
    assert [h.url for h in hits] == [full["url"], sparse["url"], "https://live.example/untitled.jpg"]
    first, second, third = hits
    assert (first.title, first.page_url, first.license, first.creator) == (
        "Fox full", "https://www.flickr.com/photos/x/full", "CC BY-SA 2.0", "Ann")
    assert (second.title, second.page_url, second.license, second.creator) == ("", None, "CC0", None)
    assert (third.title, third.page_url, third.license, third.creator) == ("", None, "CC BY", None)


@pytest.mark.parametrize("slug, version, name", [
    ("by", "4.0", "CC BY 4.0"), ("by-nc-sa", "2.0", "CC BY-NC-SA 2.0"), ("cc0", "1.0", "CC0 1.0"),
    ("pdm", "1.0", "Public Domain Mark 1.0"), ("sampling+", "1.0", "CC Sampling+ 1.0"), ("BY-SA", None, "CC BY-SA"),
    (None, "4.0", None), ("", None, None),
])
def test_licence_names(slug: str | None, version: str | None, name: str | None):
    assert license_name(slug, version) == name


def test_an_answer_without_results_is_a_source_error(server: ReplayServer):
    server.routes[SEARCH] = lambda q: (200, {}, {"detail": "something else"})
    with pytest.raises(SourceError, match="no 'results' list"):
        source(server).search(Query("fox"), 5)


# --------------------------------------------------------------------------- request


def test_licence_filters_are_sent_comma_separated(server: ReplayServer):
    server.routes[SEARCH] = paged(3)
    source(server, licenses=["cc0", "BY-SA"], license_type=["commercial", "modification"]).search(Query("fox"), 5)
    (sent,) = server.requests_to(SEARCH)
    assert (sent.query["license"], sent.query["license_type"]) == ("cc0,by-sa", "commercial,modification")


def test_unknown_licences_are_config_errors():
    with pytest.raises(ValidationError, match="licenses"):
        OpenverseSourceConfig(licenses=["cc-by"])
    with pytest.raises(ValidationError, match="license_type"):
        OpenverseSourceConfig(license_type=["free"])


def test_the_user_agent_is_sent(server: ReplayServer):
    server.routes[SEARCH] = paged(3)
    source(server).search(Query("fox"), 5)
    assert server.requests_to(SEARCH)[0].headers["User-Agent"] == UA


def test_the_token_is_sent_as_bearer_only_when_set(server: ReplayServer, monkeypatch: pytest.MonkeyPatch):
    server.routes[SEARCH] = paged(3)
    source(server).search(Query("fox"), 5)
    assert "Authorization" not in server.requests_to(SEARCH)[-1].headers
    monkeypatch.setenv("OPENVERSE_TOKEN", "tok-123")
    source(server).search(Query("fox"), 5)
    assert server.requests_to(SEARCH)[-1].headers["Authorization"] == "Bearer tok-123"


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("token", [None, "expired"])
def test_refusals_name_the_token_variable(server: ReplayServer, monkeypatch: pytest.MonkeyPatch, status: int,
                                          token: str | None):
    if token:
        monkeypatch.setenv("OPENVERSE_TOKEN", token)
    server.routes[SEARCH] = lambda q: (status, {}, {"detail": "Authentication credentials were not provided."})
    with pytest.raises(SourceError, match=rf"refused the request \(HTTP {status}\).*\$OPENVERSE_TOKEN") as info:
        source(server).search(Query("fox"), 5)
    assert ("is set" if token else "is not set") in str(info.value)
    assert len(server.requests_to(SEARCH)) == 1  # a refusal is not retried


def test_rate_limited_then_answered_waits_as_told(server: ReplayServer, waits: list[float]):
    server.routes[SEARCH] = sequence((429, {"Retry-After": "7"}, {"detail": "throttled"}), answer([result("a")]))
    assert urls(source(server).search(Query("fox"), 5)) == ["a.jpg"]
    assert waits == [7.0]


def test_rate_limited_forever_says_so(server: ReplayServer, waits: list[float]):
    server.routes[SEARCH] = lambda q: (429, {}, {"detail": "throttled"})
    with pytest.raises(SourceError, match=r"rate limit or quota reached \(HTTP 429\) \(after 3 attempts\)"):
        source(server).search(Query("fox"), 5)
    assert len(waits) == 2


def test_a_server_error_then_an_answer_succeeds(server: ReplayServer):
    server.routes[SEARCH] = sequence((500, {}, "oops"), answer([result("a")]))
    assert urls(source(server).search(Query("fox"), 5)) == ["a.jpg"]


def test_invalid_json_is_a_source_error(server: ReplayServer):
    server.routes[SEARCH] = lambda q: (200, {"Content-Type": "application/json"}, b"{not json")
    with pytest.raises(SourceError, match="not JSON"):
        source(server).search(Query("fox"), 5)


def test_an_unreachable_service_is_a_source_error():
    config = OpenverseSourceConfig(base_url=f"http://127.0.0.1:{unused_port()}", retries=1)
    with pytest.raises(SourceError, match="unreachable"):
        OpenverseSource(config, user_agent=UA).search(Query("fox"), 5)


# --------------------------------------------------------------------------- the candidates stage


def stage_search(base: str) -> Any:
    """Openverse answers whose image URLs point back at the replay server (one image per query, licence filter
    and rank)."""
    def route(query: dict[str, str]) -> Any:
        text, size, licence = query["q"], int(query["page_size"]), query.get("license", "any")
        return answer([result(f"{text}-{i}", url=f"{base}/img.png?id={quote(text)}-{licence}-{i}")
                       for i in range(size)])
    return route


def run_pipeline(tmp_path: Path, server: ReplayServer, wnids: list[str],
                 sources: list[dict[str, Any]] | None = None) -> int:
    return run_collection(tmp_path, wnids, [{"type": "openverse", "base_url": server.url, "max_per_query": 5,
                                              "retries": 1, **extra} for extra in sources or [{}]])


def test_through_the_candidates_stage_then_a_failing_service(tmp_path: Path, server: ReplayServer,
                                                             capsys: pytest.CaptureFixture[str]):
    server.routes.update({SEARCH: stage_search(server.url), "/img.png": image_route})
    assert run_pipeline(tmp_path, server, [DOG]) == 0
    rows = stored_candidates(tmp_path / "run")
    assert rows and {r["source"] for r in rows} == {"openverse"} and {r["wnid"] for r in rows} == {DOG}
    assert {r["status"] for r in rows} == {"downloaded"}, [dict(r) for r in rows if r["status"] != "downloaded"]
    assert all(r["license"] == "CC BY 4.0" and r["creator"] == "Ann" and r["page_url"] and r["query_id"]
               for r in rows)
    first_query = [r for r in rows if r["query_id"] == rows[0]["query_id"]]
    assert [r["rank"] for r in first_query] == [0, 1, 2, 3, 4]
    assert all(r.query["page_size"] == "5" for r in server.requests_to(SEARCH))

    server.routes[SEARCH] = lambda q: (503, {}, "down for maintenance")  # a new class's queries cannot be searched
    capsys.readouterr()
    assert run_pipeline(tmp_path, server, [DOG, CAT]) == 1
    err = capsys.readouterr().err
    assert "openverse: service error (HTTP 503)" in err and "queries left to search on the next run" in err
    assert [dict(r) for r in stored_candidates(tmp_path / "run")] == [dict(r) for r in rows]


def test_named_sources_of_one_type_keep_separate_searches_and_stored_candidates(tmp_path: Path, server: ReplayServer):
    server.routes.update({SEARCH: stage_search(server.url), "/img.png": image_route})
    named = [{"name": "cc0", "licenses": ["cc0"]}, {"name": "by", "licenses": ["by"]}]
    assert run_pipeline(tmp_path, server, [DOG], named) == 0
    rows = stored_candidates(tmp_path / "run")
    by_source = {name: [r for r in rows if r["source"] == name] for name in ("openverse:cc0", "openverse:by")}
    assert {r["source"] for r in rows} == set(by_source)
    queries = {r["query_id"] for r in rows}
    for name, licence in (("openverse:cc0", "cc0"), ("openverse:by", "by")):
        assert {r["query_id"] for r in by_source[name]} == queries  # every query searched by both
        assert all(f"-{licence}-" in r["url"] for r in by_source[name])
    sent = [r.query.get("license") for r in server.requests_to(SEARCH)]
    assert sent.count("cc0") == sent.count("by") == len(queries)
    assert run_pipeline(tmp_path, server, [DOG], named) == 0  # nothing left to search for either
    assert len(server.requests_to(SEARCH)) == len(sent)


def test_a_name_sets_the_instance():
    assert OpenverseSource(OpenverseSourceConfig()).instance == "openverse"
    assert OpenverseSource(OpenverseSourceConfig(name="cc0")).instance == "openverse:cc0"


def test_only_http_landing_pages_are_kept(server: ReplayServer):
    server.routes[SEARCH] = sequence(answer([
        result("js", foreign_landing_url="javascript:alert(document.cookie)"),
        result("data", foreign_landing_url="data:text/html,<script>alert(1)</script>"),
        result("line", foreign_landing_url="https://example.org/a\nb"),
        result("upper", foreign_landing_url="HTTPS://Example.org/fox"),
        result("plain", foreign_landing_url="http://example.org/fox"),
    ]))
    pages = [hit.page_url for hit in source(server).search(Query("fox"), 10)]
    assert pages == [None, None, None, "HTTPS://Example.org/fox", "http://example.org/fox"]
