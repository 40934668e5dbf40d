"""``commons`` source: Wikimedia Commons searched through its MediaWiki Action API.

Reads: ``GET {base_url}`` (``https://commons.wikimedia.org/w/api.php``) with ``action=query``,
``generator=search`` over the File: namespace (6) for the query text plus ``filetype:bitmap``, ranked by
the search (each page's ``index``), and ``prop=imageinfo`` (url, extmetadata, mime, size) with a thumbnail
``thumb_width_px`` wide; ``format=json``, ``formatversion=2``, ``maxlag=5``, ``gsrlimit`` the search's page
size. The paging cursor is the API's ``continue`` block, sent back verbatim (``gsroffset``; ``iicontinue``
when the API thumbnailed only part of a batch); an answer without one ends the search. A batch the filters
below empty entirely does not (:class:`~curate.sources.web.WebSource` gives up after a few in a row). Writes
nothing. Each file becomes a :class:`SearchHit`: ``url`` the thumbnail (else the original), ``title`` the
file name without ``File:`` and extension plus the start of its description, ``page_url`` its description
page, ``license`` the ``LicenseShortName`` and ``creator`` the ``Artist``, both as plain text (HTML tags
stripped, entities unescaped); missing fields become None. Files that are not images (PDF, video) are
skipped, and with ``licenses`` set so are files whose licence does not start with one of them.
Fails with :class:`SourceError`: unreachable, refused, rate limited after the retries, an answer that is
not JSON, or a MediaWiki error (HTTP 200 with an ``error`` object: the message names its code and info).
A ``maxlag`` error (the wiki's databases are lagging, answered with HTTP 200 and a ``Retry-After`` header) is
transient: :meth:`CommonsSource.check_answer` has it retried after ``Retry-After``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any, ClassVar, Literal

from pydantic import Field

from curate.sources.base import SOURCES, Query, SearchHit, SourceError
from curate.sources.web import RetryableError, WebSource, WebSourceConfig, text_of

Continue = dict[str, Any]  # the API's continue block: the paging cursor
FILE_NAMESPACE = 6
METADATA_KEYS = ("LicenseShortName", "Artist", "ImageDescription")
TITLE_DESCRIPTION_CHARS = 160
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{2,5}$")
_BLOCK_TAGS = {"br", "p", "div", "li", "ul", "ol", "td", "th", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6"}


class CommonsSourceConfig(WebSourceConfig):
    type: Literal["commons"] = "commons"
    base_url: str = Field("https://commons.wikimedia.org/w/api.php", description="the wiki's api.php")
    thumb_width_px: int = Field(640, ge=16, le=4096, description="width of the thumbnail fetched for each file")
    licenses: list[str] = Field(
        default_factory=list,
        description="keep files whose LicenseShortName starts with one of these (case-insensitive), "
                    "e.g. 'CC BY-SA', 'CC0', 'Public domain'; empty: any",
    )


@SOURCES.register
class CommonsSource(WebSource):
    name = "commons"
    description = "Wikimedia Commons: freely licensed files, searched through the MediaWiki API"
    Config = CommonsSourceConfig
    page_size: ClassVar[int] = 50  # the API thumbnails at most 50 files per request

    def first_cursor(self) -> Continue:
        return {}  # no continuation yet

    def fetch_page(self, query: Query, cursor: Continue, page_size: int) -> tuple[list[SearchHit], Continue | None]:
        """The batch at continuation ``cursor``: its files as hits and the answer's ``continue`` block, if any."""
        data = self.get_json(self.config.base_url, params=self.params(query, page_size, cursor))
        more = data.get("continue")
        return self._hits(data), more if isinstance(more, dict) and more else None

    def params(self, query: Query, limit: int, cursor: Continue | None = None) -> dict[str, Any]:
        return {
            "action": "query", "format": "json", "formatversion": 2, "maxlag": 5,
            "generator": "search", "gsrsearch": f"{query.text} filetype:bitmap", "gsrnamespace": FILE_NAMESPACE,
            "gsrlimit": limit, "prop": "imageinfo", "iiprop": "url|extmetadata|mime|size",
            "iiurlwidth": self.config.thumb_width_px, "iiextmetadatafilter": "|".join(METADATA_KEYS),
            "iiextmetadatalanguage": query.lang, **(cursor or {}),
        }

    # ------------------------------------------------------------------ answers
    def check_answer(self, data: Any, response_headers: Mapping[str, str]) -> None:
        """MediaWiki's errors come with HTTP 200: ``maxlag`` is retried after its Retry-After, any other one
        is a SourceError, and so is an answer that is not a JSON object."""
        from curate.http import parse_retry_after

        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("code") == "maxlag":
            raise RetryableError(f"the wiki is lagging (maxlag): {error.get('info')}",
                                 parse_retry_after(response_headers.get("Retry-After")))
        if error is not None:
            code, info = (error.get("code"), error.get("info")) if isinstance(error, dict) else (None, error)
            raise SourceError(f"{self.instance}: the API answered error '{code}': {info}")
        if not isinstance(data, dict):
            raise SourceError(f"{self.instance}: unexpected answer: not a JSON object")

    def _hits(self, data: dict[str, Any]) -> list[SearchHit]:
        found = data.get("query")
        pages = (found.get("pages") if isinstance(found, dict) else None) or []
        if isinstance(pages, dict):  # formatversion=1 keys pages by id
            pages = list(pages.values())
        ranked = sorted((p for p in pages if isinstance(p, dict)), key=lambda p: _rank(p.get("index")))
        return [hit for hit in map(self._hit, ranked) if hit is not None]

    def _hit(self, page: dict[str, Any]) -> SearchHit | None:
        """One file as a hit; None for a page without image info, a non-image or an unwanted licence."""
        infos = page.get("imageinfo")
        info = infos[0] if isinstance(infos, list) and infos and isinstance(infos[0], dict) else None
        if info is None:
            return None
        mime, url = text_of(info.get("mime")), text_of(info.get("thumburl")) or text_of(info.get("url"))
        if url is None or (mime is not None and not mime.startswith("image/")):
            return None
        meta = info.get("extmetadata") if isinstance(info.get("extmetadata"), dict) else {}
        licence = metadata_text(meta, "LicenseShortName")
        if not self._licence_wanted(licence):
            return None
        return SearchHit(
            url=url, title=file_title(page.get("title"), metadata_text(meta, "ImageDescription")),
            page_url=text_of(info.get("descriptionurl")), license=licence, creator=metadata_text(meta, "Artist"),
        )

    def _licence_wanted(self, licence: str | None) -> bool:
        wanted = [w.strip().casefold() for w in self.config.licenses if w.strip()]
        if not wanted:
            return True
        return licence is not None and licence.casefold().startswith(tuple(wanted))


def _rank(index: Any) -> int:
    return index if isinstance(index, int) else 1 << 30


def metadata_text(meta: dict[str, Any], key: str) -> str | None:
    """An extmetadata field's value as plain text; None when missing or empty."""
    entry = meta.get(key)
    value = entry.get("value") if isinstance(entry, dict) else None
    return plain_text(value) if value is not None else None


def file_title(title: Any, description: str | None) -> str:
    """"File:Red fox.jpg" + a description -> "Red fox | <description, shortened>"."""
    name = text_of(title) or ""
    if name.lower().startswith(("file:", "image:")):
        name = name.split(":", 1)[1]
    name = _EXTENSION.sub("", name).replace("_", " ").strip()
    return " | ".join(part for part in (name, shorten(description or "", TITLE_DESCRIPTION_CHARS)) if part)


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:.") + "…"


class _TextOnly(HTMLParser):
    """Collects an HTML fragment's text (entities unescaped); block tags become spaces."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")


def plain_text(value: Any) -> str | None:
    """HTML (as extmetadata values are) -> its text with entities unescaped and whitespace collapsed."""
    parser = _TextOnly()
    parser.feed(str(value))
    parser.close()
    text = " ".join("".join(parser.parts).split())
    return text or None
