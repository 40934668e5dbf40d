"""A loopback HTTP server that answers like a web API from a route table, for the source tests.

``ReplayServer(routes)`` listens on 127.0.0.1 on a free port; ``routes`` maps a path (``/v1/images/``)
to a callable taking the request's query parameters (one value each, the last one wins) and returning
``(status, headers, body)``, where the body is bytes, text or anything JSON-serialisable (sent as JSON).
Every request is recorded (path, query, headers) in ``server.requests``. Unknown paths answer 404.
Helpers: :func:`sequence` (successive answers, the last repeating), :func:`png` (a small distinct image
per seed), :func:`unused_port` (a port with nothing listening) and :func:`loopback_only` (a monkeypatch
that turns any connection leaving loopback into an AssertionError).
"""

from __future__ import annotations

import io
import ipaddress
import json
import socket
import sqlite3
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from PIL import Image, ImageDraw

Answer = tuple[int, dict[str, str], Any]
Route = Callable[[dict[str, str]], Answer]


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class ReplayServer:
    """A threaded loopback server; use as a context manager or call :meth:`close`."""

    def __init__(self, routes: dict[str, Route] | None = None):
        self.routes: dict[str, Route] = dict(routes or {})
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def requests_to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def answer(self, path: str, query: dict[str, str]) -> Answer:
        route = self.routes.get(path)
        if route is None:
            return 404, {}, {"detail": f"no route for {path}"}
        return route(query)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ReplayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler_for(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            parts = urlsplit(self.path)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            server.record(Request(parts.path, query, dict(self.headers.items())))
            status, headers, body = server.answer(parts.path, query)
            self._send(status, headers, body)

        def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
            data, kind = _encode(body)
            self.send_response(status)
            headers = {"Content-Type": kind, **headers, "Content-Length": str(len(data))}
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def _encode(body: Any) -> tuple[bytes, str]:
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body).encode("utf-8"), "application/json"


def sequence(*answers: Answer) -> Route:
    """A route giving ``answers`` one after the other; the last one repeats."""
    left = list(answers)
    lock = threading.Lock()

    def route(query: dict[str, str]) -> Answer:
        with lock:
            return left.pop(0) if len(left) > 1 else left[0]

    return route


def png(seed: str, size: int = 64) -> bytes:
    """A small PNG that differs for every ``seed`` (colour and a mark placed from its hash)."""
    h = zlib.crc32(seed.encode("utf-8"))
    colour = (h & 0xFF, (h >> 8) & 0xFF, (h >> 16) & 0xFF)
    img = Image.new("RGB", (size, size), colour)
    x, y = (h >> 3) % (size // 2), (h >> 11) % (size // 2)
    ImageDraw.Draw(img).rectangle([x, y, x + size // 3, y + size // 3], fill=tuple(255 - c for c in colour))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image_route(query: dict[str, str]) -> Answer:
    """Serves ``png(query["id"])``: point result URLs at ``/img.png?id=<something unique>``."""
    return 200, {"Content-Type": "image/png"}, png(query.get("id", ""))


def unused_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_only(monkeypatch: Any) -> None:
    """Make every outgoing connection that is not to a loopback IP literal raise AssertionError."""
    real_connect, real_create = socket.socket.connect, socket.create_connection

    def check(address: Any) -> None:
        host = str(address[0] if isinstance(address, tuple) else address).split("%")[0]
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = False
        if not ok:
            raise AssertionError(f"a test tried to connect to {address!r}, outside loopback")

    def connect(sock: socket.socket, address: Any) -> Any:
        check(address)
        return real_connect(sock, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        check(address)
        return real_create(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)


# ---------------------------------------------------------------------- fixtures the source tests share
@pytest.fixture
def server():
    with ReplayServer() as replay:
        yield replay


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sleeps between retries, recorded instead of slept."""
    from types import SimpleNamespace

    from curate.sources import web

    slept: list[float] = []
    monkeypatch.setattr(web, "time", SimpleNamespace(sleep=slept.append))
    return slept


# ---------------------------------------------------------------------- the candidates stage over a source
def run_collection(tmp_path: Path, wnids: list[str], sources: list[dict[str, Any]]) -> int:
    """``curate run --only synsets --only candidates`` with these sources, downloads allowed to loopback."""
    from conftest import pipeline_dict, write_pipeline

    from curate.cli import main

    data = pipeline_dict(tmp_path / "unused-corpus", tmp_path / "run")
    data["synsets"] = {"wnids": wnids}
    data["candidates"]["sources"] = sources
    data["candidates"]["download"].update(allow_private_networks=True, retries=0)
    pipeline = write_pipeline(tmp_path / "pipeline.yaml", data)
    return main(["run", str(pipeline), "--no-progress", "--only", "synsets", "--only", "candidates"])


def stored_candidates(run_dir: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(run_dir / "catalog.sqlite") as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM candidates ORDER BY query_id, rank").fetchall()
