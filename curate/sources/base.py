"""The image-source protocol and its registry.

A source turns one :class:`Query` (its text, language, class and the class's lemmas) into ranked
:class:`SearchHit` records (a URL to fetch plus provenance: page, title, licence, creator). Sources never
download; the ``candidates`` stage fetches every hit through :mod:`curate.http`. A source is one module:
a :class:`Source` subclass with a ``name`` (the YAML ``type:``), a ``Config`` beside it, registered with
``@SOURCES.register``. A source whose service cannot answer raises :class:`SourceError`: the stage keeps
what was collected, leaves that query's search pending (so the next run retries it) and reports the error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from curate.errors import CurateError
from curate.registry import Plugin, Registry

DEFAULT_USER_AGENT = "curate/0.1 (+https://github.com/curate-datasets/curate)"


class SourceError(CurateError):
    """A source's service could not answer: unreachable, refused (bad key), over quota, malformed answer."""

    exit_code = 1


@dataclass(frozen=True)
class Query:
    text: str
    wnid: str = ""
    lang: str = "en"
    kind: str = "synonym"
    lemmas: tuple[str, ...] = ()


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
    in the catalog (``searches.source``, ``candidates.source``). ``user_agent`` is sent with every request
    a source makes (a polite one names a contact)."""

    def __init__(self, config: Any = None, user_agent: str = DEFAULT_USER_AGENT):
        super().__init__(config)
        self.user_agent = user_agent

    @property
    def weight(self) -> float:
        """This source's share of a class's candidates (``candidates.max_per_class``), relative to the others."""
        return float(getattr(self.config, "weight", 1.0))

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

    def search(self, query: Query, limit: int) -> list[SearchHit]:
        raise NotImplementedError


def path_below(url: str, root: Path) -> str:
    """A ``file://`` URL as its path relative to ``root`` (its file name when it lies elsewhere); other
    URLs unchanged. Sources of local files show their URLs so: exports carry no curator's paths."""
    if not url.startswith("file://"):
        return url
    path = Path(unquote(urlparse(url).path))
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name


SOURCES: Registry[type[Source]] = Registry("image source")


def create_source(config: Any, user_agent: str = DEFAULT_USER_AGENT) -> Source:
    return SOURCES.get(config.type)(config, user_agent=user_agent)
