"""The fetcher's wall-clock deadline in every phase of an exchange (name resolution, TLS handshake, headers),
and its per-host gate (queueing instead of failing; every redirect hop's host), against loopback servers.

Times asserted are generous upper bounds ("ends near the deadline, not at the end of the drip") and lower
bounds the pacing itself implies."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer

import pytest
from http_fixtures import PNG_BYTES, Handler, redirect_path, start_server
from raw_server import RawServer, drip

from curate.http import Fetcher, FetchError

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"p" * 80 + b"\r\n"
        b"Content-Length: " + str(len(PNG_BYTES)).encode() + b"\r\n\r\n")


def drip_head(connection: socket.socket, stop: threading.Event) -> None:
    """Reads the request, then sends the status line and headers one byte every 0.2 s (about 25 s in all)."""
    connection.recv(65536)
    drip(connection, stop, HEAD, 0.2)
    connection.sendall(PNG_BYTES)


def never_answer(connection: socket.socket, stop: threading.Event) -> None:
    """Reads what the client sends (a TLS ClientHello) and never answers."""
    connection.recv(65536)
    stop.wait(30)


@pytest.fixture
def raw_server():
    servers = []

    def start(serve, host: str = "127.0.0.1") -> RawServer:
        servers.append(RawServer(serve, host))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def slow_dns(monkeypatch, seconds: float) -> None:
    """``slow.example`` resolves to 127.0.0.1 after ``seconds``; other names as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "slow.example":
            time.sleep(seconds)
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def failure_and_seconds(fetcher: Fetcher, url: str) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(FetchError) as failure:
        fetcher.fetch(url)
    return str(failure.value), time.monotonic() - started


# ------------------------------------------------------------------ every phase ends by the deadline
def test_headers_sent_one_byte_at_a_time_end_by_the_deadline(raw_server):
    server = raw_server(drip_head)
    fetcher = Fetcher(timeout_s=5, retries=2, backoff_s=0.01, deadline_s=2, allow_private_networks=True)
    message, seconds = failure_and_seconds(fetcher, f"http://127.0.0.1:{server.port}/a.png")
    assert message == "deadline of 2 s exceeded (awaiting the response)"
    assert seconds < 6  # the headers alone take 25 s to arrive


def test_a_resolver_that_hangs_ends_by_the_deadline(raw_server, monkeypatch):
    server = raw_server(never_answer)
    slow_dns(monkeypatch, 8)
    fetcher = Fetcher(timeout_s=30, retries=2, backoff_s=0.01, deadline_s=1, allow_private_networks=True)
    message, seconds = failure_and_seconds(fetcher, f"http://slow.example:{server.port}/a.png")
    assert message == "deadline of 1 s exceeded (name resolution)"
    assert seconds < 5


def test_a_tls_handshake_that_never_completes_ends_by_the_deadline(raw_server, monkeypatch):
    """Resolving takes most of the deadline; the handshake may only have what is left of it."""
    server = raw_server(never_answer)
    slow_dns(monkeypatch, 2.5)
    fetcher = Fetcher(timeout_s=30, retries=2, backoff_s=0.01, deadline_s=3, allow_private_networks=True)
    message, seconds = failure_and_seconds(fetcher, f"https://slow.example:{server.port}/a.png")
    assert message == "deadline of 3 s exceeded (TLS handshake)"
    assert seconds < 4.5  # resolving (2.5 s) plus a full handshake timeout would take 5.5 s


# ------------------------------------------------------------------ the per-host gate
class SlowHandler(Handler):
    """Handler plus /slow.png: an image after 0.5 s; ``peak`` is the most requests it served at once."""

    lock = threading.Lock()
    active = peak = 0

    def _route_slow(self, path: str, query: str):
        with self.lock:
            SlowHandler.active += 1
            SlowHandler.peak = max(SlowHandler.peak, SlowHandler.active)
        time.sleep(0.5)
        with self.lock:
            SlowHandler.active -= 1
        self._send(200, PNG_BYTES, "image/png")


@pytest.fixture
def slow_server():
    """A SlowHandler server on 127.0.0.2 (another loopback host than the usual 127.0.0.1)."""
    httpd = ThreadingHTTPServer(("127.0.0.2", 0), SlowHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    SlowHandler.peak = 0
    yield f"http://127.0.0.2:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server():
    httpd, port = start_server()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()


def outcomes(fetcher: Fetcher, urls: list[str]) -> list[str]:
    """Each URL fetched on its own thread, all at once: ``ok`` or the error message."""
    def one(url: str) -> str:
        try:
            return "ok" if fetcher.fetch(url) == PNG_BYTES else "wrong bytes"
        except FetchError as exc:
            return str(exc)

    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(one, urls))


def test_a_slow_host_rate_queues_downloads_instead_of_failing_them(server):
    """40 downloads of one host at 10 starts a second with a 1 s deadline: each waits its turn (about 4 s
    for the last), none fails, and a download after them starts at once (no start booked by a download
    that gave up)."""
    fetcher = Fetcher(timeout_s=5, retries=0, deadline_s=1, per_host_rate=10, allow_private_networks=True)
    started = time.monotonic()
    assert outcomes(fetcher, [f"{server}/ok.png?n={i}" for i in range(40)]) == ["ok"] * 40
    assert time.monotonic() - started > 3.5  # the pace held: 39 intervals of 0.1 s
    started = time.monotonic()
    assert fetcher.fetch(f"{server}/ok.png?n=last") == PNG_BYTES
    assert time.monotonic() - started < 1.5


def test_waiting_for_a_free_slot_does_not_use_up_the_deadline(slow_server):
    """One download at a time on the host, 0.5 s each, 5 at once, 1.5 s deadline: all succeed in turn."""
    fetcher = Fetcher(timeout_s=5, retries=0, deadline_s=1.5, per_host_workers=1, allow_private_networks=True)
    assert outcomes(fetcher, [f"{slow_server}/slow.png?n={i}" for i in range(5)]) == ["ok"] * 5
    assert SlowHandler.peak == 1


def test_a_redirect_hop_takes_a_slot_of_its_own_host(server, slow_server):
    """One download at a time per host: a download redirected to 127.0.0.2 and one going there directly
    must not talk to 127.0.0.2 at the same time."""
    fetcher = Fetcher(timeout_s=5, retries=0, deadline_s=10, per_host_workers=1, allow_private_networks=True)
    urls = [server + redirect_path(f"{slow_server}/slow.png?via=redirect"), f"{slow_server}/slow.png?n=direct"]
    assert outcomes(fetcher, urls) == ["ok", "ok"]
    assert SlowHandler.peak == 1


def test_a_redirect_hop_is_paced_by_its_own_host(server, slow_server):
    """Two starts a second per host: a download redirected to 127.0.0.2 right after a direct one there
    waits for 127.0.0.2's next start, 0.5 s after the first."""
    fetcher = Fetcher(timeout_s=5, retries=0, deadline_s=10, per_host_rate=2, allow_private_networks=True)
    started = time.monotonic()
    assert fetcher.fetch(f"{slow_server}/ok.png?n=direct") == PNG_BYTES
    assert fetcher.fetch(server + redirect_path(f"{slow_server}/ok.png?via=redirect")) == PNG_BYTES
    assert time.monotonic() - started > 0.45
