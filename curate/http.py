"""The download engine's fetcher: candidate bytes over HTTP(S) with ``urllib3``, or from ``file://`` URLs.

Reads: ``http(s)://`` URLs; ``file://`` URLs only when the caller passes ``file_root`` (only the ``local``
and ``imagefolder`` sources do), and then only for paths that resolve, symlinks followed, inside that root
(or, for a tree built of links, that the tree names: :class:`FileRoot`), and only regular files (checked on
the opened descriptor: a FIFO, a device such as ``/dev/zero`` or a folder is refused), at most ``max_bytes``
of them, within ``deadline_s``. Writes: nothing (the caller stores what it gets).

HTTP: one guarded urllib3 pool manager shared by the worker threads (environment proxies ignored: a proxy would resolve
hosts beyond the address guard). Every connection, redirect hops included, passes the address guard of
:mod:`curate.netguard` (loopback, private, link-local and other non-global addresses refused unless
``allow_private_networks``; the checked IP is dialled). At most ``max_redirects`` redirects, to http(s)
only. Retries with exponential backoff plus jitter on connection errors and HTTP 429, 500, 502, 503, 504,
honouring ``Retry-After`` (seconds or HTTP date, clamped to [0, 60] s); other statuses are final.

Deadline: ``deadline_s`` bounds the whole download by the wall clock, all attempts, hops and retry waits
included, and every phase of every exchange ends by it: name resolution, connecting, the TLS handshake,
the status line and headers and the body (:mod:`curate.netclock`: each socket wait is cut to the time
left, however slowly the bytes arrive), and no retry wait may outlast it. Not counted: the time a download
queues for its host's politeness limits (``per_host_workers``, ``per_host_rate``; :mod:`curate.hostgate`),
which apply to every exchange's host, redirect hops and retries included. A download waits its turn
instead of failing: the limits are the user's choice of pace, not a property of the candidate.

Asks for an unencoded body but decodes gzip/deflate anyway. Byte cap on the declared length, while
streaming and after decoding; content types other than ``image/*`` and ``application/octet-stream`` are
rejected.

On failure: raises :class:`FetchError` (never anything else for a per-URL problem) with a short message that
becomes the candidate's ``error`` column, e.g. ``refused: 10.0.0.1 is a private address``,
``too many redirects (max 5)``, ``deadline of 60 s exceeded (awaiting the response)``, ``HTTP 404``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import ssl
import stat
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import urllib3

from curate.hostgate import HostGate
from curate.netclock import AWAITING, Deadline, DeadlineExceeded, causes, clocked_ssl_context
from curate.netguard import GuardedPoolManager, IPAddress, Refused, address_problem

REDIRECT_STATUS = {301, 302, 303, 307, 308}
RETRY_STATUS = {429, 500, 502, 503, 504}
RETRY_AFTER_MAX_S = 60.0
READ_CHUNK = 64 * 1024
FILE_CHUNK = 1024 * 1024
MAX_MESSAGE = 200
NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))

# Everything below fetch() that a bad URL, host or response can raise; each becomes a FetchError.
_URL_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError, Refused)
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

    # ------------------------------------------------------------------ file://
    def _read_file(self, url: str, file_root: Path | FileRoot | None) -> bytes:
        if file_root is None:
            raise FetchError("file:// URLs are only allowed for sources of local files")
        root = file_root if isinstance(file_root, FileRoot) else FileRoot(Path(file_root))
        path = _file_url_path(url)
        try:
            resolved = path.resolve()
            if not root.admits(path, resolved):
                raise FetchError(f"{path} is outside the source root")
            return self._read_regular(resolved, path, Deadline(self.deadline_s))
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            from curate.machine import is_machine_error

            if is_machine_error(exc):  # a full disk, too many open files: the machine's fault, not the file's
                raise
            raise FetchError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None

    def _read_regular(self, resolved: Path, path: Path, deadline: Deadline) -> bytes:
        """The bytes of the regular file at ``resolved`` (``path`` as named), at most ``max_bytes``, by the
        deadline. Opened without blocking (a FIFO would wait for a writer) and without following a link
        swapped in since it was resolved; the descriptor itself is checked, so what is read is what was
        checked."""
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(resolved, flags)
        try:
            mode, size = (info := os.fstat(fd)).st_mode, info.st_size
            kind = next((name for test, name in NOT_REGULAR if test(mode)), None if stat.S_ISREG(mode) else "special")
            if kind is not None:
                raise FetchError(f"cannot read {path}: not a regular file ({kind})")
            if size > self.max_bytes:
                raise FetchError(f"file too large: {size} bytes (max {self.max_bytes})")
            deadline.phase = "reading the file"
            chunks, total = [], 0
            while chunk := os.read(fd, min(FILE_CHUNK, self.max_bytes + 1 - total)):
                total += len(chunk)
                if total > self.max_bytes:
                    raise FetchError(f"file too large: over {self.max_bytes} bytes")
                chunks.append(chunk)
                deadline.left()
            return b"".join(chunks)
        except DeadlineExceeded as exc:
            raise FetchError(str(exc)) from None
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ http(s)://
    def _pool(self) -> urllib3.PoolManager:
        """One guarded urllib3 pool manager for all threads of this fetcher (urllib3 pools are thread-safe):
        downloads skip requests' per-request work (preparing, merging settings, hooks), about a millisecond
        of CPU per image; the web-API sources keep requests."""
        with self._pool_lock:
            if self._pool_manager is None:
                self._pool_manager = GuardedPoolManager(
                    self._address_allowed, num_pools=64, maxsize=32, block=False, cert_reqs="CERT_REQUIRED",
                    ssl_context=clocked_ssl_context(self.ca_certs),
                )
            return self._pool_manager

    def _address_allowed(self, ip: IPAddress) -> bool:
        """The policy every connection applies to each resolved address before dialling (tests narrow it)."""
        return self.allow_private_networks or address_problem(ip) is None

    def _fetch_http(self, url: str) -> bytes:
        deadline = Deadline(self.deadline_s)
        with deadline.applied():
            for attempt in range(1, self.retries + 2):
                try:
                    return self._attempt(url, deadline)
                except _Retryable as exc:
                    self._pause(exc, attempt, deadline)
        raise AssertionError("unreachable")

    def _pause(self, exc: _Retryable, attempt: int, deadline: Deadline) -> None:
        """Wait before the next attempt; raise when none is left or the wait would reach the deadline."""
        done = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
        left = deadline.at - time.monotonic()
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

    def _attempt(self, url: str, deadline: Deadline) -> bytes:
        try:
            return self._follow(url, deadline)
        except _URL_ERRORS as exc:
            from curate.machine import is_machine_error

            if (machine := next((e for e in causes(exc) if is_machine_error(e)), None)) is not None:
                raise machine from None  # no socket to be had (too many open files): the machine's fault
            raise _classify(exc) from None

    def _follow(self, url: str, deadline: Deadline) -> bytes:
        """GET ``url``, following at most ``max_redirects`` redirects; every hop passes the address guard and
        its own host's gate."""
        pool = self._pool()
        for _hop in range(self.max_redirects + 1):
            with self._host_slot(url, deadline):
                body, location = self._exchange(pool, url, deadline)
            if location is None:
                return body
            url = _redirect_url(url, location)
        raise FetchError(f"too many redirects (max {self.max_redirects})")

    @contextlib.contextmanager
    def _host_slot(self, url: str, deadline: Deadline) -> Iterator[None]:
        """A slot of the host's gate; the time queued for it moves the deadline (it is not the exchange's)."""
        with self.hosts.slot(urlsplit(url).hostname or "") as queued_s:
            deadline.extend(queued_s)
            yield

    def _exchange(self, pool: urllib3.PoolManager, url: str, deadline: Deadline) -> tuple[bytes, str | None]:
        """One GET: the body (and None), or a redirect's ``Location`` (and no body)."""
        resp = self._open(pool, url, deadline)
        complete = False
        try:
            location = resp.headers.get("Location") if resp.status in REDIRECT_STATUS else None
            if location is not None:
                return b"", location
            body = self._accept(resp, deadline)
            complete = True
            return body, None
        finally:  # a connection whose body was read goes back to the pool; any other is closed
            resp.release_conn() if complete else resp.close()

    def _open(self, pool: urllib3.PoolManager, url: str, deadline: Deadline) -> urllib3.BaseHTTPResponse:
        """One GET. A kept-alive connection that the server closes as the request arrives (its keep-alive
        timeout ran out while the connection sat in the pool) fails without any response
        (``RemoteDisconnected``); a GET is safe to repeat, so it is sent once more at once on another
        connection, outside the retry budget, as browsers do. The sockets keep every wait within the
        deadline; ``timeout_s`` bounds each wait besides."""
        for again in (True, False):
            deadline.phase = AWAITING
            timeout = min(self.timeout_s, deadline.left())
            try:
                return pool.urlopen("GET", url, headers=self._headers, redirect=False, retries=False,
                                    preload_content=False, timeout=urllib3.Timeout(connect=timeout, read=timeout))
            except urllib3.exceptions.ProtocolError as exc:
                if not (again and any(isinstance(e, http.client.RemoteDisconnected) for e in causes(exc))):
                    raise
        raise AssertionError("unreachable")

    def _accept(self, resp: urllib3.BaseHTTPResponse, deadline: Deadline) -> bytes:
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

    def _read_body(self, resp: urllib3.BaseHTTPResponse, deadline: Deadline) -> bytes:
        declared = resp.length_remaining
        if declared is not None and declared > self.max_bytes:
            raise FetchError(f"too large: {declared} bytes (max {self.max_bytes})")
        deadline.phase = "reading the body"
        chunks, total = [], 0
        while chunk := self._read_some(resp, deadline):
            total += len(chunk)
            if total > self.max_bytes:
                raise FetchError(f"too large: over {self.max_bytes} bytes")
            chunks.append(chunk)
        return _decode_body(b"".join(chunks), resp.headers.get("Content-Encoding", ""), self.max_bytes)

    def _read_some(self, raw: urllib3.HTTPResponse, deadline: Deadline) -> bytes:
        """Whatever body bytes arrive next (up to 64 KiB); the deadline is checked first (bytes already
        buffered need no socket wait) and the socket waits no longer than the time left."""
        deadline.left()
        return raw.read1(READ_CHUNK, decode_content=False) or b""


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


def _classify(exc: BaseException) -> FetchError | _Retryable:
    """The FetchError (final) or _Retryable (transient) for an exception from urllib3 or sockets."""
    chain = list(causes(exc))
    final = next((e for e in chain if isinstance(e, Refused | DeadlineExceeded)), None)
    if final is not None:  # a refused address, or a wait the deadline cut short: no attempt would do better
        return FetchError(str(final))
    message = _describe(chain[-1])
    if isinstance(exc, _TRANSIENT) and not any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        return _Retryable(message, None)
    return FetchError(message)


def _describe(root: BaseException) -> str:
    name, text = type(root).__name__, str(root).strip()
    return (text if text.startswith(name) else f"{name}: {text}" if text else name)[:MAX_MESSAGE]


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
