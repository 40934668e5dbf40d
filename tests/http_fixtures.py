"""Helpers for tests/test_http.py: a loopback image host (well-behaved and malformed routes), a fake DNS
resolver and a guard that turns any non-loopback connect into an AssertionError."""

from __future__ import annotations

import gzip
import io
import ipaddress
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from PIL import Image

PNG = io.BytesIO()
Image.new("RGB", (50, 50), "red").save(PNG, format="PNG")
PNG_BYTES = PNG.getvalue()

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` whose data starts like zeros: a decompression bomb's opening."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
            + _png_chunk(b"IEND", b""))


HUGE_PNG = _bomb_png(50_000, 50_000)

STATIC = {"/ok.png": (200, PNG_BYTES, "image/png"), "/page.html": (200, b"<html></html>", "text/html"),
          "/big.png": (200, b"x" * 5000, "image/png"), "/to-ftp": (302, b"", "text/plain"),
          "/loop-a": (302, b"", "text/plain"), "/loop-b": (302, b"", "text/plain")}
LOCATIONS = {"/to-ftp": "ftp://example.com/x.png", "/loop-a": "/loop-b", "/loop-b": "/loop-a"}
RAW = {
    "/chunked-truncated.png": b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"10\r\nabc",
    "/duplicate-length.png": b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 3\r\n"
                             b"Content-Length: 5\r\n\r\nabcde",
    "/bad-status-line.png": b"garbage\r\n\r\n",
    "/noai.png": b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Robots-Tag: noai, noimageai\r\n"
                 b"Content-Length: " + str(len(PNG_BYTES)).encode() + b"\r\n\r\n" + PNG_BYTES,
    "/html-as-image.jpg": b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 27\r\n\r\n"
                          b"<html>not found</html>     ",
    "/huge.png": b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: " + str(len(HUGE_PNG)).encode()
                 + b"\r\n\r\n" + HUGE_PNG,
}
DRIP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n"


class Handler(BaseHTTPRequestHandler):
    """Routes: STATIC and RAW above, plus /flaky.png, /status/<code>, /hops/<n>, /redirect?to=<url>,
    /drip.png, /silent.png, /retry-date.png, /retry-late.png, /gzip.png."""

    hits: Counter[str] = Counter()
    headers_seen: dict[str, Any] = {}

    def do_GET(self):  # noqa: N802
        self.hits[self.path] += 1
        self.headers_seen[self.path] = self.headers
        path, _, query = self.path.partition("?")
        if path in STATIC:
            return self._send(*STATIC[path], location=LOCATIONS.get(path))
        if path in RAW:
            return self.wfile.write(RAW[path])
        if path == "/reset.png":  # the connection is reset (RST) instead of answered
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return self.connection.close()
        name = path.strip("/").split("/")[0].removesuffix(".png").replace("-", "_")
        getattr(self, f"_route_{name}", self._route_missing)(path, query)

    def _route_missing(self, path: str, query: str):
        self._send(404, b"nope", "text/plain")

    def _route_flaky(self, path: str, query: str):
        if self.hits[path] < 3:
            return self._send(503, b"busy", "text/plain")
        self._send(200, PNG_BYTES, "image/png")

    def _route_status(self, path: str, query: str):
        self._send(int(path.rsplit("/", 1)[1]), b"status", "text/plain")

    def _route_hops(self, path: str, query: str):
        left = int(path.rsplit("/", 1)[1])
        self._send(302, b"", "text/plain", location=f"/hops/{left - 1}" if left > 1 else "/ok.png")

    def _route_redirect(self, path: str, query: str):
        self._send(302, b"", "text/plain", location=parse_qs(query)["to"][0])

    def _route_drip(self, path: str, query: str):
        """Headers, then one body byte every 0.7 s: each read returns, the download never ends."""
        try:
            self.wfile.write(DRIP_HEAD)
            for _ in range(30):
                self.wfile.write(b"x")
                time.sleep(0.7)
        except OSError:
            pass

    def _route_silent(self, path: str, query: str):
        self.wfile.write(DRIP_HEAD)
        time.sleep(5)

    def _route_retry_date(self, path: str, query: str):
        if self.hits[path] == 1:
            return self._send(503, b"busy", "text/plain", retry_after=formatdate(time.time() + 2, usegmt=True))
        self._send(200, PNG_BYTES, "image/png")

    def _route_retry_late(self, path: str, query: str):
        self._send(503, b"busy", "text/plain", retry_after="30")

    def _route_gzip(self, path: str, query: str):
        self._send(200, gzip.compress(PNG_BYTES), "image/png", encoding="gzip")

    def _send(self, code: int, body: bytes, kind: str, location: str | None = None, retry_after: str | None = None,
              encoding: str | None = None):
        self.send_response(code)
        extra = {"Location": location, "Retry-After": retry_after, "Content-Encoding": encoding}
        for name, value in [("Content-Type", kind), ("Content-Length", str(len(body))), *extra.items()]:
            if value is not None:
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_server(tls: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, int]:
    """A threaded loopback server running :class:`Handler`; stop it with ``shutdown()``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, httpd.server_address[1]


def tls_context(tmp_path: Path, hostname: str) -> tuple[ssl.SSLContext, Path]:
    """A server context with a fresh self-signed certificate for ``hostname``, and that certificate's path."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", f"/CN={hostname}", "-addext", f"subjectAltName=DNS:{hostname}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


def refuse_non_loopback(address: Any) -> None:
    """Raise AssertionError unless ``address`` is a loopback IP literal (a guard that failed would send a packet)."""
    host = address[0] if isinstance(address, tuple) else address
    try:
        loopback = ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise AssertionError(f"a connection to {address!r} left loopback")


def fake_getaddrinfo(table: dict[str, list[list[str]]], calls: Counter[str], real: Any) -> Any:
    """A ``socket.getaddrinfo`` answering names in ``table`` (successive answers, the last one repeating)."""
    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0):
        if host not in table:
            return real(host, port, family, type, proto, flags)
        calls[host] += 1
        answers = table[host]
        ips = answers.pop(0) if len(answers) > 1 else answers[0]
        return [_addrinfo(ip, int(port)) for ip in ips]
    return getaddrinfo


def _addrinfo(ip: str, port: int) -> tuple[Any, ...]:
    if ipaddress.ip_address(ip).version == 6:
        return socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port, 0, 0)
    return socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port)


def redirect_path(target: str) -> str:
    """The server path that redirects to ``target``."""
    return f"/redirect?to={quote(target, safe='')}"

