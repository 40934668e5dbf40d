"""``local`` source: a folder of images with captions, searched by keyword.

Reads: image files under ``root`` (jpg, jpeg, png, gif, webp, bmp, tif, tiff) and their captions from
a CSV index (columns ``file``, ``caption``; optional ``license``, ``creator``, ``true_wnids``,
``origin``), a sidecar ``<image>.txt`` and/or the file-name words. Writes nothing.
Every file must lie inside ``root``: an index row naming an absolute path, a ``..`` path or a symlink
that leads outside is a ConfigError naming the row; such files found by scanning are skipped with a
warning, and so are files that are not regular (a FIFO, a device). The index and the sidecars are read
only as regular files inside ``root`` once their links are resolved, opened without following a link and
without waiting on a FIFO (:func:`open_inside`); a sidecar over ``MAX_CAPTION_BYTES`` (64 KiB) is no
caption. Only this source may hand out ``file://`` URLs, and only into its root.
Matching is whole-word and case-insensitive: every word of the query must appear among the caption
words, where a plural ("dogs", "boxes", "berries") matches its singular. A bad index (missing columns,
a named file that does not exist, an index leading outside ``root``, not a regular file, not UTF-8 or not
CSV) is a ConfigError; a sidecar that is unreadable, too large, not a regular file or leads outside ``root`` is
skipped with a warning. The catalog records the source as ``local:<folder name>`` (``local:<name>`` when
the config sets ``name``; :func:`~curate.sources.base.create_sources` tells apart two folders of one name).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from curate.errors import ConfigError
from curate.sections import Section
from curate.sources.base import DEFAULT_USER_AGENT, SOURCES, Query, SearchHit, Source, path_below
from curate.sources.web import INSTANCE_NAME

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
_WORD = re.compile(r"[a-z0-9]+")
MAX_CAPTION_BYTES = 64 * 1024  # a sidecar longer than this is not a caption: skipped with a warning


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def word_forms(word: str) -> set[str]:
    """The forms of a query word that count as a match: itself and its regular plurals."""
    forms = {word, word + "s", word + "es"}
    if word.endswith("y") and len(word) > 2:
        forms.add(word[:-1] + "ies")
    return forms


@dataclass(frozen=True)
class Entry:
    path: Path
    caption: str
    words: frozenset[str]
    license: str | None = None
    creator: str | None = None
    true_wnids: str | None = None


class LocalSourceConfig(Section):
    type: Literal["local"] = "local"
    root: Path
    name: str | None = Field(
        None, pattern=INSTANCE_NAME, description="the catalog records this source as local:<name> (default: the "
                                                  "folder's name)",
    )
    index: str | None = Field(None, description="CSV file (relative to root) with columns file, caption")
    captions: list[Literal["index", "sidecar", "filename"]] = ["index", "sidecar", "filename"]
    max_per_query: int = Field(500, ge=1)
    weight: float = Field(1.0, gt=0, description="share of candidates.max_per_class, relative to other sources")

    def check_inputs(self, where: str) -> list[str]:
        if not self.root.is_dir():
            return [f"{where}.root: folder not found: {self.root}"]
        index = self.root / self.index if self.index else None
        if index is not None and not os.path.lexists(index):
            return [f"{where}.index: file not found: {index}"]
        problem = file_problem(index, self.root.resolve()) if index is not None else None
        return [f"{where}.index: {index}: {problem}"] if problem else []


@SOURCES.register
class LocalSource(Source):
    name = "local"
    description = "a folder of captioned images, searched by keyword"
    Config = LocalSourceConfig

    def __init__(self, config: LocalSourceConfig, user_agent: str = DEFAULT_USER_AGENT):
        super().__init__(config, user_agent)
        self.root = config.root.resolve()
        self._entries: list[Entry] | None = None

    @property
    def instance_base(self) -> str:
        return f"local:{self.config.name or self.config.root.name}"

    @property
    def location(self) -> str | None:
        return None if self.config.name else str(self.root)

    @property
    def file_root(self) -> Path:
        return self.root

    def display_url(self, url: str) -> str:
        """``file://`` URLs as paths relative to the corpus root: exports carry no curator's paths."""
        return path_below(url, self.root)

    def search(self, query: Query, limit: int) -> list[SearchHit]:
        wanted = [word_forms(w) for w in tokenize(query.text)]
        if not wanted:
            return []
        hits = [e for e in self.entries() if all(forms & e.words for forms in wanted)]
        return [self._hit(e) for e in hits[:limit]]

    def entries(self) -> list[Entry]:
        if self._entries is None:
            self._entries = self._scan()
            log.info("%s: %d captioned images", self.instance, len(self._entries))
        return self._entries

    def _hit(self, entry: Entry) -> SearchHit:
        return SearchHit(
            url=entry.path.as_uri(), title=entry.caption, license=entry.license,
            creator=entry.creator, true_wnids=entry.true_wnids,
        )

    def _scan(self) -> list[Entry]:
        index = self._read_index(self.root / self.config.index) if self.config.index else {}
        files = sorted(index) if index else self._walk()
        return [self._entry(path, index.get(path, {})) for path in files]

    def _walk(self) -> list[Path]:
        found = []
        for path in sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            resolved = _resolved(path)
            if resolved is None:
                log.warning("%s: skipping %s: its links form a loop", self.instance, path)
            elif not self._inside(resolved):
                log.warning("%s: skipping %s: it leads outside the corpus root", self.instance, path)
            elif not resolved.is_file():
                log.warning("%s: skipping %s: not a regular file", self.instance, path)
            else:
                found.append(resolved)
        return found

    def _inside(self, resolved: Path) -> bool:
        return resolved.is_relative_to(self.root)

    def _entry(self, path: Path, meta: dict[str, str]) -> Entry:
        parts = []
        if "index" in self.config.captions:
            parts.append(meta.get("caption", ""))
        if "sidecar" in self.config.captions:
            parts.append(self._read_sidecar(path))
        if "filename" in self.config.captions:
            parts.append(path.stem.replace("_", " ").replace("-", " "))
        caption = " | ".join(p for p in parts if p)
        return Entry(
            path=path, caption=caption, words=frozenset(tokenize(caption)),
            license=meta.get("license") or None, creator=meta.get("creator") or None,
            true_wnids=meta.get("true_wnids") or None,
        )

    def _read_index(self, index_path: Path) -> dict[Path, dict[str, str]]:
        try:
            with os.fdopen(open_inside(index_path, self.root), newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(io.StringIO(fh.read(), newline=""))
            rows, problems = self._index_rows(index_path, reader)
        except UnicodeDecodeError:
            raise ConfigError(f"{index_path}: cannot read the index: it is not UTF-8 text") from None
        except (OSError, ValueError, csv.Error) as exc:
            raise ConfigError(f"{index_path}: cannot read the index: {exc}") from None
        if problems:
            raise ConfigError(problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []))
        return rows

    def _index_rows(self, index_path: Path, reader: csv.DictReader) -> tuple[dict[Path, dict[str, str]], list[str]]:
        """The index's rows by resolved file, and the rows refused, each naming its line."""
        missing = {"file", "caption"} - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(f"{index_path}: index lacks the column(s) {', '.join(sorted(missing))}")
        rows, problems = {}, []
        for line, row in enumerate(reader, start=2):
            path, problem = self._index_path(row["file"] or "")
            if problem:
                problems.append(f"{index_path} line {line}: file {row['file']!r} {problem}")
            else:
                rows[path] = row
        return rows, problems

    def _index_path(self, name: str) -> tuple[Path, str | None]:
        """The resolved path of an index row's file, or why it is refused."""
        if not name or Path(name).is_absolute():
            return Path(), "must be a path relative to the corpus root"
        resolved = _resolved(self.root / name)
        if resolved is None or not self._inside(resolved):
            return resolved or Path(), f"leads outside the corpus root {self.root}"
        if not resolved.is_file():
            return resolved, "not found"
        return resolved, None


    def _read_sidecar(self, path: Path) -> str:
        sidecar = path.with_suffix(".txt")
        if not os.path.lexists(sidecar):
            return ""
        try:
            return read_caption(sidecar, self.root)
        except (OSError, ValueError) as exc:
            log.warning("%s: caption %s skipped: %s", self.instance, sidecar, exc)
            return ""


