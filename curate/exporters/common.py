"""What every writer shares: the class list (index, wnid, name, words) and one image's provenance record.

Class index ``i`` is the position of the wnid in sorted order, which is what
``torchvision.datasets.ImageFolder`` assigns to the ``imagenet`` writer's class folders; the ``webdataset``
writer's ``.cls`` and the ``hf_imagefolder`` writer's ``ClassLabel`` use the same numbers, so a model trained
on one format reads the others. ``name`` is the synset's first lemma (``dog``), made unique with the wnid
where two exported synsets share it (``mouse (n02330245)`` and ``mouse (n03793489)``): ``ClassLabel``
names must be unique.

Exported images are hard links into the run's image store by default (``export.link: hardlink``): the same
file under a second name, so no extra space, and an edit of an exported file edits the stored one (and every
other export of it). ``export.link: copy``, or a file system that refuses links, gives files of their own.

Reads: the catalog's synsets; the store's image files. Writes: :func:`link_or_copy` the one file it is
given. Failure: a wnid missing from the catalog raises ``KeyError``; an ``OSError`` of a copy propagates.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Text columns of an exported image's provenance (labels.csv carries the same and more).
TEXT_COLUMNS = ("wnid", "sha256", "source", "url", "page_url", "title", "license", "creator")


@dataclass(frozen=True)
class ExportClass:
    index: int
    wnid: str
    name: str
    words: str  # all lemmas, comma-separated: ImageNet's LOC_synset_mapping text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_classes(ctx: Any, wnids: Iterable[str]) -> list[ExportClass]:
    """The exported classes in index order (sorted wnids)."""
    lemmas = {r["wnid"]: r["lemmas"] for r in ctx.catalog.synsets()}
    ordered = sorted(set(wnids))
    first = {wnid: lemmas[wnid].split(", ")[0] for wnid in ordered}
    taken = Counter(first.values())
    return [
        ExportClass(i, wnid, first[wnid] if taken[first[wnid]] == 1 else f"{first[wnid]} ({wnid})", lemmas[wnid])
        for i, wnid in enumerate(ordered)
    ]


def provenance_record(row: Any) -> dict[str, Any]:
    """One exported image's provenance from a table row, typed the same in every record (missing text: "")."""
    text = {c: _text(getattr(row, c, None)) for c in TEXT_COLUMNS}
    return {**text, "p_true": float(row.p_true), "n_votes": int(row.n_votes), "label_issue": bool(row.label_issue)}


def _text(value: Any) -> str:
    import pandas as pd

    return "" if pd.isna(value) else str(value)  # None, NaN and pd.NA: a candidate without that field


def link_or_copy(source: Path, target: Path, link: str = "hardlink") -> None:
    """Put the stored image ``source`` at ``target``: a hard link (``link`` ``hardlink``; a copy where the file
    system refuses one) or a copy (``copy``)."""
    if link == "hardlink":
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copyfile(source, target)
