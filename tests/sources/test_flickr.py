"""The ``flickr`` source against a loopback server replaying flickr.photos.search answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from api_replay import Answer, ReplayServer, loopback_only, sequence, unused_port
from conftest import pipeline_dict, write_pipeline
from pydantic import ValidationError

from curate.errors import ConfigError
from curate.sources.base import Query, SourceError
from curate.sources.flickr import FlickrConfig, FlickrSource, license_name
from curate.sources.web import WebSource

KEY = "test-key-123"
PATH = "/services/rest/"


class Api:
    """The loopback Flickr API: one route on a :class:`ReplayServer`, its requests' query parameters."""

    def __init__(self, server: ReplayServer):
        self.server = server
        self.url = server.url + PATH

    def answers(self, *answers: Answer) -> None:
        """Answer the next requests with these, the last one repeating."""
        self.server.routes[PATH] = sequence(*answers)

    def serve(self, route: Callable[[dict[str, str]], Answer]) -> None:
        self.server.routes[PATH] = route

    @property
    def requests(self) -> list[dict[str, str]]:
        return [r.query for r in self.server.requests_to(PATH)]

    def clear(self) -> None:
        self.server.requests.clear()


def photo(i: int, **fields: Any) -> dict[str, Any]:
    base = {"id": str(1000 + i), "owner": f"{i}@N01", "secret": "abc", "server": "65535", "farm": 66,
            "title": f"dog {i}", "ispublic": 1, "license": "4", "ownername": f"Owner {i}",
            "description": {"_content": f"A <b>good</b> dog &amp; friend {i}"},
            "url_z": f"https://live.staticflickr.com/65535/{1000 + i}_abc_z.jpg", "height_z": 480, "width_z": 640}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def ok(photos: list[dict[str, Any]], page: int = 1, pages: int = 1, status: int = 200,
       headers: dict[str, str] | None = None) -> Answer:
    body = {"photos": {"page": page, "pages": pages, "perpage": len(photos), "total": len(photos), "photo": photos},
            "stat": "ok"}
    return status, headers or {}, body


def fail(code: int, message: str) -> Answer:
    return 200, {}, {"stat": "fail", "code": code, "message": message}


