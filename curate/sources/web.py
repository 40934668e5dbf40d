"""The base of sources that search a web API: one pooled ``requests`` session with a polite User-Agent,
timeouts, retries on 429 / 5xx that honour ``Retry-After`` (and on failures a source's
:meth:`~WebSource.check_answer` finds in an HTTP 200 answer), cursor-based pagination up to the asked
limit, and every failure of the service mapped to a :class:`~curate.sources.base.SourceError` that says what
happened (unreachable, refused: check the key, over quota) instead of a traceback.

Paging: one page size for the whole search (``min(page_size, limit)``, so page-number offsets never shift);
the first page is asked with :meth:`~WebSource.first_cursor`, each later one with the cursor the previous
page returned (opaque: a page number, a continuation block). The search stops at ``limit`` hits, when a
page returns no next cursor, after ``max_empty_pages`` pages in a row without a new usable hit (a source's
filters may drop whole pages), or before a page would pass ``max_results`` (how deep the API pages).
A URL seen twice in one search is kept once. The sources hold no state of a search between pages.

Limits: every request ends by ``deadline_s`` (default four times ``timeout_s``), whatever the phase: name
resolution, connecting, the TLS handshake, the status line and headers, the body (the session's
connections are clocked, :mod:`curate.netclock`; through an environment proxy only the body is checked
against it, between reads); an answer over ``max_answer_bytes`` (decoded) is refused. Both are final
failures of the search, not retried.

Reads: the API at ``base_url`` (overridable in YAML, which is how the tests point a source at a
loopback server replaying the API's answers); an API key only from the environment variable the
source names, never from YAML. Writes nothing. Error messages never carry a URL's query string (keys
travel there) nor the key itself. With ``name`` set, a source's :attr:`instance` is ``<type>:<name>``, so two
differently configured sources of one type keep separate searches and candidates in the catalog.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from curate.netclock import Deadline, DeadlineExceeded, causes
from curate.sections import Section
from curate.sources.base import DEFAULT_USER_AGENT, Query, SearchHit, Source, SourceError

log = logging.getLogger(__name__)
RETRY_STATUS = {429, 500, 502, 503, 504}
REFUSED_STATUS = {401, 403}
MAX_EMPTY_PAGES = 5  # pages in a row without a usable hit (all filtered out) before a search gives up
MAX_ANSWER_BYTES = 20_000_000  # far above a page of JSON search results, far below trouble for memory
DEADLINE_PER_TIMEOUT = 4  # deadline_s unset: this many times timeout_s
ANSWER_CHUNK = 64 * 1024
INSTANCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_QUERY_STRING = re.compile(r"\?(?=[^\s'\"<>]*=)[^\s'\"<>]+")

Cursor = Any  # a source's position in a search: a page number, a continuation block; None: no more pages


class RetryableError(Exception):
    """A transient failure: :meth:`WebSource.get_json` retries it (after ``wait_s`` seconds when given, else
    with exponential backoff) and, once the retries are spent, reports ``message`` as a SourceError."""

    def __init__(self, message: str, wait_s: float | None = None):
        super().__init__(message)
        self.wait_s = wait_s


class WebSourceConfig(Section):
    """Settings every web source has; each source's own Config adds its ``type``, ``base_url`` and filters."""

    name: str | None = Field(
        None, pattern=INSTANCE_NAME,
        description="tells apart sources of one type (the catalog records them as <type>:<name>)",
    )
    max_per_query: int = Field(100, ge=1, description="results kept per query (the source pages until then)")
    weight: float = Field(1.0, gt=0, description="share of candidates.max_per_class, relative to other sources")
    timeout_s: float = Field(20.0, gt=0, description="connect and per-read timeout")
    deadline_s: float | None = Field(
        None, gt=0, description="wall-clock limit per request, every phase included; null = 4 x timeout_s",
    )
    max_answer_bytes: int = Field(MAX_ANSWER_BYTES, ge=1, description="largest answer read (decoded)")
    retries: int = Field(3, ge=0, description="on connection errors, 429, 5xx and transient API errors")


