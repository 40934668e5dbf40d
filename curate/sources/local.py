"""``local`` source: a folder of images with captions, searched by keyword.

Reads: image files under ``root`` (jpg, jpeg, png, gif, webp, bmp, tif, tiff) and their captions from
a CSV index (columns ``file``, ``caption``; optional ``license``, ``creator``, ``true_wnids``,
``origin``), a sidecar ``<image>.txt`` and/or the file-name words. Writes nothing.
Matching is whole-word and case-insensitive: every word of the query must appear among the caption
words, where a plural ("dogs", "boxes", "berries") matches its singular. A bad index (missing columns,
a named file that does not exist) is a ConfigError; an unreadable sidecar is skipped with a warning.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from curate.errors import ConfigError
from curate.sources.base import SearchHit, Source, register

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
_WORD = re.compile(r"[a-z0-9]+")


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


@register
class LocalSource(Source):
    type = "local"

    def __init__(self, config):
        super().__init__(config)
        self._entries: list[Entry] | None = None

    @property
    def name(self) -> str:
        return f"local:{self.config.root.name}"

    def search(self, query: str, limit: int) -> list[SearchHit]:
        wanted = [word_forms(w) for w in tokenize(query)]
        if not wanted:
            return []
        hits = [e for e in self.entries() if all(forms & e.words for forms in wanted)]
        return [self._hit(e) for e in hits[:limit]]

    def entries(self) -> list[Entry]:
        if self._entries is None:
            self._entries = self._scan()
            log.info("%s: %d captioned images", self.name, len(self._entries))
        return self._entries

    def _hit(self, entry: Entry) -> SearchHit:
        return SearchHit(
            url=entry.path.resolve().as_uri(), title=entry.caption, license=entry.license,
            creator=entry.creator, true_wnids=entry.true_wnids,
        )

    def _scan(self) -> list[Entry]:
        root = self.config.root
        index = self._read_index(root / self.config.index) if self.config.index else {}
        files = sorted(index) if index else sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return [self._entry(path, index.get(path, {})) for path in files]

    def _entry(self, path: Path, meta: dict[str, str]) -> Entry:
        parts = []
        if "index" in self.config.captions:
            parts.append(meta.get("caption", ""))
        if "sidecar" in self.config.captions:
            parts.append(_read_sidecar(path))
        if "filename" in self.config.captions:
            parts.append(path.stem.replace("_", " ").replace("-", " "))
        caption = " | ".join(p for p in parts if p)
        return Entry(
            path=path, caption=caption, words=frozenset(tokenize(caption)),
            license=meta.get("license") or None, creator=meta.get("creator") or None,
            true_wnids=meta.get("true_wnids") or None,
        )

    def _read_index(self, index_path: Path) -> dict[Path, dict[str, str]]:
        with index_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"file", "caption"} - set(reader.fieldnames or [])
            if missing:
                raise ConfigError(f"{index_path}: index lacks the column(s) {', '.join(sorted(missing))}")
            rows = {(self.config.root / row["file"]).resolve(): row for row in reader}
        absent = [str(p) for p in rows if not p.is_file()]
        if absent:
            raise ConfigError(f"{index_path}: {len(absent)} listed file(s) not found, e.g. {absent[0]}")
        return rows


def _read_sidecar(path: Path) -> str:
    sidecar = path.with_suffix(".txt")
    if not sidecar.is_file():
        return ""
    try:
        return sidecar.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        log.warning("cannot read caption %s: %s", sidecar, exc)
        return ""
