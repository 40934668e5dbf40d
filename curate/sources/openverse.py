"""``openverse`` source: the Openverse API v1 image search (openly licensed images from many providers).

Reads: ``GET {base_url}/v1/images/`` with ``q``, ``page``, ``page_size``, ``license`` and ``license_type``
(comma-separated) and ``mature=false``; an optional access token from ``$OPENVERSE_TOKEN``, sent as
``Authorization: Bearer`` over https only (plain http only to a loopback host: :mod:`curate.credentials`;
``curate validate`` refuses such a ``base_url`` while the token is set), and to a host other than
``api.openverse.org`` with a warning naming it, once. Anonymous clients may ask for at most 20 results a
page (more is refused with 401), so pages hold 20 (or the query's limit when smaller; one size for every
page of a search, since the API's offsets are ``(page - 1) * page_size``); the API serves at most 240
results of one search (12 pages of 20) and says how many pages there are in ``page_count``. The paging
cursor is the page number; a page without results ends the search. Writes nothing.
Each result becomes a :class:`SearchHit`: ``url`` (results without one are skipped), ``title``,
``page_url`` (``foreign_landing_url``, when it is an http(s) URL), ``license`` ("CC BY-SA 4.0", "CC0 1.0",
"Public Domain Mark 1.0", built from ``license`` and ``license_version``) and ``creator``; missing fields
become None.
Fails with :class:`SourceError`: unreachable, refused (401/403: check ``$OPENVERSE_TOKEN``), rate limited
after the retries (429 honours ``Retry-After``), or an answer that is not the expected JSON.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from curate.credentials import note_destination, transport_problem
from curate.sources.base import SOURCES, Query, SearchHit, SourceError
from curate.sources.web import WebSource, WebSourceConfig, text_of

License = Literal["by", "by-sa", "by-nd", "by-nc", "by-nc-sa", "by-nc-nd", "cc0", "pdm", "sampling+", "nc-sampling+"]
LicenseType = Literal["all", "all-cc", "commercial", "modification"]
MAX_RESULTS = 240  # results of one search the API serves (pagination depth)
PUBLIC_DOMAIN = {"cc0", "pdm"}
TOKEN_ENV = "OPENVERSE_TOKEN"
OWN_HOSTS = ("api.openverse.org",)  # where the token may go without a warning (curate.credentials)


class OpenverseSourceConfig(WebSourceConfig):
    type: Literal["openverse"] = "openverse"
    base_url: str = Field("https://api.openverse.org", description="the API root; /v1/images/ is appended")
    licenses: list[License] = Field(default_factory=list, description="e.g. cc0, by, by-sa; empty: any")
    license_type: list[LicenseType] = Field(
        default_factory=list, description="commercial and/or modification (licences allowing them); empty: any"
    )

    def check_inputs(self, where: str) -> list[str]:
        problem = transport_problem(f"${TOKEN_ENV}", self.base_url) if os.environ.get(TOKEN_ENV) else None
        return [f"{where}.base_url: {problem}"] if problem else []

    @field_validator("licenses", "license_type", mode="before")
    @classmethod
    def _lower(cls, values: Any) -> Any:
        return [v.strip().lower() if isinstance(v, str) else v for v in values] if isinstance(values, list) else values


@SOURCES.register
class OpenverseSource(WebSource):
    name = "openverse"
    description = "Openverse: openly licensed images from Flickr, Wikimedia Commons, museums and more"
    Config = OpenverseSourceConfig
    page_size: ClassVar[int] = 20  # the most an anonymous client may ask for
    max_results: ClassVar[int | None] = MAX_RESULTS
    api_key_env: ClassVar[str | None] = TOKEN_ENV

    def first_cursor(self) -> int:
        return 1

    def fetch_page(self, query: Query, cursor: int, page_size: int) -> tuple[list[SearchHit], int | None]:
        """Page ``cursor`` (1-based) of ``page_size`` results; the next page number, None after the last."""
        data = self.get_json(self.endpoint, params=self.params(query, cursor, page_size), headers=self.auth_headers())
        results = self._results(data)
        hits = [hit for hit in map(result_hit, results) if hit is not None]
        return hits, cursor + 1 if _more(data, cursor, page_size, len(results)) else None

    @property
    def endpoint(self) -> str:
        return self.config.base_url.rstrip("/") + "/v1/images/"

    def params(self, query: Query, page: int, page_size: int) -> dict[str, Any]:
        params: dict[str, Any] = {"q": query.text, "page": page, "page_size": page_size, "mature": "false"}
        if self.config.licenses:
            params["license"] = ",".join(self.config.licenses)
        if self.config.license_type:
            params["license_type"] = ",".join(self.config.license_type)
        return params

    def auth_headers(self) -> dict[str, str] | None:
        """The token as a bearer header, once it may travel to ``base_url``; None without a token."""
        token = self.api_key
        if not token:
            return None
        refused = transport_problem(f"${TOKEN_ENV}", self.config.base_url)
        if refused:
            raise SourceError(f"{self.instance}: {refused}")
        note_destination(f"${TOKEN_ENV}", self.config.base_url, OWN_HOSTS)
        return {"Authorization": f"Bearer {token}"}

    def _results(self, data: Any) -> list[dict[str, Any]]:
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise SourceError(f"{self.instance}: unexpected answer: no 'results' list")
        return [r for r in results if isinstance(r, dict)]


def _more(data: dict[str, Any], page: int, page_size: int, n_results: int) -> bool:
    """Another page exists: the API's page count says so (or, without one, this page was full)."""
    if n_results == 0:
        return False
    page_count = data.get("page_count")
    if isinstance(page_count, int):
        return page < page_count
    return n_results >= page_size


def result_hit(result: dict[str, Any]) -> SearchHit | None:
    """One API result as a hit; None when it has no image URL."""
    url = text_of(result.get("url"))
    if url is None:
        return None
    return SearchHit(
        url=url, title=text_of(result.get("title")) or "", page_url=text_of(result.get("foreign_landing_url")),
        license=license_name(result.get("license"), result.get("license_version")),
        creator=text_of(result.get("creator")),
    )


def license_name(slug: Any, version: Any) -> str | None:
    """``by-sa`` + ``4.0`` -> "CC BY-SA 4.0"; ``cc0`` -> "CC0 1.0"; ``pdm`` -> "Public Domain Mark 1.0"."""
    code = (text_of(slug) or "").lower()
    if not code:
        return None
    name = "Public Domain Mark" if code == "pdm" else code.upper().replace("SAMPLING", "Sampling")
    if code not in PUBLIC_DOMAIN:
        name = f"CC {name}"
    version_text = text_of(version)
    return f"{name} {version_text}" if version_text else name
