"""The base of sources that search a web API: one pooled ``requests`` session with a polite User-Agent,
timeouts, retries on 429 / 5xx that honour ``Retry-After``, pagination up to the asked limit, and every
failure of the service mapped to a :class:`~curate.sources.base.SourceError` that says what happened
(unreachable, refused: check the key, over quota) instead of a traceback.

Reads: the API at ``base_url`` (overridable in YAML, which is how the tests point a source at a
loopback server replaying the API's answers); an API key only from the environment variable the
source names, never from YAML. Writes nothing.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, ClassVar

from pydantic import Field

from curate.config import Section
from curate.sources.base import DEFAULT_USER_AGENT, Query, SearchHit, Source, SourceError

RETRY_STATUS = {429, 500, 502, 503, 504}
REFUSED_STATUS = {401, 403}


class WebSourceConfig(Section):
    """Settings every web source has; each source's own Config adds its ``type``, ``base_url`` and filters."""

    max_per_query: int = Field(100, ge=1, description="results kept per query (the source pages until then)")
    weight: float = Field(1.0, gt=0, description="share of candidates.max_per_class, relative to other sources")
    timeout_s: float = Field(20.0, gt=0)
    retries: int = Field(3, ge=0, description="on connection errors, 429 and 5xx")


class WebSource(Source):
    """Subclasses set ``page_size`` and implement :meth:`fetch_page`; ``api_key_env`` names the key's variable."""

    page_size: ClassVar[int] = 50
    api_key_env: ClassVar[str | None] = None
    backoff_s: ClassVar[float] = 1.0

    def __init__(self, config: Any = None, user_agent: str = DEFAULT_USER_AGENT):
        import requests

        super().__init__(config, user_agent)
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def search(self, query: Query, limit: int) -> list[SearchHit]:
        """Page through the results until ``limit`` hits, an empty page or the last page."""
        hits: list[SearchHit] = []
        page = 1
        while len(hits) < limit:
            batch, more = self.fetch_page(query, page, min(self.page_size, limit - len(hits)))
            hits.extend(batch)
            if not batch or not more:
                break
            page += 1
        return hits[:limit]

    def fetch_page(self, query: Query, page: int, page_size: int) -> tuple[list[SearchHit], bool]:
        """One page of results (1-based) and whether another page exists."""
        raise NotImplementedError

    # ------------------------------------------------------------------ HTTP
    def get_json(self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        """GET ``url`` and decode JSON; retries transient failures, raises SourceError for the rest."""
        retries = self.config.retries
        for attempt in range(retries + 1):
            try:
                return self._get_json_once(url, params, headers)
            except _Transient as exc:
                if attempt == retries:
                    raise SourceError(f"{self.instance}: {exc} (after {attempt + 1} attempts)") from None
                time.sleep(exc.wait_s if exc.wait_s is not None else self._backoff(attempt))
        raise AssertionError("unreachable")

    def _get_json_once(self, url: str, params: dict[str, Any] | None, headers: dict[str, str] | None) -> Any:
        import requests

        from curate.http import parse_retry_after

        try:
            resp = self.session.get(url, params=params, headers=headers, timeout=(10, self.config.timeout_s))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Transient(f"unreachable at {url}: {type(exc).__name__}", None) from None
        except requests.RequestException as exc:
            raise SourceError(f"{self.instance}: request failed: {exc}") from None
        if resp.status_code in RETRY_STATUS:
            what = "rate limit or quota reached" if resp.status_code == 429 else "service error"
            raise _Transient(f"{what} (HTTP {resp.status_code})", parse_retry_after(resp.headers.get("Retry-After")))
        if resp.status_code in REFUSED_STATUS:
            raise SourceError(f"{self.instance}: refused the request (HTTP {resp.status_code}){self._key_hint()}: "
                              f"{_snippet(resp.text)}")
        if resp.status_code >= 400:
            raise SourceError(f"{self.instance}: HTTP {resp.status_code}: {_snippet(resp.text)}")
        try:
            return resp.json()
        except ValueError:
            raise SourceError(f"{self.instance}: the answer is not JSON: {_snippet(resp.text)}") from None

    def _key_hint(self) -> str:
        if not self.api_key_env:
            return ""
        state = "is set" if self.api_key else "is not set"
        return f"; check the API key (${self.api_key_env} {state})"

    def _backoff(self, attempt: int) -> float:
        return self.backoff_s * 2**attempt * random.uniform(0.5, 1.5)


class _Transient(Exception):
    def __init__(self, message: str, wait_s: float | None):
        super().__init__(message)
        self.wait_s = wait_s


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def text_of(value: Any) -> str | None:
    """A string field of an API record; None for missing, null or empty values."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
