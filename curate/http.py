"""The download engine's fetcher: candidate bytes over HTTP(S) with ``urllib3``, or from ``file://`` URLs.

Reads: ``http(s)://`` URLs; ``file://`` URLs only when the caller passes ``file_root`` (only the ``local``
and ``imagefolder`` sources do), and then only for paths that resolve, symlinks followed, inside that root
(or, for a tree built of links, that the tree names: :class:`FileRoot`). Writes: nothing
(the caller stores what it gets).

HTTP: one guarded urllib3 pool manager shared by the worker threads (environment proxies ignored: a proxy would resolve
hosts beyond the address guard). Every connection, redirect hops included, resolves the host itself, refuses
the hop when any resolved address is loopback, private, link-local (cloud metadata), multicast, unspecified,
reserved or otherwise non-global (unless ``allow_private_networks``), then dials the checked IP, so DNS
rebinding cannot slip between check and connect; TLS still verifies the hostname. At most ``max_redirects``
redirects, to http(s) only. Retries with exponential backoff plus jitter on connection errors and HTTP 429,
500, 502, 503, 504, honouring ``Retry-After`` (seconds or HTTP date, clamped to [0, 60] s); other statuses
are final. ``deadline_s`` bounds the whole download, all attempts and waits included: the body is read as
bytes arrive, the deadline checked before every read, and no read or wait may outlast it. Asks for an
unencoded body but decodes gzip/deflate anyway. Byte cap on the declared length, while streaming and after
decoding; content types other than ``image/*`` and ``application/octet-stream`` are rejected.

On failure: raises :class:`FetchError` (never anything else for a per-URL problem) with a short message that
becomes the candidate's ``error`` column, e.g. ``refused: 10.0.0.1 is a private address``,
``too many redirects (max 5)``, ``deadline of 60 s exceeded``, ``HTTP 404``.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import random
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family, create_connection

REDIRECT_STATUS = {301, 302, 303, 307, 308}
RETRY_STATUS = {429, 500, 502, 503, 504}
RETRY_AFTER_MAX_S = 60.0
READ_CHUNK = 64 * 1024
MAX_MESSAGE = 200

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], bool]

# Everything below fetch() that a bad URL, host or response can raise; each becomes a FetchError.
_URL_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError)
# The transient ones among them, worth another attempt.
_TRANSIENT = (urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class FileRoot:
    """Where a source's ``file://`` URLs may point. By default a file must lie below ``path`` once every
    symbolic link is resolved. With ``links_out`` a file need only be *named* below ``path`` (the path as
    written, ``..`` normalised away, links not followed) and may be a link, or lie in a linked folder,
    leading elsewhere: a dataset built as a view of links into another copy, as torchvision's ImageFolder
    reads it. Either way nothing that the source's own tree does not name is ever read."""

    path: Path
    links_out: bool = False

    def admits(self, named: Path, resolved: Path) -> bool:
        if self.links_out:
            return Path(os.path.abspath(named)).is_relative_to(os.path.abspath(self.path))
        return resolved.is_relative_to(Path(self.path).resolve())


class FetchError(Exception):
    """A candidate could not be fetched; the message says why (retryable failures were retried already)."""


class _Refused(FetchError):
    """The address guard refused to dial a resolved address."""


class _Retryable(Exception):
    def __init__(self, message: str, wait_s: float | None):
        super().__init__(message)
        self.wait_s = wait_s


