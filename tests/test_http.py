"""The download engine against a loopback HTTP server playing an image host."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from curate.http import Fetcher, FetchError

PNG = io.BytesIO()
Image.new("RGB", (50, 50), "red").save(PNG, format="PNG")
PNG_BYTES = PNG.getvalue()


class Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/flaky.png" and self.hits[self.path] < 3:
            return self._send(503, b"busy", "text/plain")
        routes = {"/ok.png": (200, PNG_BYTES, "image/png"), "/flaky.png": (200, PNG_BYTES, "image/png"),
                  "/page.html": (200, b"<html></html>", "text/html"), "/big.png": (200, b"x" * 5000, "image/png")}
        self._send(*routes.get(self.path, (404, b"nope", "text/plain")))

    def _send(self, code: int, body: bytes, kind: str):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_ok_and_retry_on_503(server):
    fetcher = Fetcher(timeout_s=5, retries=3, max_bytes=1000, backoff_s=0.01)
    assert fetcher.fetch(f"{server}/ok.png") == PNG_BYTES
    assert fetcher.fetch(f"{server}/flaky.png") == PNG_BYTES
    assert Handler.hits["/flaky.png"] == 3


@pytest.mark.parametrize("path, message", [("/missing.png", "HTTP 404"), ("/page.html", "not an image"),
                                           ("/big.png", "too large")])
def test_fetch_failures_name_the_problem(server, path, message):
    with pytest.raises(FetchError, match=message):
        Fetcher(timeout_s=5, retries=0, max_bytes=1000).fetch(server + path)


def test_unreachable_server_fails_after_retries():
    with pytest.raises(FetchError, match="after 2 attempts"):
        Fetcher(timeout_s=1, retries=1, backoff_s=0.01).fetch("http://127.0.0.1:9/none.png")


def test_file_urls(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(PNG_BYTES)
    assert Fetcher().fetch(path.as_uri()) == PNG_BYTES
    with pytest.raises(FetchError, match="cannot read"):
        Fetcher().fetch((tmp_path / "absent.png").as_uri())
