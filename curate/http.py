"""The download engine: fetch candidate bytes over HTTP(S) with ``requests``, or from ``file://`` URLs.

Reads: URLs. Writes: nothing (the caller stores what it gets). One pooled ``requests.Session`` per
worker thread; retries with exponential backoff on connection errors, 429 and 5xx (honouring
``Retry-After``); a byte cap enforced while streaming; non-image content types rejected.
On failure: raises :class:`FetchError` whose message becomes the candidate's ``error`` column.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests
from requests.adapters import HTTPAdapter

RETRY_STATUS = {429, 500, 502, 503, 504}


class FetchError(Exception):
    """A candidate could not be fetched; ``retryable`` failures were retried already."""


class Fetcher:
    def __init__(self, timeout_s: float = 20.0, retries: int = 2, max_bytes: int = 25_000_000,
                 user_agent: str = "curate", backoff_s: float = 0.5):
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self.backoff_s = backoff_s
        self._local = threading.local()

    def fetch(self, url: str) -> bytes:
        scheme = urlparse(url).scheme
        if scheme == "file":
            return self._read_file(url)
        if scheme in ("http", "https"):
            return self._fetch_http(url)
        raise FetchError(f"unsupported URL scheme {scheme!r}")

    def _read_file(self, url: str) -> bytes:
        path = Path(unquote(urlparse(url).path))
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise FetchError(f"file too large: {size} bytes (max {self.max_bytes})")
            return path.read_bytes()
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self.user_agent
            session.mount("http://", HTTPAdapter(pool_maxsize=4))
            session.mount("https://", HTTPAdapter(pool_maxsize=4))
            self._local.session = session
        return session

    def _fetch_http(self, url: str) -> bytes:
        for attempt in range(self.retries + 1):
            try:
                return self._get_once(url)
            except _Retryable as exc:
                if attempt == self.retries:
                    raise FetchError(f"{exc} (after {attempt + 1} attempts)") from None
                time.sleep(exc.wait_s if exc.wait_s is not None else self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _get_once(self, url: str) -> bytes:
        try:
            with self._session().get(url, timeout=self.timeout_s, stream=True) as resp:
                if resp.status_code in RETRY_STATUS:
                    raise _Retryable(f"HTTP {resp.status_code}", _retry_after(resp))
                if resp.status_code != 200:
                    raise FetchError(f"HTTP {resp.status_code}")
                kind = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if kind and not kind.startswith("image/") and kind != "application/octet-stream":
                    raise FetchError(f"not an image: Content-Type {kind}")
                return self._read_capped(resp)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}", None) from None

    def _read_capped(self, resp: requests.Response) -> bytes:
        declared = int(resp.headers.get("Content-Length") or 0)
        if declared > self.max_bytes:
            raise FetchError(f"too large: {declared} bytes (max {self.max_bytes})")
        chunks, total = [], 0
        for chunk in resp.iter_content(64 * 1024):
            total += len(chunk)
            if total > self.max_bytes:
                raise FetchError(f"too large: over {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


class _Retryable(Exception):
    def __init__(self, message: str, wait_s: float | None):
        super().__init__(message)
        self.wait_s = wait_s


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    return min(float(value), 60.0) if value.isdigit() else None
