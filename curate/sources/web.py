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

Reads: the API at ``base_url`` (overridable in YAML, which is how the tests point a source at a
loopback server replaying the API's answers); an API key only from the environment variable the
source names, never from YAML. Writes nothing. Error messages never carry a URL's query string (keys
travel there) nor the key itself. With ``name`` set, a source's :attr:`instance` is ``<type>:<name>``, so two
differently configured sources of one type keep separate searches and candidates in the catalog.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from curate.config import Section
from curate.sources.base import DEFAULT_USER_AGENT, Query, SearchHit, Source, SourceError

log = logging.getLogger(__name__)
RETRY_STATUS = {429, 500, 502, 503, 504}
REFUSED_STATUS = {401, 403}
MAX_EMPTY_PAGES = 5  # pages in a row without a usable hit (all filtered out) before a search gives up
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
    timeout_s: float = Field(20.0, gt=0)
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
        import requests

        from curate.http import parse_retry_after

        try:
            resp = self.session.get(url, params=params, headers=headers, timeout=(10, self.config.timeout_s))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RetryableError(f"unreachable at {url}: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise self._error(f"request failed: {exc}") from None
        if resp.status_code in RETRY_STATUS:
            what = "rate limit or quota reached" if resp.status_code == 429 else "service error"
            wait_s = parse_retry_after(resp.headers.get("Retry-After"))
            raise RetryableError(f"{what} (HTTP {resp.status_code})", wait_s)
        if resp.status_code in REFUSED_STATUS:
            raise self._error(f"refused the request (HTTP {resp.status_code}){self._key_hint()}: {_snippet(resp.text)}")
        if resp.status_code >= 400:
            raise self._error(f"HTTP {resp.status_code}: {_snippet(resp.text)}")
        try:
            data = resp.json()
        except ValueError:
            raise self._error(f"the answer is not JSON: {_snippet(resp.text)}") from None
        self.check_answer(data, resp.headers)
        return data

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


def redact_urls(text: str) -> str:
    """``text`` with every URL's query string (``?a=1&api_key=…``) replaced by ``?…``: keys travel there."""
    return _QUERY_STRING.sub("?…", text)


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def text_of(value: Any) -> str | None:
    """A string field of an API record; None for missing, null or empty values."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