def _resolved(path: Path) -> Path | None:
    """``path`` with every link resolved; None when its links form a loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return None


def open_inside(path: Path, root: Path) -> int:
    """A read-only descriptor of ``path``, which must be a regular file inside ``root`` (resolved) once its
    links are resolved; ValueError saying why not. Opening never blocks (a FIFO is refused, not waited on)."""
    resolved = _resolved(path)
    if resolved is None or not resolved.is_relative_to(root):
        raise ValueError(f"it leads outside the corpus root {root}")
    fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError("not a regular file")
    return fd


def file_problem(path: Path, root: Path) -> str | None:
    """Why ``path`` cannot be read as a file of the corpus (:func:`open_inside`), or None."""
    try:
        os.close(open_inside(path, root))
    except (OSError, ValueError) as exc:
        return str(exc)
    return None


def read_caption(path: Path, root: Path) -> str:
    """A sidecar caption: a regular file inside ``root``, at most ``MAX_CAPTION_BYTES``; ValueError otherwise."""
    with os.fdopen(open_inside(path, root), "rb") as fh:
        data = fh.read(MAX_CAPTION_BYTES + 1)
    if len(data) > MAX_CAPTION_BYTES:
        raise ValueError(f"larger than {MAX_CAPTION_BYTES // 1024} KiB")
    return data.decode("utf-8", errors="replace").strip()
