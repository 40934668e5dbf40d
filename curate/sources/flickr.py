"""``flickr`` source: keyword search of Flickr photos under open licences (``flickr.photos.search``).

Reads: the Flickr REST API at ``base_url`` (JSON: ``format=json&nojsoncallback=1``), with the API key
from ``$FLICKR_API_KEY`` only (never from YAML; ``curate validate`` reports a missing key, and a ``base_url``
over plain http to a host that is not loopback: :mod:`curate.credentials`; a key sent to a host other than
``api.flickr.com`` is logged once as a warning naming it). Writes nothing.
One request per page of ``per_page`` photos (fixed for a whole search, so pages never overlap; the paging
cursor is the page number) with the extras ``license,owner_name,url_<size>,description``; photos without
the ``url_<size>`` extra (the owner hides that size or it does not exist) are skipped. Flickr answers at
most the first 4,000 results of a query. Flickr reports errors with HTTP 200 and ``{"stat": "fail",
"code": N, "message": ...}``: codes 105 and 201 (service unavailable) are retried like HTTP 429 / 5xx by
:class:`~curate.sources.web.WebSource`, then reported as unavailable; code 100 (invalid or expired key)
names ``$FLICKR_API_KEY``; rate-limit answers say quota; any other failure gives its code and message. The
key travels in the query string, which error messages never show.

Licence ids (``flickr.photos.licenses.getInfo``)::

    0  All Rights Reserved                 (never asked for by default)
    1  CC BY-NC-SA 2.0                     5  CC BY-SA 2.0
    2  CC BY-NC 2.0                        6  CC BY-ND 2.0
    3  CC BY-NC-ND 2.0                     7  No known copyright restrictions (Flickr Commons)
    4  CC BY 2.0                           8  United States Government Work
    9  CC0 1.0 (Public Domain Dedication)  10 Public Domain Mark 1.0

The default ``licenses`` are the Creative Commons and public-domain ones: 1-6, 9 and 10. For images
that may be used commercially and modified, ask for ``[4, 5, 9, 10]``.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from curate.credentials import note_destination, transport_problem
from curate.sources.base import SOURCES, Query, SearchHit, SourceError
from curate.sources.web import RetryableError, WebSource, WebSourceConfig, text_of

API_KEY_ENV = "FLICKR_API_KEY"
OWN_HOSTS = ("api.flickr.com",)  # where the key may go without a warning (curate.credentials)
MAX_RESULTS = 4000  # Flickr returns at most the first 4,000 results of any search

LICENSE_NAMES = {
    0: "All Rights Reserved",
    1: "CC BY-NC-SA 2.0",
    2: "CC BY-NC 2.0",
    3: "CC BY-NC-ND 2.0",
    4: "CC BY 2.0",
    5: "CC BY-SA 2.0",
    6: "CC BY-ND 2.0",
    7: "No known copyright restrictions",
    8: "United States Government Work",
    9: "CC0 1.0",
    10: "Public Domain Mark 1.0",
}

# Flickr's size suffixes as ``url_<size>`` extras: sq 75 px square, q 150 square, t 100, s 240, n 320,
# m 500, z 640, c 800, l 1024, h 1600, k 2048 (longest side), o the original upload (only when its owner
# allows downloading it). Sizes larger than the original are not listed for a photo.
Size = Literal["sq", "q", "t", "s", "n", "m", "z", "c", "l", "h", "k", "o"]

KEY_REFUSED = {100}  # Invalid API Key: the key passed was not valid or has expired
UNAVAILABLE = {105, 201}  # Service currently unavailable (201: the API service is not currently available)
_QUOTA_WORDS = re.compile(r"rate limit|quota|too many requests|limit exceeded", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


def license_name(license_id: Any) -> str | None:
    """A readable licence name for a Flickr licence id (``"4"`` -> ``"CC BY 2.0"``); None when absent."""
    text = text_of(license_id)
    if text is None:
        return None
    try:
        number = int(text)
    except ValueError:
        return f"Flickr licence {text}"
    return LICENSE_NAMES.get(number, f"Flickr licence {number}")


class FlickrConfig(WebSourceConfig):
    type: Literal["flickr"] = "flickr"
    base_url: str = Field("https://api.flickr.com/services/rest/", description="the REST endpoint")
    licenses: list[int] = Field(
        [1, 2, 3, 4, 5, 6, 9, 10], min_length=1,
        description="Flickr licence ids: 1-6 CC BY-NC-SA/BY-NC/BY-NC-ND/BY/BY-SA/BY-ND 2.0, 9 CC0, 10 PD mark",
    )
    size: Size = Field("z", description="which url_<size> extra to download: z 640 px, c 800, l 1024, o original")
    sort: str = Field("relevance", description="date-posted-desc, interestingness-desc, relevance, ...")
    safe_search: int = Field(1, ge=1, le=3, description="1 safe, 2 moderate, 3 restricted")
    content_type: int = Field(1, ge=0, le=7, description="1 photos only, 7 photos, screenshots and 'other'")

    @field_validator("licenses")
    @classmethod
    def _known_licenses(cls, value: list[int]) -> list[int]:
        unknown = [v for v in value if v < 0]
        if unknown:
            raise ValueError(f"licence ids are numbers from 0 (see flickr.photos.licenses.getInfo), got {unknown}")
        return list(dict.fromkeys(value))

    def check_inputs(self, where: str) -> list[str]:
        if not os.environ.get(API_KEY_ENV):
            return [f"{where}: the Flickr API key is not set: export ${API_KEY_ENV} (never put it in YAML)"]
        problem = transport_problem(f"${API_KEY_ENV}", self.base_url)
        return [f"{where}.base_url: {problem}"] if problem else []


@SOURCES.register
class FlickrSource(WebSource):
    name = "flickr"
    description = "Flickr photo search under open licences (API key in $FLICKR_API_KEY)"
    Config = FlickrConfig
    page_size: ClassVar[int] = 100  # Flickr allows up to 500
    max_results: ClassVar[int | None] = MAX_RESULTS
    api_key_env: ClassVar[str | None] = API_KEY_ENV

    def first_cursor(self) -> int:
        return 1

    def fetch_page(self, query: Query, cursor: int, page_size: int) -> tuple[list[SearchHit], int | None]:
        """Page ``cursor`` (1-based; Flickr pages by offset ``(page - 1) * per_page``): its photos as hits and
        the next page number, None after the last."""
        answer = self.get_json(self.config.base_url, params=self._params(query, cursor, page_size, self._key()))
        photos = self._photos(answer)
        rows = photos.get("photo", [])
        if not isinstance(rows, list):
            raise SourceError(f"{self.instance}: unexpected answer: 'photos.photo' is not a list")
        hits = [hit for hit in map(self._hit, rows) if hit is not None]
        more = bool(rows) and _int(photos.get("page"), cursor) < _int(photos.get("pages"), 0)
        return hits, cursor + 1 if more else None

    def _key(self) -> str:
        """The API key, once it may travel to ``base_url`` (a host other than Flickr's own is logged once)."""
        key = self.api_key
        if not key:
            raise SourceError(f"{self.instance}: the Flickr API key is not set: export ${API_KEY_ENV}")
        refused = transport_problem(f"${API_KEY_ENV}", self.config.base_url)
        if refused:
            raise SourceError(f"{self.instance}: {refused}")
        note_destination(f"${API_KEY_ENV}", self.config.base_url, OWN_HOSTS)
        return key

    def _params(self, query: Query, page: int, per_page: int, key: str) -> dict[str, Any]:
        cfg = self.config
        return {
            "method": "flickr.photos.search",
            "api_key": key,
            "text": query.text,
            "license": ",".join(str(i) for i in cfg.licenses),
            "extras": f"license,owner_name,url_{cfg.size},description",
            "media": "photos",
            "content_type": cfg.content_type,
            "safe_search": cfg.safe_search,
            "sort": cfg.sort,
            "page": page,
            "per_page": per_page,
            "format": "json",
            "nojsoncallback": 1,
        }

    def check_answer(self, data: Any, response_headers: Mapping[str, str]) -> None:
        """Flickr's failures come with HTTP 200 and ``stat: fail``: 105 / 201 are retried, the rest are final."""
        if isinstance(data, dict) and data.get("stat") == "fail":
            raise self._failure(data, response_headers)

    def _photos(self, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise SourceError(f"{self.instance}: unexpected answer: a JSON {type(answer).__name__}, not an object")
        photos = answer.get("photos")
        if answer.get("stat") != "ok" or not isinstance(photos, dict):
            raise SourceError(f"{self.instance}: unexpected answer (stat={answer.get('stat')!r}, no 'photos')")
        return photos

    def _failure(self, answer: dict[str, Any], headers: Mapping[str, str]) -> SourceError | RetryableError:
        from curate.http import parse_retry_after

        code = _int(answer.get("code"), -1)
        message = text_of(answer.get("message")) or "no message"
        if code in KEY_REFUSED:
            return SourceError(f"{self.instance}: Flickr refused the API key (code {code}: {message})"
                               f"{self._key_hint()}")
        if _QUOTA_WORDS.search(message):
            return SourceError(f"{self.instance}: rate limit or quota reached (code {code}: {message}); "
                               "wait, then resume the run")
        if code in UNAVAILABLE:
            return RetryableError(f"the Flickr API is unavailable (code {code}: {message})",
                                  parse_retry_after(headers.get("Retry-After")))
        return SourceError(f"{self.instance}: Flickr API error (code {code}: {message})")

    def _hit(self, photo: Any) -> SearchHit | None:
        if not isinstance(photo, dict):
            return None
        url = text_of(photo.get(f"url_{self.config.size}"))
        if url is None:
            return None
        owner, photo_id = text_of(photo.get("owner")), text_of(photo.get("id"))
        title = text_of(photo.get("title"))
        description = _plain(photo.get("description"))
        return SearchHit(
            url=url,
            title=" | ".join(t for t in (title, description) if t),
            page_url=f"https://www.flickr.com/photos/{owner}/{photo_id}" if owner and photo_id else None,
            license=license_name(photo.get("license")),
            creator=text_of(photo.get("ownername")),
        )


def _plain(description: Any, limit: int = 300) -> str | None:
    """The text of a ``description`` extra (``{"_content": "<b>html</b>"}``): tags dropped, one line, capped."""
    if isinstance(description, dict):
        description = description.get("_content")
    text = text_of(description)
    if text is None:
        return None
    text = " ".join(html.unescape(_TAG.sub(" ", text)).split())
    return (text[:limit] + "…" if len(text) > limit else text) or None


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
