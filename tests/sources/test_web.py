"""The shared base of the web sources, through a tiny WebSource against a loopback ReplayServer: one page
size per search, opaque cursors, empty (filtered) pages, the depth limit, ``check_answer`` with
``RetryableError``, secrets kept out of error messages, and ``name`` making separate instances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import pytest
from api_replay import Answer, ReplayServer, loopback_only, sequence, server, waits  # noqa: F401  (fixtures)
from pydantic import ValidationError

from curate.sources.base import Query, SearchHit, SourceError
from curate.sources.web import MAX_EMPTY_PAGES, RetryableError, WebSource, WebSourceConfig, redact_urls

API = "/api"
KEY_ENV = "TINY_API_KEY"
SECRET = "s3cret-key-value"


class TinyConfig(WebSourceConfig):
    type: Literal["tiny"] = "tiny"
    base_url: str = "http://127.0.0.1:9/api"


class Tiny(WebSource):
    """Sends ``q``, ``size``, ``cursor`` (when not the first page) and the key; reads ``items`` (URLs; those
    ending in ``skip`` are filtered out, as a licence filter would) and ``next`` (the next cursor, opaque)."""

    name = "tiny"
    Config = TinyConfig
    page_size: ClassVar[int] = 4
    api_key_env: ClassVar[str | None] = KEY_ENV

    def fetch_page(self, query: Query, cursor: Any, page_size: int) -> tuple[list[SearchHit], Any]:
        params: dict[str, Any] = {"q": query.text, "size": page_size}
        if cursor is not None:
            params["cursor"] = cursor
        if self.api_key:
            params["key"] = self.api_key
        data = self.get_json(self.config.base_url, params=params)
        hits = [SearchHit(url=url) for url in data["items"] if not url.endswith("skip")]
        return hits, data.get("next")


class Busy(Tiny):
    """Its API says ``{"busy": true}`` with HTTP 200 when overloaded, and ``{"denied": ...}`` for good."""

    def check_answer(self, data: Any, response_headers: Mapping[str, str]) -> None:
        if data.get("busy"):
            wait = response_headers.get("Retry-After")
            raise RetryableError("the service is busy", float(wait) if wait else None)
        if data.get("denied"):
            raise SourceError(f"{self.instance}: denied: {data['denied']}")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_only(monkeypatch)
    monkeypatch.setattr(WebSource, "backoff_s", 0.01)
    monkeypatch.delenv(KEY_ENV, raising=False)


def tiny(server: ReplayServer, cls: type[Tiny] = Tiny, **config: Any) -> Tiny:
    return cls(TinyConfig(base_url=server.url + API, retries=2, **config))


def offsets(total: int, skip: frozenset[int] | set[int] = frozenset()) -> Any:
    """``total`` results paged by offset: cursor ``p<n>`` is page n (the first page has none), offset
    ``(n - 1) * size``; results in ``skip`` are filtered out by the source."""
    def route(query: dict[str, str]) -> Answer:
        page, size = int(query.get("cursor", "p1")[1:]), int(query["size"])
        numbers = range((page - 1) * size, min(page * size, total))
        items = [f"https://img.example/{i}" + ("skip" if i in skip else "") for i in numbers]
        return 200, {}, {"items": items, "next": f"p{page + 1}" if page * size < total else None}
    return route


def numbers(hits: list[SearchHit]) -> list[int]:
    return [int(h.url.rsplit("/", 1)[1]) for h in hits]


def sent(server: ReplayServer, *names: str) -> list[tuple[str | None, ...]]:
    return [tuple(r.query.get(n) for n in names) for r in server.requests_to(API)]


# --------------------------------------------------------------------------- 1: one page size per search


def test_one_page_size_for_the_whole_search_and_the_surplus_trimmed(server: ReplayServer):
    server.routes[API] = offsets(100)
    assert numbers(tiny(server).search(Query("fox"), 10)) == list(range(10))  # not 0-7 then a shifted page of 2
    assert sent(server, "cursor", "size") == [(None, "4"), ("p2", "4"), ("p3", "4")]
    server.requests.clear()
    assert numbers(tiny(server).search(Query("fox"), 3)) == [0, 1, 2]
    assert sent(server, "cursor", "size") == [(None, "3")]
    assert tiny(server).search(Query("fox"), 0) == []


def test_the_first_cursor_is_none_and_the_next_one_is_sent_back_verbatim(server: ReplayServer):
    server.routes[API] = sequence((200, {}, {"items": ["https://img.example/0"], "next": {"opaque": 1}}),
                                  (200, {}, {"items": ["https://img.example/1"], "next": None}))
    seen: list[Any] = []

    class Recording(Tiny):
        def fetch_page(self, query: Query, cursor: Any, page_size: int) -> tuple[list[SearchHit], Any]:
            seen.append(cursor)
            return super().fetch_page(query, "tok" if cursor else None, page_size)

    assert numbers(tiny(server, Recording).search(Query("fox"), 10)) == [0, 1]
    assert seen == [None, {"opaque": 1}]


def test_no_state_of_a_search_is_kept_between_searches(server: ReplayServer):
    server.routes[API] = offsets(6)
    source = tiny(server)
    assert numbers(source.search(Query("fox"), 5)) == [0, 1, 2, 3, 4]
    assert numbers(source.search(Query("fox"), 2)) == [0, 1]
    assert sent(server, "cursor", "size")[-1] == (None, "2")


# --------------------------------------------------------------------------- 2: when a search stops


def test_pages_the_filters_empty_do_not_end_the_search(server: ReplayServer):
    server.routes[API] = offsets(40, skip=set(range(12)))  # pages 1-3 filtered out entirely
    assert numbers(tiny(server).search(Query("fox"), 6)) == [12, 13, 14, 15, 16, 17]
    assert len(server.requests_to(API)) == 5


def test_max_empty_pages_in_a_row_end_the_search_while_the_api_has_more(server: ReplayServer):
    server.routes[API] = offsets(400, skip=set(range(4, 400)))
    assert numbers(tiny(server).search(Query("fox"), 50)) == [0, 1, 2, 3]
    assert len(server.requests_to(API)) == 1 + MAX_EMPTY_PAGES


def test_a_page_with_a_hit_resets_the_empty_count(server: ReplayServer):
    usable = {0, 4 * MAX_EMPTY_PAGES - 1}  # the last result of the MAX_EMPTY_PAGES-th page
    server.routes[API] = offsets(400, skip=set(range(400)) - usable)
    assert numbers(tiny(server).search(Query("fox"), 50)) == sorted(usable)
    assert len(server.requests_to(API)) == 2 * MAX_EMPTY_PAGES


def test_a_page_repeating_what_was_seen_counts_as_empty_and_urls_are_kept_once(server: ReplayServer):
    page = (200, {}, {"items": ["https://img.example/1", "https://img.example/2", "https://img.example/1"],
                      "next": "again"})
    server.routes[API] = sequence(page)
    assert numbers(tiny(server).search(Query("fox"), 50)) == [1, 2]
    assert len(server.requests_to(API)) == 1 + MAX_EMPTY_PAGES


def test_no_next_cursor_ends_the_search(server: ReplayServer):
    server.routes[API] = offsets(6, skip={4, 5})
    assert numbers(tiny(server).search(Query("fox"), 50)) == [0, 1, 2, 3]
    assert len(server.requests_to(API)) == 2


def test_the_depth_limit_ends_the_search_before_a_page_would_pass_it(server: ReplayServer, monkeypatch):
    monkeypatch.setattr(Tiny, "max_results", 10)
    server.routes[API] = offsets(1000)
    assert numbers(tiny(server).search(Query("fox"), 100)) == list(range(8))  # a third page would end at 12
    assert len(server.requests_to(API)) == 2
    monkeypatch.setattr(Tiny, "max_results", 12)
    server.requests.clear()
    assert numbers(tiny(server).search(Query("fox"), 100)) == list(range(12))
    assert len(server.requests_to(API)) == 3


# --------------------------------------------------------------------------- 4: check_answer


def test_a_retryable_answer_is_retried_after_the_wait_it_names(server: ReplayServer, waits: list[float]):
    server.routes[API] = sequence((200, {"Retry-After": "4"}, {"busy": True}), (200, {}, {"busy": True}),
                                  (200, {}, {"items": ["https://img.example/7"]}))
    assert numbers(tiny(server, Busy).search(Query("fox"), 5)) == [7]
    assert len(waits) == 2 and waits[0] == 4.0 and 0 < waits[1] < 1  # then the backoff
    assert len(server.requests_to(API)) == 3


def test_a_retryable_answer_forever_is_a_source_error(server: ReplayServer, waits: list[float]):
    server.routes[API] = lambda q: (200, {}, {"busy": True})
    with pytest.raises(SourceError, match=r"^tiny: the service is busy \(after 3 attempts\)$"):
        tiny(server, Busy).search(Query("fox"), 5)
    assert len(waits) == 2


def test_a_final_answer_is_not_retried(server: ReplayServer, waits: list[float]):
    server.routes[API] = lambda q: (200, {}, {"denied": "no such index"})
    with pytest.raises(SourceError, match=r"^tiny: denied: no such index$"):
        tiny(server, Busy).search(Query("fox"), 5)
    assert len(server.requests_to(API)) == 1 and waits == []


def test_check_answer_sees_only_successful_answers(server: ReplayServer, waits: list[float]):
    checked: list[Any] = []

    class Checking(Tiny):
        def check_answer(self, data: Any, response_headers: Mapping[str, str]) -> None:
            checked.append((data, response_headers.get("x-served-by")))  # header names are case-insensitive

    server.routes[API] = sequence((503, {}, {"items": []}), (200, {"X-Served-By": "a1"}, {"items": []}))
    assert tiny(server, Checking).search(Query("fox"), 5) == []
    assert checked == [({"items": []}, "a1")]


def test_a_retryable_error_outside_get_json_is_a_source_error(server: ReplayServer):
    class Raising(Tiny):
        def fetch_page(self, query: Query, cursor: Any, page_size: int) -> tuple[list[SearchHit], Any]:
            raise RetryableError("try later")

    with pytest.raises(SourceError, match=r"^tiny: try later$"):
        tiny(server, Raising).search(Query("fox"), 5)


# --------------------------------------------------------------------------- 5: no secrets in messages


def test_request_failed_does_not_show_the_query_string(server: ReplayServer, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.routes[API] = lambda q: (302, {"Location": f"ftp://127.0.0.1/files?key={q['key']}&q={q['q']}"}, "")
    with pytest.raises(SourceError, match=r"^tiny: request failed: ") as info:
        tiny(server).search(Query("red fox"), 5)
    message = str(info.value)
    assert SECRET not in message and "key=" not in message and "q=red" not in message
    assert "ftp://127.0.0.1/files?…" in message  # the URL stays, less its query


def test_answers_echoing_the_url_or_the_key_are_redacted(server: ReplayServer, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.routes[API] = lambda q: (400, {}, f"Bad request: GET {API}?q={q['q']}&key={q['key']} (key {q['key']})")
    with pytest.raises(SourceError, match=r"^tiny: HTTP 400: Bad request: GET /api\?… \(key …\)$") as info:
        tiny(server).search(Query("fox"), 5)
    assert SECRET not in str(info.value)
    server.routes[API] = lambda q: (403, {}, f"invalid key {q['key']}")
    refused = rf"refused the request \(HTTP 403\); check the API key \(\${KEY_ENV} is set"
    with pytest.raises(SourceError, match=refused) as info:
        tiny(server).search(Query("fox"), 5)
    assert SECRET not in str(info.value)


def test_a_source_error_raised_by_a_source_is_redacted_too(server: ReplayServer, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)

    class Leaky(Tiny):
        def fetch_page(self, query: Query, cursor: Any, page_size: int) -> tuple[list[SearchHit], Any]:
            raise SourceError(f"tiny: odd answer from https://api.example/x?key={self.api_key}")

    with pytest.raises(SourceError, match=r"^tiny: odd answer from https://api\.example/x\?…$"):
        tiny(server, Leaky).search(Query("fox"), 5)


@pytest.mark.parametrize("text, redacted", [
    ("No connection adapters were found for 'ftp://h/p?api_key=K&q=x'", "No connection adapters were found for "
                                                                          "'ftp://h/p?…'"),
    ("Max retries exceeded with url: /rest/?method=m&api_key=K (Caused by x)",
     "Max retries exceeded with url: /rest/?… (Caused by x)"),
    ("https://a.example/x?k=1 and http://b.example/y?z=2#f", "https://a.example/x?… and http://b.example/y?…"),
    ("is it set? yes", "is it set? yes"),
    ("https://a.example/path", "https://a.example/path"),
])
def test_redact_urls(text: str, redacted: str):
    assert redact_urls(text) == redacted


# --------------------------------------------------------------------------- 6: instance names


def test_a_name_makes_a_separate_instance():
    assert Tiny(TinyConfig()).instance == "tiny"
    assert Tiny(TinyConfig(name="cc0-only")).instance == "tiny:cc0-only"
    assert Tiny(TinyConfig(name="a")).instance != Tiny(TinyConfig(name="b")).instance
    for bad in ("", "two words", "a:b", "-x"):
        with pytest.raises(ValidationError, match="name"):
            TinyConfig(name=bad)


def test_messages_name_the_instance(server: ReplayServer, waits: list[float]):
    server.routes[API] = lambda q: (429, {}, "slow down")
    with pytest.raises(SourceError, match=r"^tiny:cc0: rate limit or quota reached \(HTTP 429\)"):
        tiny(server, name="cc0").search(Query("fox"), 5)
