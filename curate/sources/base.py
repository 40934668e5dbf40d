"""The image-source protocol and its registry.

A source turns one :class:`Query` (its text, language, class and the class's lemmas) into ranked
:class:`SearchHit` records (a URL to fetch plus provenance: page, title, licence, creator). Sources never
download; the ``candidates`` stage fetches every hit through :mod:`curate.http`. A source is one module:
a :class:`Source` subclass with a ``name`` (the YAML ``type:``), a ``Config`` beside it, registered with
``@SOURCES.register``. A source whose service cannot answer raises :class:`SourceError`: the stage keeps
what was collected, leaves that query's search pending (so the next run retries it) and reports the error.

A hit's ``page_url`` is kept only when it is an http(s) URL (:func:`web_url`; ``javascript:`` links become
None). The catalog keys searches and candidates by :attr:`Source.instance`: :func:`create_sources` gives
every configured source its own, and refuses (ConfigError) two it cannot tell apart. :func:`label_problem`
says which labels may name a class. Reads and writes nothing.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit

from curate.errors import ConfigError, CurateError
from curate.registry import Plugin, Registry

DEFAULT_USER_AGENT = "curate/0.1 (+https://github.com/curate-datasets/curate)"
MAX_LABEL_BYTES = 200  # a label names a folder in exports: file systems allow 255 bytes
CONTROL_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}  # controls, formats, line/paragraph separators


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "page_url", web_url(self.page_url))

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


class Source(Plugin):
    """Base class. ``name`` is the YAML ``type:`` value; :attr:`instance` identifies one configured source
    in the catalog (``searches.source``, ``candidates.source``). ``user_agent`` is sent with every request
    a source makes (a polite one names a contact)."""

    def __init__(self, config: Any = None, user_agent: str = DEFAULT_USER_AGENT):
        super().__init__(config)
        self.user_agent = user_agent
        self.instance_suffix = ""  # set by create_sources where two sources would be recorded alike

    @property
    def weight(self) -> float:
        """This source's share of a class's candidates (``candidates.max_per_class``), relative to the others."""
        return float(getattr(self.config, "weight", 1.0))

    @property
    def instance(self) -> str:
        return self.instance_base + (f"@{self.instance_suffix}" if self.instance_suffix else "")

    @property
    def instance_base(self) -> str:
        """The instance as the source alone names it (``local:<folder name>``), before :func:`create_sources`
        tells apart two that would be recorded alike."""
        return self.name

    @property
    def location(self) -> str | None:
        """The resolved file or folder this source reads, when it reads one and its config has no ``name``:
        what tells it apart from another source whose instance would be the same."""
        return None

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


def web_url(value: str | None) -> str | None:
    """``value`` when it is an http(s) URL with a host and no control characters, else None: a page link an
    API or a list hands over (``javascript:``, ``data:``) would be shown in reports and exported as is."""
    if not value or not value.isprintable():
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def label_problem(label: str) -> str | None:
    """Why a label cannot name a class, or None. A class's name becomes a folder in exports and a line of
    ``synsets.txt`` and of a dataset card's table, so: not empty, ``.`` or ``..``; no ``/``, ``\\`` or ``|``; no
    control characters; no spaces around it; at most ``MAX_LABEL_BYTES`` in UTF-8. Dots inside are fine
    (``001.Black_footed_Albatross``)."""
    if not label:
        return "is empty"
    if label in (".", "..") or any(c in label for c in "/\\"):
        return "cannot be a folder name"
    if "|" in label:
        return "holds '|' (it separates the columns of a dataset card's table)"
    if any(unicodedata.category(c) in CONTROL_CATEGORIES for c in label):
        return "holds a control character (a line break, a tab, ...)"
    if label != label.strip():
        return "starts or ends with a space"
    size = len(label.encode("utf-8"))
    return f"is {size} bytes long in UTF-8; at most {MAX_LABEL_BYTES}" if size > MAX_LABEL_BYTES else None


SOURCES: Registry[type[Source]] = Registry("image source")


def create_source(config: Any, user_agent: str = DEFAULT_USER_AGENT) -> Source:
    return SOURCES.get(config.type)(config, user_agent=user_agent)


def create_sources(configs: Sequence[Any], user_agent: str = DEFAULT_USER_AGENT) -> list[Source]:
    """The configured sources, each with an :attr:`~Source.instance` of its own; a ConfigError when two
    cannot be told apart (see :func:`instance_problems`)."""
    sources = _told_apart([create_source(c, user_agent) for c in configs])
    problems = _same_instance(sources, "candidates.sources")
    if problems:
        raise ConfigError(problems)
    return sources


def instance_problems(configs: Sequence[Any], where: str) -> list[str]:
    """Sources at ``where`` (a YAML path) that would be recorded in the catalog as another one is: the catalog
    keys searches by instance, so the later one would never be searched and its files never admitted."""
    return _same_instance(_told_apart([create_source(c) for c in configs]), where)


def _told_apart(sources: list[Source]) -> list[Source]:
    """Sources that would share an instance and read a file or folder get the suffix ``@`` and 6 hex digits
    of its path's sha256 (``local:photos@3f2a9c``); a source alone keeps its plain instance."""
    plain = [s.instance for s in sources]
    counts = Counter(plain)
    for source, name in zip(sources, plain, strict=True):
        if counts[name] > 1 and source.location:
            source.instance_suffix = hashlib.sha256(source.location.encode("utf-8")).hexdigest()[:6]
    return sources


def _same_instance(sources: list[Source], where: str) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for i, source in enumerate(sources):
        j = first.setdefault(source.instance, i)
        if j != i:
            problems.append(f"{where}.{i}: would be recorded as {source.instance!r} like {where}.{j}, and never "
                            "searched: give one of them its own 'name' (or remove the repeat)")
    return problems
