"""``webdataset`` writer: tar shards in the ``webdataset`` library's conventions, for sets too large for folders.

Writes under ``webdataset/``: ``train-000000.tar``, ``train-000001.tar``, …, ``val-000000.tar``, …; each
sample is three consecutive members sharing a key, :func:`sample_key`: ``<wnid>_<n>`` (``n02084071_3``), where
a class's id that is a label of the user's (``synsets.from_labels``) has every character other than a letter, a
digit, ``_`` or ``-`` written as ``%XX`` (UTF-8 bytes): webdataset takes everything up to the first dot of a
member's name as the key, so CUB-200's ``001.Black_footed_Albatross`` becomes ``001%2EBlack_footed_Albatross_3``.
Keys are unique (the escape is reversible and ``n`` numbers a class's images) and the same in every run of the
same export. The members: ``<key>.jpg`` (the stored JPEG), ``<key>.cls`` (the class index as text, which
webdataset decodes to an int) and ``<key>.json`` (wnid, class name, index and provenance). Samples are
shuffled with the run's seed before sharding, so every shard mixes classes (webdataset shuffles shards and
then only within a buffer). A shard closes before it would pass ``maxcount`` samples or about
``maxsize`` bytes (webdataset ``ShardWriter``'s two limits). Members have a fixed mtime, owner and mode,
so the same export gives byte-identical shards. Beside them: ``classes.json`` (index, wnid, name,
words) and ``shards.json`` (per split: each shard's file name and sample count, for epoch lengths).
Reading::

    webdataset.WebDataset("<export>/webdataset/train-{000000..000003}.tar").decode("pil").to_tuple("jpg", "cls")

Failure: an ``OSError`` reading the store or writing a shard propagates; the export stage then discards the
half-written export (:mod:`curate.atomic`).
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from curate.exporters.base import WRITERS
from curate.exporters.common import ExportClass, export_classes, provenance_record
from curate.registry import Plugin
from curate.sections import Section

if TYPE_CHECKING:
    import pandas as pd

SPLITS = ("train", "val")
BLOCK = tarfile.BLOCKSIZE  # 512: a member is a header block plus its data padded to whole blocks


@WRITERS.register
class WebDatasetWriter(Plugin):
    name = "webdataset"
    description = "WebDataset tar shards: webdataset/{train,val}-NNNNNN.tar of <key>.jpg/.cls/.json, classes.json"
    usage = ('import glob, webdataset as wds\nshards = sorted(glob.glob("./webdataset/train-*.tar"))\n'
             'ds = wds.WebDataset(shards, shardshuffle=len(shards)).shuffle(1000).decode("pil").to_tuple("jpg", "cls")')

    class Config(Section):
        type: Literal["webdataset"] = "webdataset"
        # Shards of 100 MB to a few GB stream efficiently; many shards let several workers and nodes each
        # read their own. Defaults: 10,000 samples (about 1 GB of 100 kB JPEGs) or 1 GB, what comes first.
        maxcount: int = Field(10_000, ge=1, description="most samples per shard")
        maxsize: int = Field(1_000_000_000, ge=BLOCK * 4, description="about the most bytes per shard")

    def write(self, table: pd.DataFrame, root: Path, ctx: Any) -> pd.DataFrame:
        classes = export_classes(ctx, table["wnid"])
        by_wnid = {c.wnid: c for c in classes}
        folder = root / "webdataset"
        folder.mkdir(parents=True, exist_ok=True)
        shards: dict[str, list[dict[str, Any]]] = {}
        for split in SPLITS:
            rows = shuffled(table[table["split"] == split], f"{ctx.seed}:webdataset:{split}")
            series = ShardSeries(folder, split, self.config.maxcount, self.config.maxsize)
            for row in ctx.progress(rows, total=len(rows), desc=f"export webdataset {split}", unit="img"):
                series.add(sample_key(row.wnid, row.n), sample(ctx, row, by_wnid[row.wnid]))
            shards[split] = series.close()
        _write_json(folder / "classes.json", [c.as_dict() for c in classes])
        _write_json(folder / "shards.json", shards)
        return table


def shuffled(rows: pd.DataFrame, seed: str) -> list[Any]:
    """The rows (in the table's wnid, sha256 order) shuffled reproducibly."""
    order = list(rows.itertuples())
    random.Random(seed).shuffle(order)
    return order


def sample_key(wnid: str, n: int) -> str:
    """``<wnid>_<n>`` with no dot, slash or space: each character of ``wnid`` other than a letter (of any
    script), a digit, ``_`` or ``-`` is written as ``%XX`` per UTF-8 byte, ``%`` included, so keys stay unique."""
    escaped = "".join(ch if ch.isalnum() or ch in "_-" else "".join(f"%{b:02X}" for b in ch.encode()) for ch in wnid)
    return f"{escaped}_{n}"


def sample(ctx: Any, row: Any, cls: ExportClass) -> dict[str, bytes]:
    meta = {"label": cls.index, "class_name": cls.name, **provenance_record(row)}
    return {
        "cls": str(cls.index).encode(),
        "jpg": ctx.layout.stored(row.store_path).read_bytes(),
        "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"),
    }


class ShardSeries:
    """Numbered tar shards ``<prefix>-NNNNNN.tar`` in ``folder``; a sample never spans two shards."""

    def __init__(self, folder: Path, prefix: str, maxcount: int, maxsize: int):
        self.folder, self.prefix, self.maxcount, self.maxsize = folder, prefix, maxcount, maxsize
        self.done: list[dict[str, Any]] = []
        self.tar: tarfile.TarFile | None = None
        self.count = 0

    def add(self, key: str, files: dict[str, bytes]) -> None:
        size = sum(BLOCK + -(-len(data) // BLOCK) * BLOCK for data in files.values())
        if self.tar is not None and (self.count >= self.maxcount or self.tar.offset + size > self.maxsize):
            self._finish()
        if self.tar is None:
            name = f"{self.prefix}-{len(self.done):06d}.tar"
            self.tar = tarfile.open(self.folder / name, "w", format=tarfile.PAX_FORMAT)
        for ext, data in sorted(files.items()):
            self.tar.addfile(_member(f"{key}.{ext}", len(data)), io.BytesIO(data))
        self.count += 1

    def close(self) -> list[dict[str, Any]]:
        if self.tar is not None:
            self._finish()
        return self.done

    def _finish(self) -> None:
        assert self.tar is not None
        name = Path(self.tar.name).name  # type: ignore[arg-type]
        self.tar.close()
        self.done.append({"url": name, "nsamples": self.count})
        self.tar, self.count = None, 0


def _member(name: str, size: int) -> tarfile.TarInfo:
    """A member header that depends on name and size only (reproducible shards)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
