"""The download engine against a loopback HTTP server playing an image host (tests/http_fixtures.py).

Tests that exercise the address guard run under ``loopback_only``: any connect to a non-loopback address
raises AssertionError, so a guard that failed makes the test fail instead of sending a packet.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from http_fixtures import (
    PNG_BYTES,
    Handler,
    fake_getaddrinfo,
    redirect_path,
    refuse_non_loopback,
    start_server,
    tls_context,
)

from curate.http import Fetcher, FetchError, parse_retry_after
from curate.netguard import address_problem as _address_problem


def default_policy_plus_test_server(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return str(ip) == "127.0.0.1" or _address_problem(ip) is None


@pytest.fixture(scope="module")
def server():
    httpd, port = start_server()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()


@pytest.fixture
def loopback_only(monkeypatch) -> list:
    """Every address a socket dials, in order; a non-loopback one raises AssertionError before any packet."""
    dialled = []
    real_connect, real_create = socket.socket.connect, socket.create_connection

    def connect(sock, address):
        dialled.append(address)
        refuse_non_loopback(address)
        return real_connect(sock, address)

    def create_connection(address, *args, **kwargs):
        refuse_non_loopback(address)
        return real_create(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return dialled


@pytest.fixture
def fake_dns(monkeypatch) -> tuple[dict[str, list[list[str]]], Counter]:
    table: dict[str, list[list[str]]] = {}
    calls: Counter[str] = Counter()
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(table, calls, socket.getaddrinfo))
    return table, calls


def loopback_fetcher(monkeypatch, **kwargs) -> Fetcher:
    """A Fetcher with the default address policy, except that 127.0.0.1 (the test server) is allowed."""
    fetcher = Fetcher(**{"timeout_s": 5, "retries": 0, **kwargs})
    monkeypatch.setattr(fetcher, "_address_allowed", default_policy_plus_test_server)
    return fetcher


# ------------------------------------------------------------------ ordinary behaviour
def test_fetch_ok_and_retry_on_503(server):
    fetcher = Fetcher(timeout_s=5, retries=3, max_bytes=1000, backoff_s=0.01, allow_private_networks=True)
    assert fetcher.fetch(f"{server}/ok.png") == PNG_BYTES
    assert fetcher.fetch(f"{server}/flaky.png") == PNG_BYTES
    assert Handler.hits["/flaky.png"] == 3


@pytest.mark.parametrize("path, message", [("/missing.png", "HTTP 404"), ("/page.html", "not an image"),
                                           ("/big.png", "too large")])
def test_fetch_failures_name_the_problem(server, path, message):
    with pytest.raises(FetchError, match=message):
        Fetcher(timeout_s=5, retries=0, max_bytes=1000, allow_private_networks=True).fetch(server + path)


def test_unreachable_server_fails_after_retries():
    with pytest.raises(FetchError, match="after 2 attempts"):
        Fetcher(timeout_s=1, retries=1, backoff_s=0.01, allow_private_networks=True).fetch("http://127.0.0.1:9/x.png")


def test_sends_user_agent_and_decodes_gzip_anyway(server):
    fetcher = Fetcher(timeout_s=5, retries=0, user_agent="curate-test", allow_private_networks=True)
    assert fetcher.fetch(f"{server}/gzip.png") == PNG_BYTES
    sent = Handler.headers_seen["/gzip.png"]
    assert (sent["User-Agent"], sent["Accept-Encoding"]) == ("curate-test", "identity")


# ------------------------------------------------------------------ defect 1: malformed responses, bad URLs
@pytest.mark.parametrize("path, message", [
    ("/chunked-truncated.png", "IncompleteRead"),
    ("/duplicate-length.png", "Content-Length contained multiple unmatching values"),
    ("/bad-status-line.png", "BadStatusLine"),
    ("/to-ftp", "redirect to unsupported scheme 'ftp'"),
    ("/loop-a", re.escape("too many redirects (max 5)")),
    ("/hops/6", re.escape("too many redirects (max 5)")),
])
def test_malformed_responses_become_fetch_errors(server, path, message):
    with pytest.raises(FetchError, match=message):
        Fetcher(timeout_s=5, retries=1, backoff_s=0.01, allow_private_networks=True).fetch(server + path)


def test_redirects_up_to_max_redirects_are_followed(server):
    fetcher = Fetcher(timeout_s=5, retries=0, max_redirects=5, allow_private_networks=True)
    assert fetcher.fetch(f"{server}/hops/5") == PNG_BYTES


@pytest.mark.parametrize("url, message", [
    ("http://", "No host"), ("http://[::1/x.png", "bad URL: Invalid IPv6 URL"),
    ("http://" + "a" * 300 + ".com/x.png", "label empty or too long"), ("http://example.com:99999/x.png", "parse"),
    ("http://exa mple/x.png", "invalid character"), ("gopher://example.com/x", "unsupported URL scheme 'gopher'"),
])
def test_bad_urls_become_fetch_errors(loopback_only, url, message):
    with pytest.raises(FetchError, match=message):
        Fetcher(timeout_s=1, retries=1, backoff_s=0.01).fetch(url)
    assert loopback_only == []


# ------------------------------------------------------------------ defect 2: wall-clock deadline
@pytest.mark.parametrize("path", ["/drip.png", "/silent.png"])
def test_deadline_bounds_a_dripping_or_silent_server(server, path):
    started = time.monotonic()
    with pytest.raises(FetchError, match="deadline of 2 s exceeded"):
        Fetcher(timeout_s=30, retries=2, backoff_s=0.01, deadline_s=2, allow_private_networks=True).fetch(server + path)
    assert 1.5 < time.monotonic() - started < 10


def test_never_sleeps_past_the_deadline(server):
    started = time.monotonic()
    with pytest.raises(FetchError, match="would pass the 5 s deadline"):
        Fetcher(timeout_s=5, retries=3, deadline_s=5, allow_private_networks=True).fetch(f"{server}/retry-late.png")
    assert time.monotonic() - started < 2
    assert Handler.hits["/retry-late.png"] == 1


# ------------------------------------------------------------------ defect 3: file:// URLs
def test_file_urls_only_inside_the_source_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.png").write_bytes(PNG_BYTES)
    assert Fetcher().fetch((root / "a.png").as_uri(), file_root=root) == PNG_BYTES
    with pytest.raises(FetchError, match="cannot read"):
        Fetcher().fetch((root / "absent.png").as_uri(), file_root=root)
    with pytest.raises(FetchError, match="only allowed for sources of local files"):
        Fetcher().fetch((root / "a.png").as_uri())


def test_file_urls_outside_the_root_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG_BYTES)
    (root / "link.png").symlink_to(secret)
    for url in (secret.as_uri(), (root / "link.png").as_uri(), f"file://{root}/../secret.png"):
        with pytest.raises(FetchError, match="outside the source root"):
            Fetcher().fetch(url, file_root=root)


@pytest.mark.parametrize("suffix, message", [("/a%00b.png", "NUL byte"), ("/a%FF.png", "not UTF-8")])
def test_undecodable_file_urls_are_refused(tmp_path, suffix, message):
    with pytest.raises(FetchError, match=message):
        Fetcher().fetch(tmp_path.as_uri() + suffix, file_root=tmp_path)
    with pytest.raises(FetchError, match="remote host"):
        Fetcher().fetch("file://fileserver/share/a.png", file_root=tmp_path)


# ------------------------------------------------------------------ defect 4: address guard
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_is_refused_by_default_before_connecting(server, loopback_only, host):
    hits = Handler.hits["/ok.png"]
    with pytest.raises(FetchError, match=r"^refused: (127\.0\.0\.1|::1) is a loopback address$"):
        Fetcher(retries=2).fetch(server.replace("127.0.0.1", host) + "/ok.png")
    assert loopback_only == [] and Handler.hits["/ok.png"] == hits


@pytest.mark.parametrize("target, message", [
    ("http://10.255.255.1/x.png", "10.255.255.1 is a private address"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
    ("http://[fe80::1]/x", "fe80::1 is a link-local address"),
    ("http://[fd12::1]/x", "fd12::1 is a private address"),
    ("http://[::ffff:10.0.0.1]/x", "::ffff:a00:1 is a private address"),
    ("http://224.0.0.1/x", "224.0.0.1 is a multicast address"),
    ("http://0.0.0.0/x", "0.0.0.0 is an unspecified address"),
    ("http://240.0.0.1/x", "240.0.0.1 is a reserved address"),
])
def test_every_redirect_hop_is_checked(server, loopback_only, monkeypatch, target, message):
    fetcher = loopback_fetcher(monkeypatch, retries=2)
    with pytest.raises(FetchError, match=f"^refused: {re.escape(message)}$"):
        fetcher.fetch(server + redirect_path(target))
    assert [address[0] for address in loopback_only] == ["127.0.0.1"]


def test_a_name_resolving_to_any_private_address_is_refused(server, loopback_only, fake_dns, monkeypatch):
    table, _ = fake_dns
    table["images.example"] = [["93.184.216.34", "10.0.0.7"]]
    with pytest.raises(FetchError, match=r"^refused: 10\.0\.0\.7 is a private address$"):
        loopback_fetcher(monkeypatch).fetch("http://images.example/x.png")
    assert loopback_only == []


def test_dials_the_address_it_checked_dns_rebinding(server, loopback_only, fake_dns, monkeypatch):
    table, calls = fake_dns
    table["rebind.example"] = [["127.0.0.1"], ["10.0.0.7"]]  # a second lookup would answer a private address
    port = server.rsplit(":", 1)[1]
    assert loopback_fetcher(monkeypatch).fetch(f"http://rebind.example:{port}/ok.png") == PNG_BYTES
    assert calls["rebind.example"] == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_verifies_the_hostname_while_dialling_the_checked_ip(tmp_path, loopback_only, fake_dns, monkeypatch):
    context, cert = tls_context(tmp_path, "images.example")
    httpd, port = start_server(tls=context)
    table, _ = fake_dns
    table["images.example"] = table["other.example"] = [["127.0.0.1"]]
    fetcher = loopback_fetcher(monkeypatch, retries=2, backoff_s=0.01)
    fetcher.ca_certs = str(cert)
    try:
        assert fetcher.fetch(f"https://images.example:{port}/ok.png") == PNG_BYTES
        with pytest.raises(FetchError, match="not valid for 'other.example'"):
            fetcher.fetch(f"https://other.example:{port}/ok.png")
    finally:
        httpd.shutdown()


@pytest.mark.parametrize("address, problem", [
    ("127.0.0.2", "a loopback address"), ("::1", "a loopback address"), ("192.168.1.1", "a private address"),
    ("172.16.0.1", "a private address"), ("fc00::1", "a private address"), ("100.64.0.1", "a non-global address"),
    ("169.254.169.254", "a link-local address"), ("ff02::1", "a multicast address"), ("::", "an unspecified address"),
    ("93.184.216.34", None), ("2606:4700::1", None),
    ("2002:7f00:1::1", "a 6to4 tunnel address"), ("2002:a00:1::1", "a 6to4 tunnel address"),
    ("fec0::1", "a site-local address"), ("::ffff:10.0.0.1", "a private address"),
])
def test_address_classification(address, problem):
    assert _address_problem(ipaddress.ip_address(address)) == problem


# ------------------------------------------------------------------ defect 5: Retry-After and what is retried
def test_retry_after_http_date_is_honoured(server):
    started = time.monotonic()
    fetcher = Fetcher(timeout_s=5, retries=2, backoff_s=0.01, allow_private_networks=True)
    assert fetcher.fetch(f"{server}/retry-date.png") == PNG_BYTES
    assert time.monotonic() - started >= 0.8
    assert Handler.hits["/retry-date.png"] == 2


NOW = datetime(2026, 10, 21, 7, 28, tzinfo=UTC)


@pytest.mark.parametrize("value, seconds", [
    ("7", 7.0), ("0", 0.0), ("3600", 60.0), ("Wed, 21 Oct 2026 07:28:30 GMT", 30.0),
    ("Wed, 21 Oct 2026 07:27:00 GMT", 0.0), ("Wed, 21 Oct 2026 09:00:00 GMT", 60.0),
    ("-5", None), ("1.5", None), ("soon", None), ("", None), (None, None),
])
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("code, attempts", [(404, 1), (403, 1), (410, 1), (501, 1), (429, 3), (500, 3), (502, 3),
                                            (504, 3)])
def test_only_transient_statuses_are_retried(server, code, attempts):
    with pytest.raises(FetchError, match=f"HTTP {code}"):
        Fetcher(timeout_s=5, retries=2, backoff_s=0.01, allow_private_networks=True).fetch(f"{server}/status/{code}")
    assert Handler.hits[f"/status/{code}"] == attempts


def test_a_kept_alive_connection_the_server_closed_is_not_a_failure(loopback_only):
    """The server answers on a kept-alive connection, then closes it when the next request arrives (as a
    keep-alive timeout does): the fetcher sends that GET again on a new connection, even with no retries."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: " + str(len(PNG_BYTES)).encode()
              + b"\r\n\r\n" + PNG_BYTES)
    requests_seen = []

    def serve():
        first, _ = listener.accept()
        requests_seen.append(first.recv(65536))
        first.sendall(answer)
        requests_seen.append(first.recv(65536))  # the second request, on the same connection ...
        first.close()  # ... is dropped without a response
        second, _ = listener.accept()
        requests_seen.append(second.recv(65536))
        second.sendall(answer)
        second.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    fetcher = Fetcher(timeout_s=5, retries=0, deadline_s=10, allow_private_networks=True)
    try:
        assert fetcher.fetch(f"http://127.0.0.1:{port}/a.png") == PNG_BYTES
        assert fetcher.fetch(f"http://127.0.0.1:{port}/b.png") == PNG_BYTES
    finally:
        thread.join(timeout=10)
        listener.close()
    assert [r.split(b" ")[1] for r in requests_seen] == [b"/a.png", b"/b.png", b"/b.png"]
