"""The image-source protocol and its registry.

A source turns one text query into ranked :class:`SearchHit` records (a URL to fetch plus
provenance: page, title, licence, creator). Sources never download; the ``candidates`` stage
fetches every hit through :mod:`curate.http`. Register a source class with :func:`register`;
a duplicate ``type`` is an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


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


class Source:
    """Base class. ``type`` is the YAML ``type:`` value; ``name`` identifies one configured instance."""

    type: ClassVar[str]

    def __init__(self, config: Any):
        self.config = config

    @property
    def name(self) -> str:
        return self.type

    def search(self, query: str, limit: int) -> list[SearchHit]:
        raise NotImplementedError


_SOURCES: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    if cls.type in _SOURCES:
        raise ValueError(f"image source {cls.type!r} registered twice")
    _SOURCES[cls.type] = cls
    return cls


def create_source(config: Any) -> Source:
    return _SOURCES[config.type](config)
