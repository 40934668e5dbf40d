"""Every export format read back when the classes are labels rather than wnids: labels with dots (CUB-200's
``001.Black_footed_Albatross``), unicode, YAML's special words and characters, and two labels that differ only
by a dot and an underscore. The webdataset key is what ``webdataset`` takes as the key (everything up to the
first dot of the member's name), so it must hold no dot, and it must stay unique per sample.
"""

from __future__ import annotations

import csv
import glob
import json
import re
import tarfile
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml
from conftest import draw_image, write_pipeline

from curate.cli import main
from curate.exporters.webdataset import sample_key

# Sorted order is the class index in every format.
LABELS = sorted(["001.Black_footed_Albatross", "001_Black_footed_Albatross", "Möwe.ü", "yes", "a: b #c"])
COLOURS = [(200, 40, 40), (40, 40, 200), (40, 160, 40), (230, 200, 60), (120, 120, 120)]
PER_CLASS = 5


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A run of an ImageFolder tree with those labels (classes from the labels, the labels as given),
    exported in all three formats."""
    tmp = tmp_path_factory.mktemp("labels")
    for k, label in enumerate(LABELS):
        (tmp / "data" / label).mkdir(parents=True)
        for i in range(PER_CLASS):
            draw_image(COLOURS[k], "ellipse", seed=100 * k + i).save(tmp / "data" / label / f"img.{i}.png")
    data = {
        "run": {"name": "birds | 001.gulls", "dir": str(tmp / "run"), "seed": 0},
        "synsets": {"from_labels": True},
        "candidates": {"sources": [{"type": "imagefolder", "root": str(tmp / "data")}],
                       "quality": {"enabled": False, "near_duplicate_distance": 0}},
        "annotate": {"backend": "given", "votes_per_image": 1, "max_votes_per_image": 1},
        "export": {"val_fraction": 0.4,
                   "formats": ["imagenet", "hf_imagefolder", {"type": "webdataset", "maxcount": 4}]},
    }
    pipeline = write_pipeline(tmp / "pipeline.yaml", data)
    stages = ["--only", "synsets", "--only", "candidates", "--only", "annotate", "--only", "export"]
    assert main(["run", str(pipeline), "--no-progress", "-q", *stages]) == 0
    return tmp / "run" / "export"


def labels_csv(export: Path) -> list[dict[str, str]]:
    with (export / "labels.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def class_names(export: Path) -> list[str]:
    """The class names in index order (a label's name is its words: underscores read as spaces)."""
    classes = json.loads((export / "webdataset" / "classes.json").read_text(encoding="utf-8"))
    assert [c["wnid"] for c in classes] == LABELS and [c["index"] for c in classes] == list(range(len(LABELS)))
    assert len(set(c["name"] for c in classes)) == len(LABELS)
    return [c["name"] for c in classes]


def expected(export: Path, split: str) -> Counter[str]:
    return Counter(r["wnid"] for r in labels_csv(export) if r["split"] == split)


def test_every_label_is_exported(export: Path):
    assert sorted({r["wnid"] for r in labels_csv(export)}) == LABELS
    assert sum(expected(export, "train").values()) + sum(expected(export, "val").values()) == PER_CLASS * len(LABELS)


def test_imagenet_folders_and_synsets_read_back(export: Path):
    from torchvision.datasets import ImageFolder

    for split in ("train", "val"):
        folder = ImageFolder(export / split)
        assert folder.classes == LABELS
        assert Counter(folder.classes[t] for _, t in folder.samples) == expected(export, split)
    lines = (export / "synsets.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(LABELS) and all(line.startswith(f"{label} ") for line, label in zip(lines, LABELS,
                                                                                               strict=True))