def catalogue(photos: list[dict[str, Any]]) -> Callable[[dict[str, str]], Answer]:
    """Answers pages of ``photos`` the way Flickr does: offset (page - 1) * per_page, ``pages`` rounded up."""
    def respond(params: dict[str, str]) -> Answer:
        page, per_page = int(params["page"]), int(params["per_page"])
        pages = -(-len(photos) // per_page)
        return ok(photos[(page - 1) * per_page: page * per_page], page=page, pages=pages)
    return respond


@pytest.fixture
def api(monkeypatch) -> Iterator[Api]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLICKR_API_KEY", KEY)
    monkeypatch.setattr(WebSource, "backoff_s", 0.01)
    loopback_only(monkeypatch)
    with ReplayServer() as server:
        api = Api(server)
        api.answers(ok([]))
        yield api


def source(replay: Api, **fields: Any) -> FlickrSource:
    return FlickrSource(FlickrConfig(base_url=replay.url, retries=fields.pop("retries", 1), **fields))


def test_pages_until_the_last_page_and_a_limit_stops_mid_page(api: Api, monkeypatch):
    monkeypatch.setattr(FlickrSource, "page_size", 3)
    api.serve(catalogue([photo(i) for i in range(8)]))
    hits = source(api).search(Query("dog"), 100)
    assert [h.title.split(" |")[0] for h in hits] == [f"dog {i}" for i in range(8)]
    assert [(r["page"], r["per_page"]) for r in api.requests] == [("1", "3"), ("2", "3"), ("3", "3")]

    api.clear()
    hits = source(api).search(Query("dog"), 5)  # page 2 holds photos 3, 4, 5: the search stops inside it
    assert [h.url.rsplit("/", 1)[1] for h in hits] == [f"{1000 + i}_abc_z.jpg" for i in range(5)]
    assert [(r["page"], r["per_page"]) for r in api.requests] == [("1", "3"), ("2", "3")]

    api.clear()
    assert len(source(api).search(Query("dog"), 2)) == 2  # fewer than a page: one request for just that many
    assert [(r["page"], r["per_page"]) for r in api.requests] == [("1", "2")]


def test_request_parameters_as_the_server_saw_them(api: Api):
    api.answers(ok([photo(0, url_z=None, url_c="https://live.staticflickr.com/1/1000_abc_c.jpg")]))
    src = FlickrSource(FlickrConfig(base_url=api.url, licenses=[4, 5, 9], size="c", sort="interestingness-desc"),
                       user_agent="curate-test/1 (ops@example.org)")
    (hit,) = src.search(Query("hot dog"), 10)
    assert hit.url.endswith("_c.jpg")
    (params,) = api.requests
    assert params == {
        "method": "flickr.photos.search", "api_key": KEY, "text": "hot dog", "license": "4,5,9",
        "extras": "license,owner_name,url_c,description", "media": "photos", "content_type": "1",
        "safe_search": "1", "sort": "interestingness-desc", "page": "1", "per_page": "10", "format": "json",
        "nojsoncallback": "1",
    }
    assert api.server.requests[0].headers["User-Agent"] == "curate-test/1 (ops@example.org)"


def test_hits_carry_provenance_and_photos_without_the_size_are_skipped(api: Api):
    api.answers(ok([
        photo(0),
        photo(1, url_z=None),  # no 640 px size: skipped
        photo(2, ownername=None, description=None, license="9"),
        photo(3, ownername="", description={"_content": ""}, title="", license=None),
        photo(4, license="42"),
    ]))
    hits = source(api).search(Query("dog"), 10)
    assert [h.url.rsplit("/", 1)[1] for h in hits] == ["1000_abc_z.jpg", "1002_abc_z.jpg", "1003_abc_z.jpg",
                                                      "1004_abc_z.jpg"]
    first, no_owner, bare, odd = hits
    assert first.title == "dog 0 | A good dog & friend 0"
    assert first.page_url == "https://www.flickr.com/photos/0@N01/1000"
    assert (first.license, first.creator) == ("CC BY 2.0", "Owner 0")
    assert (no_owner.title, no_owner.creator, no_owner.license) == ("dog 2", None, "CC0 1.0")
    assert (bare.title, bare.creator, bare.license) == ("", None, None)
    assert odd.license == "Flickr licence 42"


def test_licence_names():
    assert [license_name(i) for i in (1, "4", 9, 10)] == ["CC BY-NC-SA 2.0", "CC BY 2.0", "CC0 1.0",
                                                          "Public Domain Mark 1.0"]
    assert license_name(None) is None and license_name("") is None


def test_invalid_key_names_the_variable(api: Api):
    api.answers(fail(100, "Invalid API Key (Key has invalid format)"))
    with pytest.raises(SourceError, match=r"refused the API key \(code 100.*\$FLICKR_API_KEY is set") as info:
        source(api).search(Query("dog"), 10)
    assert KEY not in str(info.value)
    assert len(api.requests) == 1  # not retried


def test_rate_limit_answers_say_quota(api: Api):
    api.answers(fail(0, "Rate limit exceeded: too many requests"))
    with pytest.raises(SourceError, match="quota"):
        source(api).search(Query("dog"), 10)
    api.answers((429, {"Retry-After": "0"}, b"Too Many Requests"))
    with pytest.raises(SourceError, match=r"quota reached \(HTTP 429\).*after 2 attempts"):
        source(api, retries=1).search(Query("dog"), 10)


def test_other_failures_give_code_and_message(api: Api):
    api.answers(fail(3, "Parameterless searches have been disabled"))
    with pytest.raises(SourceError, match=r"code 3: Parameterless searches have been disabled"):
        source(api).search(Query("dog"), 10)
    api.answers(fail(105, "Service currently unavailable"))
    with pytest.raises(SourceError, match=r"unavailable \(code 105"):
        source(api).search(Query("dog"), 10)


def test_service_unavailable_is_retried_then_succeeds(api: Api):
    api.answers(fail(105, "Service currently unavailable"), fail(201, "API not available"), ok([photo(0)]))
    assert len(source(api, retries=2).search(Query("dog"), 10)) == 1
    assert len(api.requests) == 3


def test_a_page_without_usable_photos_does_not_end_the_search(api: Api, monkeypatch):
    monkeypatch.setattr(FlickrSource, "page_size", 2)
    api.serve(catalogue([photo(0, url_z=None), photo(1, url_z=None), photo(2), photo(3)]))
    hits = source(api).search(Query("dog"), 2)
    assert [h.url.rsplit("/", 1)[1] for h in hits] == ["1002_abc_z.jpg", "1003_abc_z.jpg"]
    assert [r["page"] for r in api.requests] == ["1", "2"]


def test_the_key_never_shows_in_a_request_failed_message(api: Api):
    api.serve(lambda q: (302, {"Location": f"ftp://127.0.0.1/services/rest/?{urlencode(q)}"}, b""))
    with pytest.raises(SourceError, match=r"^flickr: request failed: .*ftp://127\.0\.0\.1/services/rest/\?…") as info:
        source(api).search(Query("dog"), 10)
    assert KEY not in str(info.value) and "api_key" not in str(info.value)


def test_the_depth_window_ends_the_search(api: Api, monkeypatch):
    monkeypatch.setattr(FlickrSource, "page_size", 500)
    api.serve(lambda q: ok([photo(int(q["page"]) * 1000 + i) for i in range(500)], page=int(q["page"]), pages=99))
    assert len(source(api).search(Query("dog"), 100_000)) == 4000
    assert [r["page"] for r in api.requests] == [str(p) for p in range(1, 9)]


def test_429_with_retry_after_then_success(api: Api):
    api.answers((429, {"Retry-After": "1"}, b"slow down"), ok([photo(0)]))
    start = time.monotonic()
    hits = source(api, retries=2).search(Query("dog"), 10)
    assert len(hits) == 1 and len(api.requests) == 2
    assert time.monotonic() - start >= 0.9  # Retry-After honoured, not the 0.01 s backoff


@pytest.mark.parametrize("body, problem", [
    (b'jsonFlickrApi({"stat": "ok"})', "not JSON"),
    (b"[1, 2]", "unexpected answer"),
    (b'{"stat": "ok"}', "unexpected answer"),
    (b'{"stat": "ok", "photos": {"photo": {}}}', "not a list"),
])
def test_malformed_answers(api: Api, body: bytes, problem: str):
    api.answers((200, {}, body))
    with pytest.raises(SourceError, match=problem):
        source(api).search(Query("dog"), 10)


def test_unreachable_port(monkeypatch):
    monkeypatch.setenv("FLICKR_API_KEY", KEY)
    monkeypatch.setattr(WebSource, "backoff_s", 0.01)
    loopback_only(monkeypatch)
    port = unused_port()
    src = FlickrSource(FlickrConfig(base_url=f"http://127.0.0.1:{port}/services/rest/", retries=1))
    with pytest.raises(SourceError, match="unreachable") as info:
        src.search(Query("dog"), 10)
    assert KEY not in str(info.value)


def test_missing_key_is_an_input_problem_and_no_request_is_made(api: Api, monkeypatch):
    assert FlickrConfig().check_inputs("candidates.sources.0") == []
    monkeypatch.delenv("FLICKR_API_KEY")
    (problem,) = FlickrConfig().check_inputs("candidates.sources.0")
    assert problem.startswith("candidates.sources.0:") and "$FLICKR_API_KEY" in problem
    with pytest.raises(SourceError, match=r"\$FLICKR_API_KEY"):
        source(api).search(Query("dog"), 10)
    assert api.requests == []


def test_config_checks():
    with pytest.raises(ValidationError):
        FlickrConfig(size="b")  # 1024 px is the url_l extra; there is no url_b
    with pytest.raises(ValidationError):
        FlickrConfig(licenses=[])
    with pytest.raises(ValidationError):
        FlickrConfig(api_key="x")  # keys come from the environment only
    assert FlickrConfig(licenses=[4, 4, 9]).licenses == [4, 9]


def test_a_pipeline_without_the_key_fails_validation(tmp_path: Path, monkeypatch):
    from curate.config import load_config

    data = pipeline_dict(tmp_path / "corpus", tmp_path / "run")
    data["candidates"]["sources"] = [{"type": "flickr", "licenses": [4, 9]}]
    pipeline = write_pipeline(tmp_path / "pipeline.yaml", data)
    monkeypatch.setenv("FLICKR_API_KEY", KEY)
    assert load_config(pipeline).candidates.sources[0].licenses == [4, 9]
    monkeypatch.delenv("FLICKR_API_KEY")
    with pytest.raises(ConfigError) as info:
        load_config(pipeline)
    assert info.value.exit_code == 2
    assert any(p.startswith("candidates.sources.0:") and "$FLICKR_API_KEY" in p for p in info.value.problems)


def test_a_photo_page_with_control_characters_is_dropped(api: Api):
    api.answers(ok([photo(0), photo(1, owner="1@N01\n<script>")]))
    pages = [hit.page_url for hit in source(api).search(Query("dog"), 10)]
    assert pages == ["https://www.flickr.com/photos/0@N01/1000", None]