class Fetcher:
    """Fetches candidate URLs; one instance serves all download workers (a pooled session per thread)."""

    def __init__(self, timeout_s: float = 20.0, retries: int = 2, max_bytes: int = 25_000_000,
                 user_agent: str = "curate", backoff_s: float = 0.5, deadline_s: float = 60.0,
                 max_redirects: int = 5, allow_private_networks: bool = False, per_host_workers: int = 0,
                 per_host_rate: float = 0.0, respect_noai: bool = True):
        self.hosts = HostGate(per_host_workers, per_host_rate)
        self.respect_noai = respect_noai
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self.backoff_s = backoff_s
        self.deadline_s = deadline_s
        self.max_redirects = max_redirects
        self.allow_private_networks = allow_private_networks
        self.ca_certs: str | None = None  # a CA bundle other than certifi's (tests, private CAs)
        self._headers = {"User-Agent": user_agent, "Accept-Encoding": "identity", "Accept": "image/*,*/*;q=0.5"}
        self._pool_lock = threading.Lock()
        self._pool_manager: urllib3.PoolManager | None = None

    def fetch(self, url: str, file_root: Path | FileRoot | None = None) -> bytes:
        """The bytes behind ``url``; ``file_root`` admits ``file://`` URLs below it (the local source)."""
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError as exc:
            raise FetchError(f"bad URL: {exc}") from None
        if scheme == "file":
            return self._read_file(url, file_root)
        if scheme in ("http", "https"):
            return self._fetch_http(url)
        raise FetchError(f"unsupported URL scheme {scheme!r}")

    def _read_file(self, url: str, file_root: Path | FileRoot | None) -> bytes:
        if file_root is None:
            raise FetchError("file:// URLs are only allowed for sources of local files")
        root = file_root if isinstance(file_root, FileRoot) else FileRoot(Path(file_root))
        path = _file_url_path(url)
        try:
            resolved = path.resolve()
            if not root.admits(path, resolved):
                raise FetchError(f"{path} is outside the source root")
            size = resolved.stat().st_size
            if size > self.max_bytes:
                raise FetchError(f"file too large: {size} bytes (max {self.max_bytes})")
            return resolved.read_bytes()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise FetchError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None

    def _pool(self) -> urllib3.PoolManager:
        """One guarded urllib3 pool manager for all threads of this fetcher (urllib3 pools are thread-safe):
        downloads skip requests' per-request work (preparing, merging settings, hooks), about a millisecond
        of CPU per image; the web-API sources keep requests."""
        with self._pool_lock:
            if self._pool_manager is None:
                import certifi

                self._pool_manager = _GuardedPoolManager(
                    self._address_allowed, num_pools=64, maxsize=32, block=False,
                    cert_reqs="CERT_REQUIRED", ca_certs=self.ca_certs or certifi.where(),
                )
            return self._pool_manager

    def _address_allowed(self, ip: IPAddress) -> bool:
        """The policy every connection applies to each resolved address before dialling (tests narrow it)."""
        return self.allow_private_networks or _address_problem(ip) is None

    def _fetch_http(self, url: str) -> bytes:
        deadline = time.monotonic() + self.deadline_s
        for attempt in range(1, self.retries + 2):
            try:
                return self._attempt(url, deadline)
            except _Retryable as exc:
                self._pause(exc, attempt, deadline)
        raise AssertionError("unreachable")

    def _pause(self, exc: _Retryable, attempt: int, deadline: float) -> None:
        """Wait before the next attempt; raise when none is left or the wait would reach the deadline."""
        done = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(f"{exc} ({done}; deadline of {self.deadline_s:g} s exceeded)")
        if attempt > self.retries:
            raise FetchError(f"{exc} ({done})")
        wait = exc.wait_s
        if wait is None:
            wait = self.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
        if wait >= left:
            raise FetchError(f"{exc} ({done}; waiting {wait:.1f} s would pass the {self.deadline_s:g} s deadline)")
        time.sleep(wait)

    def _attempt(self, url: str, deadline: float) -> bytes:
        try:
            with self.hosts.slot(urlsplit(url).hostname or "", deadline):
                return self._follow(url, deadline)
        except _URL_ERRORS as exc:
            raise _classify(exc) from None

    def _follow(self, url: str, deadline: float) -> bytes:
        """GET ``url``, following at most ``max_redirects`` redirects; every hop passes the address guard."""
        pool = self._pool()
        for _hop in range(self.max_redirects + 1):
            resp = self._open(pool, url, deadline)
            complete = False
            try:
                location = resp.headers.get("Location") if resp.status in REDIRECT_STATUS else None
                if location is None:
                    body = self._accept(resp, deadline)
                    complete = True
                    return body
                url = _redirect_url(url, location)
            finally:  # a connection whose body was read goes back to the pool; any other is closed
                resp.release_conn() if complete else resp.close()
        raise FetchError(f"too many redirects (max {self.max_redirects})")

    def _open(self, pool: urllib3.PoolManager, url: str, deadline: float) -> urllib3.BaseHTTPResponse:
        """One GET. A kept-alive connection that the server closes as the request arrives (its keep-alive
        timeout ran out while the connection sat in the pool) fails without any response
        (``RemoteDisconnected``); a GET is safe to repeat, so it is sent once more at once on another
        connection, outside the retry budget, as browsers do."""
        for again in (True, False):
            timeout = min(self.timeout_s, self._time_left(deadline))
            try:
                return pool.urlopen("GET", url, headers=self._headers, redirect=False, retries=False,
                                    preload_content=False, timeout=urllib3.Timeout(connect=timeout, read=timeout))
            except urllib3.exceptions.ProtocolError as exc:
                if not (again and any(isinstance(e, http.client.RemoteDisconnected) for e in _causes(exc))):
                    raise
        raise AssertionError("unreachable")

    def _accept(self, resp: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        if resp.status in RETRY_STATUS:
            raise _Retryable(f"HTTP {resp.status}", parse_retry_after(resp.headers.get("Retry-After")))
        if resp.status != 200:
            raise FetchError(f"HTTP {resp.status}")
        kind = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind and not kind.startswith("image/") and kind != "application/octet-stream":
            raise FetchError(f"not an image: Content-Type {kind}")
        if self.respect_noai and (opt_out := noai_directive(resp.headers.get("X-Robots-Tag", ""))):
            raise FetchError(f"the host opts out of AI use: X-Robots-Tag {opt_out}")
        body = self._read_body(resp, deadline)
        if not looks_like_image(body):
            raise FetchError(f"not an image: the content starts with {body[:8]!r}")
        return body

    def _read_body(self, resp: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        declared = resp.length_remaining
        if declared is not None and declared > self.max_bytes:
            raise FetchError(f"too large: {declared} bytes (max {self.max_bytes})")
        chunks, total = [], 0
        while chunk := self._read_some(resp, deadline):
            total += len(chunk)
            if total > self.max_bytes:
                raise FetchError(f"too large: over {self.max_bytes} bytes")
            chunks.append(chunk)
        return _decode_body(b"".join(chunks), resp.headers.get("Content-Encoding", ""), self.max_bytes)

    def _read_some(self, raw: urllib3.HTTPResponse, deadline: float) -> bytes:
        """Whatever body bytes arrive next (up to 64 KiB), waiting no longer than the time left."""
        timeout = min(self.timeout_s, self._time_left(deadline))
        sock = getattr(raw.connection, "sock", None)
        if sock is not None:
            sock.settimeout(timeout)
        return raw.read1(READ_CHUNK, decode_content=False) or b""

    def _time_left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(f"deadline of {self.deadline_s:g} s exceeded")
        return left


def _file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise FetchError(f"bad file URL: remote host {parts.netloc!r}")
    try:
        path = unquote(parts.path, errors="strict")
    except UnicodeDecodeError:
        raise FetchError("bad file URL: path is not UTF-8") from None
    if "\x00" in path:
        raise FetchError("bad file URL: NUL byte in path")
    return Path(path)


def _redirect_url(base: str, location: str) -> str:
    url = urljoin(base, location)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(f"redirect to unsupported scheme {scheme!r}")
    return url


def _decode_body(data: bytes, encoding: str, max_bytes: int) -> bytes:
    """Undo a gzip/deflate Content-Encoding, capped at ``max_bytes`` of output."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise FetchError(f"unsupported Content-Encoding {encoding}")
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
    try:
        body = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise FetchError(f"bad {encoding} body: {exc}") from None
    if len(body) > max_bytes:
        raise FetchError(f"too large: over {max_bytes} bytes decoded")
    if not inflater.eof:
        raise FetchError(f"truncated {encoding} body")
    return body


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait for a ``Retry-After`` value (seconds or HTTP date), clamped to [0, 60]; None if unusable."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def _address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is not dialled by default (``"a private address"``), or None for a global unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and (ip.sixtofour is not None or ip.is_site_local):
        # 6to4 (2002::/16, deprecated by RFC 7526) tunnels to the IPv4 address it embeds, a private one included;
        # site-local (fec0::/10, deprecated by RFC 3879) is still routed inside some networks. Python calls both
        # global.
        return "a 6to4 tunnel address" if ip.sixtofour is not None else "a site-local address"
    kinds = (("a loopback", ip.is_loopback), ("a link-local", ip.is_link_local),
             ("an unspecified", ip.is_unspecified), ("a multicast", ip.is_multicast),
             ("a reserved", ip.is_reserved), ("a private", ip.is_private), ("a non-global", not ip.is_global))
    return next((f"{kind} address" for kind, hit in kinds if hit), None)


def _classify(exc: BaseException) -> FetchError | _Retryable:
    """The FetchError (final) or _Retryable (transient) for an exception from urllib3 or sockets."""
    chain = list(_causes(exc))
    refusal = next((e for e in chain if isinstance(e, _Refused)), None)
    if refusal is not None:
        return FetchError(str(refusal))
    message = _describe(chain[-1])
    if isinstance(exc, _TRANSIENT) and not any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        return _Retryable(message, None)
    return FetchError(message)


def _describe(root: BaseException) -> str:
    name, text = type(root).__name__, str(root).strip()
    return (text if text.startswith(name) else f"{name}: {text}" if text else name)[:MAX_MESSAGE]


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (``__cause__``, urllib3's ``reason``, exception args, ``__context__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, getattr(current, "reason", None), *current.args, current.__context__]
        current = next((e for e in wrapped if isinstance(e, BaseException)), None)


# ------------------------------------------------------------------ address guard (connection layer)
class _GuardedConnection:
    """Mixin for urllib3 connections: resolve, check every address, dial a checked IP (TLS keeps the name)."""

    def __init__(self, *args: Any, address_allowed: AddressPolicy, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.address_allowed = address_allowed

    def _new_conn(self) -> socket.socket:
        # Mirrors urllib3's HTTPConnection._new_conn, with the address check between resolving and dialling.
        try:
            addresses = _checked_addresses(self._dns_host, self.port, self.address_allowed)
            sock = _dial(addresses, self.port, self.timeout, self.source_address, self.socket_options)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        except TimeoutError as e:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from e
        except OSError as e:
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


class _GuardedHTTPConnection(_GuardedConnection, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


def _checked_addresses(host: str, port: int, allowed: AddressPolicy) -> list[str]:
    """Resolve ``host`` once; raise :class:`_Refused` unless ``allowed`` accepts every address."""
    infos = socket.getaddrinfo(host.strip("[]"), port, allowed_gai_family(), socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if not allowed(ip):
            raise _Refused(f"refused: {ip} is {_address_problem(ip) or 'not an allowed address'}")
    return addresses


def _dial(addresses: list[str], port: int, timeout: Any, source_address: tuple[str, int] | None,
          socket_options: Any) -> socket.socket:
    """Connect to the first of the (already checked) IP addresses that answers."""
    error: OSError | None = None
    for address in addresses:
        try:
            return create_connection((address, port), timeout, source_address=source_address,
                                     socket_options=socket_options)
        except OSError as exc:
            error = exc
    raise error or OSError(f"no address to dial on port {port}")


class _GuardedPoolManager(urllib3.PoolManager):
    """A pool manager whose pools build guarded connections."""

    def __init__(self, address_allowed: AddressPolicy, **kwargs: Any):
        super().__init__(**kwargs)
        self.address_allowed = address_allowed

    def _new_pool(self, scheme: str, host: str, port: int,
                  request_context: dict[str, Any] | None = None) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        guarded = _GuardedHTTPSConnection if scheme == "https" else _GuardedHTTPConnection
        pool.ConnectionCls = partial(guarded, address_allowed=self.address_allowed)
        return pool


# Leading bytes of the formats the store decodes (JPEG, PNG, GIF, WebP, BMP, TIFF).
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
NOAI_DIRECTIVES = ("noai", "noimageai")


def looks_like_image(body: bytes) -> bool:
    """Magic-byte check, before any decoder sees the bytes (servers label HTML error pages image/jpeg)."""
    return body.startswith(IMAGE_SIGNATURES) or (body[:4] == b"RIFF" and body[8:12] == b"WEBP")


def noai_directive(header: str) -> str | None:
    """The ``noai`` / ``noimageai`` directive of an ``X-Robots-Tag`` header, if any: directives are
    comma-separated and may be scoped to a crawler (``otherbot: noai``); a scope other than ours or
    all crawlers does not bind us."""
    for part in header.split(","):
        scope, _, directive = part.rpartition(":")
        if directive.strip().lower() in NOAI_DIRECTIVES and scope.strip().lower() in ("", "curate", "*"):
            return directive.strip().lower()
    return None


class HostGate:
    """Per-host politeness: at most ``workers`` downloads at once and at most ``rate`` starts per second
    for one host (0 = no limit). Waiting for a slot counts against the download's deadline."""

    def __init__(self, workers: int = 0, rate: float = 0.0):
        self.workers, self.interval_s = workers, (1.0 / rate if rate > 0 else 0.0)
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}
        self._next_start: dict[str, float] = {}

    @contextlib.contextmanager
    def slot(self, host: str, deadline: float) -> Iterator[None]:
        semaphore = self._semaphore(host)
        if semaphore is not None and not semaphore.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise FetchError(f"deadline exceeded waiting for a free slot on {host}")
        try:
            self._pace(host, deadline)
            yield
        finally:
            if semaphore is not None:
                semaphore.release()

    def _semaphore(self, host: str) -> threading.Semaphore | None:
        if self.workers <= 0:
            return None
        with self._lock:
            return self._slots.setdefault(host, threading.BoundedSemaphore(self.workers))

    def _pace(self, host: str, deadline: float) -> None:
        if not self.interval_s:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start.get(host, now))
            self._next_start[host] = start + self.interval_s
        if start > deadline:
            raise FetchError(f"deadline exceeded waiting for the rate limit of {host}")
        time.sleep(max(0.0, start - now))