def test_hf_imagefolder_reads_back_with_the_labels_as_class_names(export: Path, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    ds = datasets.load_dataset(str(export / "hf"), cache_dir=str(tmp_path / "cache"))
    assert ds["train"].features["label"].names == class_names(export)
    for hf_split, split in (("train", "train"), ("validation", "val")):
        rows = ds[hf_split].remove_columns("image")
        assert Counter(LABELS[i] for i in rows["label"]) == expected(export, split)
        assert all(LABELS[i] == wnid for i, wnid in zip(rows["label"], rows["wnid"], strict=True))


def test_hf_card_yaml_and_table_keep_each_label_whole(export: Path):
    card = (export / "hf" / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---\n")[1])
    names = header["configs"][0]["features"][1]["dtype"]["class_label"]["names"]
    assert names == {str(i): name for i, name in enumerate(class_names(export))}
    assert card.count("\n# birds \\| 001.gulls\n") == 1  # the title: one line, its bar escaped
    table = [line for line in card.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(table) == len(LABELS) and all(len(re.split(r"(?<!\\)\|", line)) == 6 for line in table)


def webdataset_samples(export: Path, split: str) -> dict[str, dict[str, bytes]]:
    """The shards' samples as webdataset groups them: the key is the member name up to its first dot."""
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    for url in sorted(glob.glob(str(export / "webdataset" / f"{split}-*.tar"))):
        with tarfile.open(url) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                assert ext not in samples[key], f"two samples share the key {key!r}"
                samples[key][ext] = tar.extractfile(member).read()
    return samples


def test_webdataset_keys_hold_no_dot_and_group_one_sample_each(export: Path):
    by_sha = defaultdict(list)
    for row in labels_csv(export):
        by_sha[row["sha256"]].append(row)
    names = class_names(export)
    for split in ("train", "val"):
        samples = webdataset_samples(export, split)
        assert len(samples) == sum(expected(export, split).values())
        for key, files in samples.items():
            assert set(files) == {"cls", "jpg", "json"}, key
            meta = json.loads(files["json"])
            row = next(r for r in by_sha[meta["sha256"]] if r["wnid"] == meta["wnid"])
            assert key == sample_key(row["wnid"], int(row["n"])) and row["split"] == split
            assert LABELS[int(files["cls"])] == meta["wnid"] and meta["class_name"] == names[meta["label"]]


def test_webdataset_library_reads_the_documented_tuple(export: Path):
    import webdataset as wds

    for split in ("train", "val"):
        urls = sorted(glob.glob(str(export / "webdataset" / f"{split}-*.tar")))
        pairs = list(wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("jpg", "cls"))
        assert Counter(LABELS[c] for _, c in pairs) == expected(export, split)
        assert all(image.size == (96, 96) for image, _ in pairs)


def test_sample_keys_are_unique_and_readable():
    assert sample_key("n02084071", 3) == "n02084071_3"  # a wnid's key is unchanged
    keys = [sample_key(label, 1) for label in
            ["a.b", "a_b", "a%2Eb", "a/b", "a b", "Möwe.ü", "..", ""]]
    assert len(set(keys)) == len(keys)
    assert not any(ch in key for key in keys for ch in "./\\ ")
    assert sample_key("Möwe", 2) == "Möwe_2"  # letters of any script stay as they are


TRICKY = ["001.Black_footed_Albatross", "yes", "001", "a: b #c", "x\n---\ny", "line\u2028sep\x85", "'\"|<b>", "ü" * 90]


def test_hf_card_reads_back_every_class_name_as_written():
    from datasets.utils.metadata import _split_yaml_from_readme
    from huggingface_hub import DatasetCard

    from curate.exporters.common import ExportClass
    from curate.exporters.hf_imagefolder import dataset_card

    classes = [ExportClass(i, f"w{i}", name, name) for i, name in enumerate(TRICKY)]
    card = dataset_card("run\nname | x", classes, ["train"])
    names = {str(i): name for i, name in enumerate(TRICKY)}
    features = DatasetCard(card).data.to_dict()["configs"][0]["features"]
    assert features[1]["dtype"]["class_label"]["names"] == names
    block, body = _split_yaml_from_readme(card)  # how datasets finds the card's YAML
    assert yaml.safe_load(block)["configs"][0]["features"][1]["dtype"]["class_label"]["names"] == names
    assert "\n# run name \\| x\n" in body
    rows = [line for line in card.split("\n") if re.match(r"\| \d+ \| w\d+ \|", line)]
    assert len(rows) == len(TRICKY) and all(len(re.split(r"(?<!\\)\|", row)) == 6 for row in rows)