class WebSource(Source):
    """Subclasses set ``page_size`` (the most one request may ask for), implement :meth:`fetch_page` and,
    when needed, :meth:`first_cursor` and :meth:`check_answer`; ``api_key_env`` names the key's variable and
    ``max_results`` how deep the API pages (None: no limit)."""

    page_size: ClassVar[int] = 50
    max_results: ClassVar[int | None] = None
    max_empty_pages: ClassVar[int] = MAX_EMPTY_PAGES
    api_key_env: ClassVar[str | None] = None
    backoff_s: ClassVar[float] = 1.0

    def __init__(self, config: Any = None, user_agent: str = DEFAULT_USER_AGENT):
        import requests

        super().__init__(config, user_agent)
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, _clocked_adapter_class()())

    @property
    def deadline_s(self) -> float:
        """The wall-clock limit of one request."""
        return self.config.deadline_s or DEADLINE_PER_TIMEOUT * self.config.timeout_s

    @property
    def instance(self) -> str:
        """``<type>``, or ``<type>:<name>`` when the config names this source."""
        name = getattr(self.config, "name", None)
        return f"{self.name}:{name}" if name else self.name

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    # ------------------------------------------------------------------ paging
    def search(self, query: Query, limit: int) -> list[SearchHit]:
        """Pages of one size, in rank order, until ``limit`` new hits, no next cursor, ``max_empty_pages``
        pages in a row without a new hit, or the API's depth (``max_results``)."""
        if limit <= 0:
            return []
        size = max(1, min(self.page_size, limit))
        hits: list[SearchHit] = []
        seen: set[str] = set()
        cursor = self.first_cursor()
        pages = empty = 0
        try:
            while len(hits) < limit:
                batch, cursor = self.fetch_page(query, cursor, size)
                pages += 1
                before = len(hits)
                for hit in batch:
                    if hit.url not in seen:
                        seen.add(hit.url)
                        hits.append(hit)
                empty = 0 if len(hits) > before else empty + 1
                if cursor is None:
                    break
                if empty >= self.max_empty_pages:
                    log.info("%s: %r: %d pages in a row without a usable hit; stopping", self.instance,
                             query.text, empty)
                    break
                if self.max_results is not None and (pages + 1) * size > self.max_results:
                    break
        except RetryableError as exc:  # raised outside get_json: no retry left to try
            raise self._error(str(exc)) from None
        except SourceError as exc:
            raise self._scrubbed(exc) from None
        return hits[:limit]

    def first_cursor(self) -> Cursor:
        """The cursor of a search's first page (None unless the source says otherwise)."""
        return None

    def fetch_page(self, query: Query, cursor: Cursor, page_size: int) -> tuple[list[SearchHit], Cursor]:
        """One page of ``page_size`` results at ``cursor``: its usable hits (in rank order) and the next
        page's cursor, None when there is no next page."""
        raise NotImplementedError

    # ------------------------------------------------------------------ HTTP
    def get_json(self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        """GET ``url`` and decode JSON, checked by :meth:`check_answer`; retries transient failures (connection
        errors, 429, 5xx, :class:`RetryableError`), raises SourceError for the rest."""
        retries = self.config.retries
        for attempt in range(retries + 1):
            try:
                return self._get_json_once(url, params, headers)
            except RetryableError as exc:
                if attempt == retries:
                    raise self._error(f"{exc} (after {attempt + 1} attempts)") from None
                time.sleep(exc.wait_s if exc.wait_s is not None else self._backoff(attempt))
            except SourceError as exc:
                raise self._scrubbed(exc) from None
        raise AssertionError("unreachable")

    def check_answer(self, data: Any, response_headers: Mapping[str, str]) -> None:
        """Inspect a successfully decoded answer (HTTP 2xx) inside the retry loop: raise
        :class:`RetryableError` for a transient failure the API reports with HTTP 200 (its ``wait_s`` from
        ``response_headers`` when they say), SourceError for a final one. The default accepts every answer."""

    def _get_json_once(self, url: str, params: dict[str, Any] | None, headers: dict[str, str] | None) -> Any:
        """One request, every phase of it within :attr:`deadline_s`."""
        import requests

        deadline = Deadline(self.deadline_s)
        with deadline.applied():
            try:
                resp = self.session.get(url, params=params, headers=headers, stream=True,
                                        timeout=(10, self.config.timeout_s))
                with resp:
                    return self._answer(resp, deadline)
            except (requests.RequestException, DeadlineExceeded) as exc:
                raise self._request_error(exc, url) from None

    def _answer(self, resp: Any, deadline: Deadline) -> Any:
        """The decoded JSON of a streamed answer, or the error its status means."""
        from curate.http import parse_retry_after

        if resp.status_code in RETRY_STATUS:
            what = "rate limit or quota reached" if resp.status_code == 429 else "service error"
            wait_s = parse_retry_after(resp.headers.get("Retry-After"))
            raise RetryableError(f"{what} (HTTP {resp.status_code})", wait_s)
        body = self._read_answer(resp, deadline)
        if resp.status_code in REFUSED_STATUS:
            raise self._error(f"refused the request (HTTP {resp.status_code}){self._key_hint()}: {_snippet(body)}")
        if resp.status_code >= 400:
            raise self._error(f"HTTP {resp.status_code}: {_snippet(body)}")
        try:
            data = json.loads(body)
        except ValueError:
            raise self._error(f"the answer is not JSON: {_snippet(body)}") from None
        self.check_answer(data, resp.headers)
        return data

    def _read_answer(self, resp: Any, deadline: Deadline) -> bytes:
        """The answer's (decoded) bytes, at most ``max_answer_bytes``, the deadline checked between reads."""
        cap = self.config.max_answer_bytes
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap and not resp.headers.get("Content-Encoding"):
            raise self._error(f"the answer is too large: {declared} bytes (max_answer_bytes {cap})")
        deadline.phase = "reading the answer"
        chunks, total = [], 0
        for chunk in resp.iter_content(ANSWER_CHUNK):
            total += len(chunk)
            if total > cap:
                raise self._error(f"the answer is too large: over {cap} bytes (max_answer_bytes)")
            chunks.append(chunk)
            deadline.left()
        return b"".join(chunks)

    def _request_error(self, exc: BaseException, url: str) -> SourceError | RetryableError:
        """A deadline that ran out is final; a connection error or timeout is retried; the rest is final."""
        import requests

        exceeded = next((e for e in causes(exc) if isinstance(e, DeadlineExceeded)), None)
        if exceeded is not None:
            return self._error(f"no complete answer from {url}: {exceeded}")
        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            return RetryableError(f"unreachable at {url}: {type(exc).__name__}")
        return self._error(f"request failed: {exc}")

    # ------------------------------------------------------------------ messages
    def _error(self, message: str) -> SourceError:
        """A SourceError naming this source, without secrets."""
        return SourceError(self._redact(f"{self.instance}: {message}"))

    def _scrubbed(self, exc: SourceError) -> SourceError:
        """``exc`` itself, or a copy of it without secrets when its message holds any."""
        text = str(exc)
        clean = self._redact(text)
        return exc if clean == text else SourceError(clean)

    def _redact(self, text: str) -> str:
        text = redact_urls(text)
        key = self.api_key
        return text.replace(key, "…") if key and len(key) >= 4 else text

    def _key_hint(self) -> str:
        if not self.api_key_env:
            return ""
        state = "is set" if self.api_key else "is not set"
        return f"; check the API key (${self.api_key_env} {state})"

    def _backoff(self, attempt: int) -> float:
        return self.backoff_s * 2**attempt * random.uniform(0.5, 1.5)


@functools.cache
def _clocked_adapter_class() -> type:
    """A requests adapter whose connections wait no longer than the calling thread's deadline (no address
    guard: the user names these hosts). Built on first use: requests is imported only by web sources."""
    from requests.adapters import HTTPAdapter

    from curate.netclock import clocked_ssl_context
    from curate.netguard import GuardedPoolManager

    class ClockedAdapter(HTTPAdapter):
        def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
            self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
            self.poolmanager = GuardedPoolManager(None, num_pools=connections, maxsize=maxsize, block=block,
                                                  ssl_context=clocked_ssl_context(), **kwargs)

    return ClockedAdapter


def redact_urls(text: str) -> str:
    """``text`` with every URL's query string (``?a=1&api_key=…``) replaced by ``?…``: keys travel there."""
    return _QUERY_STRING.sub("?…", text)


def _snippet(answer: bytes, limit: int = 200) -> str:
    text = " ".join(answer.decode("utf-8", errors="replace").split())
    return text[:limit] + ("…" if len(text) > limit else "")


def text_of(value: Any) -> str | None:
    """A string field of an API record; None for missing, null or empty values."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
