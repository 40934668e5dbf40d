"""Labels that become class names (an imagefolder's folders or table labels, with ``synsets.from_labels``)
are refused when they would inject lines or columns into ``synsets.txt`` and dataset cards, or break exports."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from curate.errors import ConfigError
from curate.sources.base import label_problem
from curate.sources.imagefolder import ImageFolderConfig, ImageFolderSource
from curate.stages.synsets import SynsetsStage

BAD = {
    "two\nlines": "control character",
    "tab\there": "control character",
    "a|b": "'|'",
    " padded": "space",
    "padded ": "space",
    "x" * 201: "201 bytes",
    "é" * 101: "202 bytes",
    "right\u202eto left": "control character",
}
GOOD = ["001.Black_footed_Albatross", "n01440764", "hot dog", "crème brûlée", "x" * 200, "a.b.c"]


@pytest.mark.parametrize("label", list(BAD))
def test_labels_that_cannot_name_a_class_say_why(label: str):
    assert BAD[label] in (label_problem(label) or "")


@pytest.mark.parametrize("label", GOOD)
def test_labels_with_dots_and_spaces_inside_are_fine(label: str):
    assert label_problem(label) is None


def tree(root: Path, labels: list[str]) -> Path:
    for label in labels:
        (root / label).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(root / label / "a.jpg")
    return root


def test_a_tree_with_a_bad_class_folder_is_refused_at_validation_naming_it(tmp_path: Path):
    root = tree(tmp_path / "data", ["001.Black_footed_Albatross", "a|b", "two\nlines", "tail "])
    problems = ImageFolderConfig(root=root).check_inputs("candidates.sources.0")
    assert problems == [
        "candidates.sources.0.root: class folder 'a|b': the label holds '|' (it separates the columns of a "
        "dataset card's table)",
        "candidates.sources.0.root: class folder 'tail ': the label starts or ends with a space",
        "candidates.sources.0.root: class folder 'two\\nlines': the label holds a control character (a line "
        "break, a tab, ...)",
    ]
    with pytest.raises(ConfigError, match="class folder 'a|b'"):
        ImageFolderSource(ImageFolderConfig(root=root)).labels()


def test_a_table_with_bad_labels_names_each_row(tmp_path: Path):
    tree(tmp_path, ["x"])
    table = tmp_path / "labels.csv"
    long = "y" * 250
    table.write_text(f'path,label\nx/a.jpg,ok\nx/a.jpg,a|b\nx/a.jpg,"two\nlines"\nx/a.jpg,{long}\n')
    with pytest.raises(ConfigError) as info:
        ImageFolderSource(ImageFolderConfig(root=tmp_path, table=table)).labels()
    message = str(info.value)
    assert "line 3: label 'a|b' holds '|'" in message
    assert "label 'two\\nlines' holds a control character" in message
    assert f"label '{long}' is 250 bytes long in UTF-8; at most 200" in message


def test_from_labels_refuses_bad_labels_from_any_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import curate.stages.synsets as synsets

    monkeypatch.setattr(synsets, "source_labels", lambda ctx: {"cat": 3, "a|b": 2, "x\ny": 1})
    written: list[object] = []
    catalog = SimpleNamespace(upsert_synsets=written.append, add_queries=written.append)
    ctx = SimpleNamespace(config=SimpleNamespace(candidates=SimpleNamespace(max_per_class=1000)), catalog=catalog)
    with pytest.raises(ConfigError) as info:
        SynsetsStage._from_labels(ctx)
    assert written == []
    assert info.value.problems == ["synsets.from_labels: label 'a|b' holds '|' (it separates the columns of a "
                                   "dataset card's table)",
                                   "synsets.from_labels: label 'x\\ny' holds a control character (a line break, "
                                   "a tab, ...)"]
