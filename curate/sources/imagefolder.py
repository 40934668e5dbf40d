"""``imagefolder`` source: a labelled image collection as it already is, class folders or a table.

Reads: either an ImageFolder tree under ``root`` (``<label>/<file>``; files in deeper folders belong to
their top folder's label, as in torchvision's ``ImageFolder``; hidden files and folders, and files lying
directly in ``root``, are skipped), or a table (``table``: CSV, TSV or Parquet with columns ``path`` and
``label``; a relative path is relative to the table's folder, an absolute one must lie inside ``root``).
In a tree, image files are picked by suffix; a table's files are taken whatever their suffix (the download
step rejects what does not decode). Writes nothing.

Search: every query of a class returns the files whose label is that class's id (``wnid``), in path
order; the query's words are not used. With ``synsets.from_labels`` the labels are the run's classes
(:meth:`ImageFolderSource.labels`). URLs are ``file://`` URLs of the files' paths *inside* ``root`` (never
their symlink targets), so reports and exports show each file's path relative to ``root``.

Path safety: a table path with a ``..`` part, or one outside ``root``, is refused. Symbolic links (to files
and to class folders) are followed by default, as torchvision's ``ImageFolder`` and ``ls`` do: a dataset
built as a view of another one (class folders of links into a shared copy) is the common case, and this
source reads only what its own tree or table names, chosen by the person auditing it; only files that
decode as images are ever stored. :attr:`ImageFolderSource.file_root` then lets the download step read a
file named inside ``root`` wherever its links lead (:class:`curate.http.FileRoot`), and nothing else.
``follow_symlinks: false`` applies the ``local`` source's rule instead: a
file that leads outside ``root`` is skipped (tree, with a warning) or refused (table).

``listing_sha256`` (written by ``curate audit``) pins the listing a run was started with: the candidates
stage searches each class once, so files added, moved or relabelled afterwards would be missed; a listing
that changed is a ConfigError. Failure: a table without the columns, listed files missing or outside
``root``, labels that cannot name a class (:func:`~curate.sources.base.label_problem`; a tree's folder
names are checked already by ``curate validate``): one ConfigError listing the problems (the first 20).
The catalog records the source as ``imagefolder:<folder or table name>`` (``imagefolder:<name>`` when the
config sets ``name``; :func:`~curate.sources.base.create_sources` tells apart two of one name).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from curate.errors import ConfigError
from curate.http import FileRoot
from curate.sections import Section
from curate.sources.base import DEFAULT_USER_AGENT, SOURCES, Query, SearchHit, Source, label_problem, path_below
from curate.sources.local import IMAGE_SUFFIXES
from curate.sources.tabular import read_table
from curate.sources.web import INSTANCE_NAME

log = logging.getLogger(__name__)
TABLE_FORMATS = (".csv", ".tsv", ".parquet")  # of curate.sources.tabular's: files that hold path, label
TABLE_COLUMNS = ("path", "label")
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Entry:
    label: str
    path: Path  # absolute, inside root as written (a symlink is not resolved)
    rel: str  # the path relative to root, with forward slashes


class ImageFolderConfig(Section):
    type: Literal["imagefolder"] = "imagefolder"
    root: Path = Field(description="the ImageFolder tree (<label>/<file>); for a table, the folder its files lie in")
    table: Path | None = Field(None, description="CSV, TSV or Parquet with columns path, label (instead of folders)")
    name: str | None = Field(
        None, pattern=INSTANCE_NAME, description="the catalog records this source as imagefolder:<name> "
                                                  "(default: the folder's or table's name)",
    )
    follow_symlinks: bool = Field(True, description="read files that are links to elsewhere (views of a dataset)")
    listing_sha256: str | None = Field(
        None, description="the listing the run started with (curate audit writes it); a changed one stops the run"
    )
    weight: float = Field(1.0, gt=0, description="share of candidates.max_per_class, relative to other sources")

    def check_inputs(self, where: str) -> list[str]:
        if not self.root.is_dir():
            return [f"{where}.root: folder not found: {self.root}"]
        if self.table is not None and not self.table.is_file():
            return [f"{where}.table: file not found: {self.table}"]
        if self.table is not None and self.table.suffix.lower() not in TABLE_FORMATS:
            return [f"{where}.table: unsupported file type {self.table.name!r}; expected .csv, .tsv or .parquet"]
        return [] if self.table is not None else folder_label_problems(self.root, f"{where}.root")


@SOURCES.register
class ImageFolderSource(Source):
    name = "imagefolder"
    description = "an existing labelled dataset: class folders (ImageFolder) or a table of path, label"
    Config = ImageFolderConfig

    def __init__(self, config: ImageFolderConfig, user_agent: str = DEFAULT_USER_AGENT):
        super().__init__(config, user_agent)
        self.root = config.root.resolve()
        self._entries: list[Entry] | None = None
        self._by_label: dict[str, list[Entry]] = {}

    @property
    def instance_base(self) -> str:
        return f"{self.name}:{self.config.name or (self.config.table or self.config.root).name}"

    @property
    def location(self) -> str | None:
        if self.config.name:
            return None
        return f"{self.root}\t{self.config.table.resolve()}" if self.config.table else str(self.root)

    @property
    def file_root(self) -> FileRoot:
        """``root``; with ``follow_symlinks`` the files it names may be links leading out of it."""
        return FileRoot(self.root, links_out=self.config.follow_symlinks)

    def display_url(self, url: str) -> str:
        """``file://`` URLs as paths relative to ``root``: exports carry no curator's paths."""
        return path_below(url, self.root)

    def search(self, query: Query, limit: int) -> list[SearchHit]:
        self.entries()
        return [SearchHit(url=e.path.as_uri(), title=e.rel) for e in self._by_label.get(query.wnid, [])[:limit]]

    def labels(self) -> dict[str, int]:
        """Every label (a class) and its number of files, in sorted order."""
        self.entries()
        return {label: len(self._by_label[label]) for label in sorted(self._by_label)}

    def listing_sha256(self) -> str:
        return listing_digest(self.entries())

    def entries(self) -> list[Entry]:
        if self._entries is None:
            entries = self._read_table() if self.config.table else self._walk()
            self._check_listing(entries)
            self._entries = entries
            for entry in entries:
                self._by_label.setdefault(entry.label, []).append(entry)
            log.info("%s: %d images in %d classes", self.instance, len(entries), len(self._by_label))
        return self._entries

    # ------------------------------------------------------------------ the tree
    def _walk(self) -> list[Entry]:
        problems = folder_label_problems(self.root, str(self.root))
        if problems:
            raise ConfigError(problems[:MAX_PROBLEMS])
        entries, loose, outside = [], 0, 0
        for top in sorted(self.root.iterdir()):
            if top.name.startswith("."):
                continue
            if top.is_file():
                loose += top.suffix.lower() in IMAGE_SUFFIXES
            elif top.is_dir() and not self._allowed(top):
                outside += 1
            elif top.is_dir():
                found, skipped = self._walk_class(top)
                entries += found
                outside += skipped
        if loose:
            log.warning("%s: %d images directly in %s skipped: an image's label is its top folder",
                        self.instance, loose, self.root)
        if outside:
            log.warning("%s: %d files or folders skipped: they lead outside %s (follow_symlinks is off)",
                        self.instance, outside, self.root)
        return entries

    def _walk_class(self, top: Path) -> tuple[list[Entry], int]:
        """The images under one class folder (in path order) and how many were refused as leading outside."""
        found, outside, seen = [], 0, set()
        for folder, dirs, files in os.walk(top, followlinks=self.config.follow_symlinks):
            real = os.path.realpath(folder)
            if real in seen:  # a link back up the tree: walk each real folder once
                dirs.clear()
                continue
            seen.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(folder, name)
                if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if not self._allowed(path):
                    outside += 1
                    continue
                found.append(Entry(top.name, path, path.relative_to(self.root).as_posix()))
        return found, outside

    def _allowed(self, path: Path) -> bool:
        return self.config.follow_symlinks or path.resolve().is_relative_to(self.root)

    # ------------------------------------------------------------------ the table
    def _read_table(self) -> list[Entry]:
        assert self.config.table is not None
        table = self.config.table
        if table.suffix.lower() not in TABLE_FORMATS:
            raise ConfigError(f"{table}: unsupported file type; expected .csv, .tsv or .parquet")
        columns = read_table(table, "the table")
        missing = [c for c in TABLE_COLUMNS if c not in columns]
        if missing:
            raise ConfigError(f"{table}: the table lacks the column(s) {', '.join(missing)} "
                              f"(it has: {', '.join(columns) or 'no columns'})")
        entries, problems = [], []
        text = table.suffix.lower() != ".parquet"
        for i, (name, label) in enumerate(zip(columns["path"], columns["label"], strict=True)):
            entry, problem = self._table_entry(table.parent, name.strip(), label.strip())
            if problem:
                problems.append(f"{table} {f'line {i + 2}' if text else f'row {i + 1}'}: {problem}")
            else:
                entries.append(entry)
        if problems:
            more = len(problems) - MAX_PROBLEMS
            raise ConfigError(problems[:MAX_PROBLEMS] + ([f"... and {more} more"] if more > 0 else []))
        return sorted(set(entries), key=lambda e: (e.label, e.rel))

    def _table_entry(self, base: Path, name: str, label: str) -> tuple[Entry | None, str | None]:
        """One row as an entry, or why it is refused."""
        problem = label_problem(label)
        if problem:
            return None, f"label {label!r} {problem}"
        if not name:
            return None, "empty path"
        if ".." in Path(name).parts:
            return None, f"file {name!r}: '..' is not allowed in a path"
        path = Path(name) if Path(name).is_absolute() else base / name
        if not path.is_relative_to(self.root):
            if not path.resolve().is_relative_to(self.root):
                return None, f"file {name!r} lies outside the root {self.root}"
            path = path.resolve()  # the root written another way (through a link to it)
        if not self._allowed(path):
            return None, f"file {name!r} leads outside the root {self.root} (follow_symlinks is off)"
        if not path.is_file():
            return None, f"file {name!r} not found"
        return Entry(label, path, path.relative_to(self.root).as_posix()), None

    # ------------------------------------------------------------------ checks
    def _check_listing(self, entries: list[Entry]) -> None:
        expected = self.config.listing_sha256
        if expected and listing_digest(entries) != expected:
            raise ConfigError(f"{self.instance}: the files or labels under {self.root} changed since this run "
                              "started (listing_sha256 differs); classes are searched once, so changes would be "
                              "missed: start a new run directory for the dataset as it is now")



def listing_digest(entries: list[Entry]) -> str:
    """A short fingerprint of which file carries which label."""
    text = "\n".join(sorted(f"{e.label}\t{e.rel}" for e in entries))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def folder_label_problems(root: Path, where: str) -> list[str]:
    """The class folders directly in ``root`` whose names cannot be labels, each with why."""
    try:
        names = sorted(entry.name for entry in os.scandir(root) if not entry.name.startswith(".") and entry.is_dir())
    except OSError as exc:
        return [f"{where}: cannot list {root}: {exc.strerror}"]
    problems = [(name, label_problem(name)) for name in names]
    return [f"{where}: class folder {name!r}: the label {problem}" for name, problem in problems if problem]
