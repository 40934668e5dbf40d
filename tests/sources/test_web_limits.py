"""The web sources' limits on one API request: every phase ends by ``deadline_s`` (default four times
``timeout_s``), and an answer over ``max_answer_bytes`` is refused, each a SourceError naming the problem.
Against loopback servers: a raw one dripping headers or a JSON answer, and the ReplayServer."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, ClassVar, Literal

import pytest
from api_replay import ReplayServer, loopback_only
from raw_server import RawServer, drip

from curate.sources.base import Query, SearchHit, SourceError
from curate.sources.web import WebSource, WebSourceConfig

ANSWER = json.dumps({"items": [f"https://img.example/{i}.jpg" for i in range(4)]}).encode()


class LimitsConfig(WebSourceConfig):
    type: Literal["limits"] = "limits"
    base_url: str = "http://127.0.0.1:9/api"


class Limits(WebSource):
    name = "limits"
    Config = LimitsConfig
    page_size: ClassVar[int] = 4

    def fetch_page(self, query: Query, cursor: Any, page_size: int) -> tuple[list[SearchHit], Any]:
        data = self.get_json(self.config.base_url, params={"q": query.text})
        return [SearchHit(url=url) for url in data["items"]], None


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_only(monkeypatch)


@pytest.fixture
def raw_server():
    servers: list[RawServer] = []

    def start(serve) -> str:
        servers.append(RawServer(serve))
        return f"http://127.0.0.1:{servers[-1].port}/api"

    yield start
    for server in servers:
        server.close()


def head(length: int | None) -> bytes:
    size = b"" if length is None else b"Content-Length: " + str(length).encode() + b"\r\n"
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"p" * 100 + b"\r\n" + size
            + b"Connection: close\r\n\r\n")


def drip_answer(connection: socket.socket, stop: threading.Event) -> None:
    """The headers at once, then the JSON answer one byte every 0.2 s (about 30 s in all)."""
    connection.recv(65536)
    connection.sendall(head(len(ANSWER)))
    drip(connection, stop, ANSWER, 0.2)


def drip_headers(connection: socket.socket, stop: threading.Event) -> None:
    connection.recv(65536)
    drip(connection, stop, head(len(ANSWER)), 0.2)
    connection.sendall(ANSWER)


def endless_answer(connection: socket.socket, stop: threading.Event) -> None:
    """An answer without a declared length that never ends (until the client stops reading)."""
    connection.recv(65536)
    connection.sendall(head(None) + b'{"items": ["')
    while not stop.is_set():
        connection.sendall(b"x" * 65536)


def search_failure(config: LimitsConfig) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(SourceError) as failure:
        Limits(config).search(Query("dog"), 4)
    return str(failure.value), time.monotonic() - started


def test_an_answer_that_drips_ends_by_the_deadline(raw_server):
    url = raw_server(drip_answer)
    message, seconds = search_failure(LimitsConfig(base_url=url, timeout_s=1, deadline_s=2, retries=2))
    assert message == f"limits: no complete answer from {url}: deadline of 2 s exceeded (reading the answer)"
    assert seconds < 6  # the answer alone takes 30 s to arrive


def test_headers_that_drip_end_by_the_deadline(raw_server):
    url = raw_server(drip_headers)
    message, seconds = search_failure(LimitsConfig(base_url=url, timeout_s=1, deadline_s=2, retries=2))
    assert message.endswith("deadline of 2 s exceeded (awaiting the response)")
    assert seconds < 6


def test_the_deadline_is_four_timeouts_unless_set(raw_server):
    url = raw_server(drip_answer)
    config = LimitsConfig(base_url=url, timeout_s=0.5)
    assert Limits(config).deadline_s == 2.0
    message, seconds = search_failure(config)
    assert message.endswith("deadline of 2 s exceeded (reading the answer)")
    assert seconds < 6


def test_an_answer_over_the_size_cap_is_refused():
    big = {"items": ["https://img.example/x.jpg"], "padding": "x" * 5000}
    with ReplayServer({"/api": lambda query: (200, {}, big)}) as server:
        config = LimitsConfig(base_url=f"{server.url}/api", max_answer_bytes=4000)
        message, _ = search_failure(config)
        assert message == f"limits: the answer is too large: {len(json.dumps(big))} bytes (max_answer_bytes 4000)"
        assert [h.url for h in Limits(config.model_copy(update={"max_answer_bytes": 8000})).search(Query("dog"), 4)] \
            == ["https://img.example/x.jpg"]


def test_an_endless_answer_without_a_length_stops_at_the_size_cap(raw_server):
    url = raw_server(endless_answer)
    message, seconds = search_failure(LimitsConfig(base_url=url, max_answer_bytes=1_000_000, deadline_s=30))
    assert message == "limits: the answer is too large: over 1000000 bytes (max_answer_bytes)"
    assert seconds < 15
