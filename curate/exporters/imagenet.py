"""``imagenet`` writer: ImageNet's class-folder layout, which ``torchvision.datasets.ImageFolder`` loads.

Writes ``train/<wnid>/<wnid>_<n>.JPEG``, ``val/<wnid>/...`` and ``synsets.txt``
(``n02084071 dog, domestic dog, Canis familiaris``, ImageNet's LOC_synset_mapping format). Images are
hard links to the run's image store where the file system allows (no extra space), copies otherwise or
with ``export.link: copy`` (:func:`curate.exporters.common.link_or_copy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from curate.exporters.base import WRITERS
from curate.exporters.common import link_or_copy
from curate.registry import Plugin
from curate.sections import Section

if TYPE_CHECKING:
    import pandas as pd


@WRITERS.register
class ImageNetWriter(Plugin):
    name = "imagenet"
    description = "ImageNet class folders: {split}/{wnid}/{wnid}_{n}.JPEG and synsets.txt"
    usage = 'from torchvision.datasets import ImageFolder\ntrain, val = ImageFolder("./train"), ImageFolder("./val")'

    class Config(Section):
        type: Literal["imagenet"] = "imagenet"


    def write(self, table: pd.DataFrame, root: Path, ctx: Any) -> pd.DataFrame:
        paths = []
        for row in ctx.progress(table.itertuples(), total=len(table), desc="export", unit="img"):
            rel = Path(row.split) / row.wnid / f"{row.wnid}_{row.n}.JPEG"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(ctx.layout.stored(row.store_path), root / rel, ctx.config.export.link)
            paths.append(rel.as_posix())
        self._write_synsets(ctx, table, root)
        return table.assign(path=paths)[["path", *table.columns]]

    @staticmethod
    def _write_synsets(ctx: Any, table: pd.DataFrame, root: Path) -> None:
        lemmas = {r["wnid"]: r["lemmas"] for r in ctx.catalog.synsets()}
        lines = [f"{wnid} {lemmas[wnid]}\n" for wnid in sorted(table["wnid"].unique())]
        (root / "synsets.txt").write_text("".join(lines), encoding="utf-8")
