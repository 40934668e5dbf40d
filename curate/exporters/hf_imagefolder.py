"""``hf_imagefolder`` writer: Hugging Face's ``imagefolder`` layout, with labels and provenance in ``metadata.jsonl``.

Writes under ``hf/``: ``train/<wnid>/<wnid>_<n>.jpg`` and ``validation/…`` (Hugging Face's split names),
one ``metadata.jsonl`` per split (``file_name``, ``label`` as the class name, and the provenance columns
``wnid``, ``sha256``, ``source``, ``url``, ``page_url``, ``title``, ``license``, ``creator``, ``p_true``,
``n_votes``, ``label_issue``; missing text is ``""`` so every split infers the same types) and a dataset
card ``README.md`` whose YAML declares the splits and the features, ``label`` a ``ClassLabel`` whose
index follows sorted wnids (:mod:`curate.exporters.common`). The YAML's every value is double-quoted on one
line (a class named ``yes``, ``001``, ``a: b #c`` or holding a line break reads back as that text); the card's
title and class table escape HTML, ``|`` and line breaks (:func:`curate.exporters.datasheet.markdown_cell`).
Hence::

    datasets.load_dataset("<export>/hf")                        # label: ClassLabel(names=[...])
    datasets.load_dataset("imagefolder", data_dir="<export>/hf")  # the same rows, label as class-name text

(the ``imagefolder`` builder reads ``metadata.jsonl`` but not the card). Images are hard links to the run's
image store where the file system allows, copies otherwise. Failure: an ``OSError`` of the copy propagates;
the export stage then discards the half-written export (:mod:`curate.atomic`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from curate.exporters.base import WRITERS
from curate.exporters.common import TEXT_COLUMNS, ExportClass, export_classes, provenance_record
from curate.exporters.datasheet import markdown_cell
from curate.exporters.imagenet import link_or_copy
from curate.registry import Plugin
from curate.sections import Section

if TYPE_CHECKING:
    import pandas as pd

# curate's split name -> the split name Hugging Face uses (and recognises as a folder name)
HF_SPLITS = {"train": "train", "val": "validation"}


@WRITERS.register
class HFImageFolderWriter(Plugin):
    name = "hf_imagefolder"
    description = "Hugging Face imagefolder: hf/{train,validation}/<wnid>/<wnid>_<n>.jpg, metadata.jsonl, README.md"
    usage = ('import datasets\nds = datasets.load_dataset("./hf")  # label: ClassLabel, '
             'ds["train"].features["label"].names')

    class Config(Section):
        type: Literal["hf_imagefolder"] = "hf_imagefolder"

    def write(self, table: pd.DataFrame, root: Path, ctx: Any) -> pd.DataFrame:
        classes = export_classes(ctx, table["wnid"])
        label = {c.wnid: c.name for c in classes}
        folder = root / "hf"
        written = []
        for split, hf_split in HF_SPLITS.items():
            rows = table[table["split"] == split]
            if len(rows):
                self._write_split(ctx, rows, folder / hf_split, label)
                written.append(hf_split)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "README.md").write_text(dataset_card(ctx.config.run.name, classes, written), encoding="utf-8")
        return table

    @staticmethod
    def _write_split(ctx: Any, rows: pd.DataFrame, folder: Path, label: dict[str, str]) -> None:
        lines = []
        for row in ctx.progress(rows.itertuples(), total=len(rows), desc="export hf", unit="img"):
            file_name = f"{row.wnid}/{row.wnid}_{row.n}.jpg"
            (folder / row.wnid).mkdir(parents=True, exist_ok=True)
            link_or_copy(ctx.layout.stored(row.store_path), folder / file_name, ctx.config.export.link)
            record = {"file_name": file_name, "label": label[row.wnid], **provenance_record(row)}
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        (folder / "metadata.jsonl").write_text("".join(lines), encoding="utf-8")


def dataset_card(name: str, classes: list[ExportClass], splits: list[str]) -> str:
    """README.md with the YAML header ``datasets`` reads: data files per split and the features."""
    import yaml

    features = [
        {"name": "image", "dtype": "image"},
        {"name": "label", "dtype": {"class_label": {"names": {str(c.index): c.name for c in classes}}}},
        *({"name": c, "dtype": "string"} for c in TEXT_COLUMNS),
        {"name": "p_true", "dtype": "float64"},
        {"name": "n_votes", "dtype": "int64"},
        {"name": "label_issue", "dtype": "bool"},
    ]
    header = {"configs": [{"config_name": "default",
                           "data_files": [{"split": s, "path": f"{s}/**"} for s in splits],
                           "features": features}]}
    # Every scalar double-quoted on one line: a name's line break (\n, but also \u2028 or \x85, which readers
    # split lines at) is an escape, so no name ends the YAML block or changes on reading.
    front = yaml.safe_dump(header, sort_keys=False, allow_unicode=True, default_style='"', width=1 << 31)
    mapping = "\n".join("| " + " | ".join(markdown_cell(v) for v in (c.index, c.wnid, c.name, c.words)) + " |"
                        for c in classes)
    return (f"---\n{front}---\n\n# {markdown_cell(name)}\n\n"
            "Exported by curate in Hugging Face's `imagefolder` layout. Labels and provenance are in each "
            "split's `metadata.jsonl`; the export's `datasheet.md` describes how the data was collected.\n\n"
            "```python\nimport datasets\nds = datasets.load_dataset(\"path/to/hf\")  # label: ClassLabel\n```\n\n"
            f"| label | wnid | name | words |\n|---|---|---|---|\n{mapping}\n")
