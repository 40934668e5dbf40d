"""``urls`` source: a list of image URLs (the files img2dataset reads), labelled by class or by caption.

Reads: one file at ``path``, by suffix: ``.csv`` / ``.tsv`` (optionally ``.gz``), ``.parquet``, ``.jsonl``
or ``.json`` (JSON lines, or one JSON array of records), once, on the first search. Writes nothing.
Columns: ``url`` (``url_col``) is required; optional are ``caption`` (``caption_col``), ``wnid``,
``class``, the provenance columns ``license``, ``creator``, ``page_url`` and ground truth ``true_wnids``.
A row with a ``wnid`` belongs to that class only; a row with a ``class`` (and no wnid) belongs to the class
having that lemma (case-insensitive) or wnid. Labelled rows are candidates of their class without search:
every query of the class returns them (the candidates stage keeps one per class and URL), first, in file
order. Rows without ``wnid`` and ``class`` are searched by caption like the ``local`` source: every query
word must appear among the caption's words, whole and case-insensitive, where a plural matches its
singular. Only http(s) URLs are handed out: ``file://`` and other schemes are skipped with a warning
counting them (only the ``local`` source may name files). A file that cannot be read or lacks the URL
column is a ConfigError naming the file. A ``page_url`` that is not an http(s) URL becomes None. The catalog
records the source as ``urls:<file name>``, or ``urls:<name>`` when the config sets ``name``; two lists with
one file name and no ``name`` are told apart by a hash of their paths (:func:`~curate.sources.base.create_sources`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field

from curate.errors import ConfigError
from curate.sections import Section
from curate.sources.base import DEFAULT_USER_AGENT, SOURCES, Query, SearchHit, Source
from curate.sources.local import tokenize, word_forms
from curate.sources.tabular import file_format, known_suffixes, read_table
from curate.sources.web import INSTANCE_NAME

log = logging.getLogger(__name__)
WEB_SCHEMES = {"http", "https"}


@dataclass(frozen=True)
class UrlRow:
    url: str
    caption: str = ""
    license: str | None = None
    creator: str | None = None
    page_url: str | None = None
    true_wnids: str | None = None


class UrlsConfig(Section):
    type: Literal["urls"] = "urls"
    path: Path = Field(description="CSV/TSV, Parquet or JSONL file of image URLs (relative to the pipeline file)")
    name: str | None = Field(
        None, pattern=INSTANCE_NAME, description="the catalog records this source as urls:<name> (default: file name)"
    )
    url_col: str = "url"
    caption_col: str = "caption"
    max_per_query: int = Field(1000, ge=1)
    weight: float = Field(1.0, gt=0, description="share of candidates.max_per_class, relative to other sources")

    def check_inputs(self, where: str) -> list[str]:
        if not self.path.is_file():
            return [f"{where}.path: file not found: {self.path}"]
        if file_format(self.path) is None:
            return [f"{where}.path: unsupported file type {self.path.name!r}; expected {known_suffixes()}"]
        return []


@SOURCES.register
class UrlsSource(Source):
    name = "urls"
    description = "a CSV / Parquet / JSONL list of image URLs, labelled by wnid or class, or searched by caption"
    Config = UrlsConfig

    def __init__(self, config: UrlsConfig, user_agent: str = DEFAULT_USER_AGENT):
        super().__init__(config, user_agent)
        self._index: _Index | None = None

    @property
    def instance_base(self) -> str:
        return f"{self.name}:{self.config.name or self.config.path.name}"

    @property
    def location(self) -> str | None:
        return None if self.config.name else str(self.config.path.resolve())

    def search(self, query: Query, limit: int) -> list[SearchHit]:
        index = self.index()
        labels = {_label(lemma) for lemma in query.lemmas} | {_label(query.wnid)}
        labelled = set(index.by_wnid.get(_label(query.wnid), ())) if query.wnid else set()
        for label in labels - {""}:
            labelled.update(index.by_label.get(label, ()))
        found = sorted(labelled) + [i for i in index.match_caption(query.text) if i not in labelled]
        return [_hit(index.rows[i]) for i in found[:limit]]

    def index(self) -> _Index:
        if self._index is None:
            self._index = self._load()
            log.info("%s: %d URLs (%d labelled by wnid, %d by class, %d searched by caption)", self.instance,
                     len(self._index.rows), sum(map(len, self._index.by_wnid.values())),
                     sum(map(len, self._index.by_label.values())), len(self._index.unlabelled))
        return self._index

    def _load(self) -> _Index:
        path, cfg = self.config.path, self.config
        columns = read_table(path, "the URL list")
        if cfg.url_col not in columns:
            raise ConfigError(f"{path}: the URL list lacks the column {cfg.url_col!r} "
                              f"(it has: {', '.join(map(str, columns)) or 'no columns'})")
        n = len(columns[cfg.url_col])
        empty = [""] * n

        def col(name: str) -> list[str]:
            return columns.get(name, empty)

        urls, captions, wnids, classes = col(cfg.url_col), col(cfg.caption_col), col("wnid"), col("class")
        licenses, creators, pages, truths = col("license"), col("creator"), col("page_url"), col("true_wnids")
        index = _Index()
        skipped: Counter[str] = Counter()
        for i in range(n):
            url = urls[i]
            scheme = urlsplit(url).scheme.lower() if url else ""
            if scheme not in WEB_SCHEMES:
                skipped[scheme or "(empty)"] += 1
                continue
            row = UrlRow(url=url, caption=captions[i], license=licenses[i] or None, creator=creators[i] or None,
                         page_url=pages[i] or None, true_wnids=truths[i] or None)
            index.add(row, _label(wnids[i]), _label(classes[i]))
        if skipped:
            kinds = ", ".join(f"{scheme}: {count}" for scheme, count in sorted(skipped.items()))
            log.warning("%s: skipped %d rows whose URL is not http(s) (%s); file:// URLs are only for the "
                        "local source", self.instance, sum(skipped.values()), kinds)
        return index


class _Index:
    """Rows in file order; labelled rows by wnid and by class; an inverted word index of the others."""

    def __init__(self) -> None:
        self.rows: list[UrlRow] = []
        self.by_wnid: dict[str, list[int]] = {}
        self.by_label: dict[str, list[int]] = {}
        self.unlabelled: list[int] = []
        self.words: dict[str, set[int]] = {}

    def add(self, row: UrlRow, wnid: str, label: str) -> None:
        i = len(self.rows)
        self.rows.append(row)
        if wnid:
            self.by_wnid.setdefault(wnid, []).append(i)
        elif label:
            self.by_label.setdefault(label, []).append(i)
        else:
            self.unlabelled.append(i)
            for word in set(tokenize(row.caption)):
                self.words.setdefault(word, set()).add(i)

    def match_caption(self, text: str) -> list[int]:
        """Unlabelled rows whose caption holds every word of ``text`` (or its plural), in file order."""
        wanted = tokenize(text)
        if not wanted:
            return []
        found: set[int] | None = None
        for word in wanted:
            rows = set().union(*(self.words.get(form, set()) for form in word_forms(word)))
            found = rows if found is None else found & rows
            if not found:
                return []
        return sorted(found or ())


def _label(text: str) -> str:
    """A class name or wnid as compared: lower case, underscores as spaces, single spaces."""
    return " ".join(text.replace("_", " ").lower().split())


def _hit(row: UrlRow) -> SearchHit:
    return SearchHit(url=row.url, title=row.caption, page_url=row.page_url, license=row.license,
                     creator=row.creator, true_wnids=row.true_wnids)
