"""The image-source protocol and its registry.

A source turns one text query into ranked :class:`SearchHit` records (a URL to fetch plus
provenance: page, title, licence, creator). Sources never download; the ``candidates`` stage
fetches every hit through :mod:`curate.http`. A source is one module: a :class:`Source` subclass with
a ``name`` (the YAML ``type:``), a ``Config`` beside it, registered with ``@SOURCES.register``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curate.registry import Plugin, Registry


@dataclass(frozen=True)
class SearchHit:
    url: str
    title: str = ""
    page_url: str | None = None
    license: str | None = None
    creator: str | None = None
    true_wnids: str | None = None  # ground truth when the corpus carries it (space-separated wnids)

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


class Source(Plugin):
    """Base class. ``name`` is the YAML ``type:`` value; :attr:`instance` identifies one configured source
    in the catalog (``searches.source``, ``candidates.source``)."""

    @property
    def instance(self) -> str:
        return self.name

    @property
    def file_root(self) -> Path | None:
        """The folder ``file://`` URLs of this source may point into; None: no ``file://`` URLs at all."""
        return None

    def display_url(self, url: str) -> str:
        """The URL as exported (local sources give paths relative to their root)."""
        return url

    def search(self, query: str, limit: int) -> list[SearchHit]:
        raise NotImplementedError


SOURCES: Registry[type[Source]] = Registry("image source")


def create_source(config: Any) -> Source:
    return SOURCES.get(config.type)(config)
