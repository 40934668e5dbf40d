"""The export writers read back by the libraries people load them with: torchvision's ImageFolder,
Hugging Face ``datasets.load_dataset`` and a ``webdataset`` reader each see the right classes, counts and
labels, with one class index across formats. Also: reproducible shards, hard links, the per-class cap, the
datasheet, and splits that keep near duplicates (and the same picture) on one side.

``exported`` runs the pipeline once (no noise or benchmark stage: they are not what is tested here) with
all three formats; tests only read it, except those that run the export again on their own copy.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import shutil
import tarfile
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import CAT, DOG, MOUSE, build_corpus, pipeline_dict, write_pipeline
from PIL import Image

from curate.cli import main
from curate.exporters.datasheet import markdown_cell, portable
from curate.exporters.webdataset import ShardSeries
from curate.quality import hamming, measure
from curate.stages.export import assign_split, cap_per_class, split_groups

STAGES = ["--only", "synsets", "--only", "candidates", "--only", "annotate", "--only", "export"]
WNIDS = sorted([DOG, CAT, MOUSE])  # class index = position in sorted wnids, in every format
NAMES = {DOG: "dog", CAT: "cat", MOUSE: "mouse"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("writers")
    data = pipeline_dict(build_corpus(tmp / "corpus"), tmp / "run")
    data["export"]["formats"] = ["imagenet", "hf_imagefolder", {"type": "webdataset", "maxcount": 5}]
    pipeline = write_pipeline(tmp / "pipeline.yaml", data)
    assert main(["run", str(pipeline), "--no-progress", *STAGES]) == 0
    return pipeline, tmp / "run"


@pytest.fixture
def run_copy(exported, tmp_path: Path) -> tuple[Path, Path]:
    pipeline, run_dir = exported
    shutil.copytree(run_dir, tmp_path / "run")
    data = yaml.safe_load(pipeline.read_text())
    data["run"]["dir"] = str(tmp_path / "run")
    return write_pipeline(tmp_path / "pipeline.yaml", data), tmp_path / "run"


def labels(export: Path) -> list[dict[str, str]]:
    with (export / "labels.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def expected_counts(export: Path, split: str) -> Counter[str]:
    return Counter(r["wnid"] for r in labels(export) if r["split"] == split)


# ---------------------------------------------------------------------------------------------- readers
def test_several_formats_are_published_in_one_export(exported):
    _, run_dir = exported
    export = run_dir / "export"
    assert {"train", "val", "synsets.txt", "hf", "webdataset", "labels.csv", "datasheet.json",
            "datasheet.md"} <= {p.name for p in export.iterdir()}
    assert not (run_dir / "export.incomplete").exists() and not (run_dir / "export.previous").exists()
    assert sum(expected_counts(export, "train").values()) == 18 and sum(expected_counts(export, "val").values()) == 6


def test_torchvision_imagefolder_reads_the_imagenet_layout(exported):
    from torchvision.datasets import ImageFolder

    export = exported[1] / "export"
    for split in ("train", "val"):
        folder = ImageFolder(export / split)
        assert folder.classes == WNIDS
        assert Counter(folder.classes[t] for _, t in folder.samples) == expected_counts(export, split)


@pytest.fixture
def hf_offline(monkeypatch, tmp_path: Path):
    """``datasets`` that never reaches the Hub and caches under tmp_path."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)  # read at import time
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    return datasets, tmp_path / "hf_cache"


def test_load_dataset_reads_labels_as_classlabel_and_the_provenance(exported, hf_offline):
    datasets, cache = hf_offline
    export = exported[1] / "export"
    ds = datasets.load_dataset(str(export / "hf"), cache_dir=str(cache))
    assert set(ds) == {"train", "validation"}
    label = ds["train"].features["label"]
    assert isinstance(label, datasets.ClassLabel) and label.names == [NAMES[w] for w in WNIDS]
    by_sha = {r["sha256"]: r for r in labels(export)}
    for hf_split, split in (("train", "train"), ("validation", "val")):
        rows = ds[hf_split].remove_columns("image")
        assert Counter(WNIDS[i] for i in rows["label"]) == expected_counts(export, split)
        for row in rows:
            truth = by_sha[row["sha256"]]
            assert (row["wnid"], row["source"], row["url"], row["license"]) == (
                truth["wnid"], truth["source"], truth["url"], truth["license"])
            assert WNIDS[row["label"]] == row["wnid"] and truth["split"] == split
    assert ds["train"][0]["image"].size == (96, 96)


def test_load_dataset_imagefolder_builder_reads_the_same_rows(exported, hf_offline):
    datasets, cache = hf_offline
    export = exported[1] / "export"
    ds = datasets.load_dataset("imagefolder", data_dir=str(export / "hf"), cache_dir=str(cache))
    for hf_split, split in (("train", "train"), ("validation", "val")):
        rows = ds[hf_split].remove_columns("image")
        assert Counter(rows["label"]) == Counter({NAMES[w]: n for w, n in expected_counts(export, split).items()})
        assert all(NAMES[w] == name for w, name in zip(rows["wnid"], rows["label"], strict=True))


def test_webdataset_reader_reads_the_shards(exported):
    import webdataset as wds

    export = exported[1] / "export"
    folder = export / "webdataset"
    classes = json.loads((folder / "classes.json").read_text())
    assert [c["wnid"] for c in classes] == WNIDS and [c["index"] for c in classes] == [0, 1, 2]
    shards = json.loads((folder / "shards.json").read_text())
    by_sha = {r["sha256"]: r for r in labels(export)}
    for split in ("train", "val"):
        urls = sorted(glob.glob(str(folder / f"{split}-*.tar")))
        assert [Path(u).name for u in urls] == [s["url"] for s in shards[split]]
        assert all(s["nsamples"] <= 5 for s in shards[split])  # maxcount
        samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "cls",
                                                                                       "json"))
        assert Counter(WNIDS[c] for _, _, c, _ in samples) == expected_counts(export, split)
        assert len({key for key, *_ in samples}) == len(samples) == sum(s["nsamples"] for s in shards[split])
        for key, image, cls, meta in samples:
            row = by_sha[meta["sha256"]]
            assert (WNIDS[cls], meta["label"], meta["class_name"]) == (row["wnid"], cls, NAMES[row["wnid"]])
            assert key == f"{row['wnid']}_{row['n']}" and row["split"] == split and image.size == (96, 96)
        # the shuffle before sharding mixes the classes: the first shard does not hold one class only
        assert len({WNIDS[c] for _, _, c, _ in samples[:5]}) > 1


def test_one_class_index_across_formats(exported, hf_offline):
    from torchvision.datasets import ImageFolder

    export = exported[1] / "export"
    folder = ImageFolder(export / "train")
    assert folder.class_to_idx == {w: i for i, w in enumerate(WNIDS)}
    with tarfile.open(export / "webdataset" / "train-000000.tar") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".cls"))
        wnid = member.name.split("_")[0]
        assert int(tar.extractfile(member).read()) == folder.class_to_idx[wnid]


def test_shards_are_reproducible_and_carry_fixed_metadata(run_copy):
    pipeline, run_dir = run_copy
    folder = run_dir / "export" / "webdataset"
    before = {p.name: p.read_bytes() for p in folder.glob("*.tar")}
    assert main(["run", str(pipeline), "--no-progress", "--only", "export", "--force"]) == 0
    assert {p.name: p.read_bytes() for p in folder.glob("*.tar")} == before
    with tarfile.open(folder / "train-000000.tar") as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(0, 0, 0, "", 0o444)}
    assert [m.name.rsplit(".", 1)[1] for m in members[:3]] == ["cls", "jpg", "json"]  # one sample, together


def test_shard_series_respects_maxsize(tmp_path: Path):
    series = ShardSeries(tmp_path, "train", maxcount=100, maxsize=8 * 1024)
    for i in range(6):
        series.add(f"k{i}", {"jpg": bytes(2000), "cls": b"0"})  # 512 + 2048 + 512 + 512 = 3584 bytes per sample
    shards = series.close()
    assert [s["nsamples"] for s in shards] == [2, 2, 2]
    for shard in shards:
        with tarfile.open(tmp_path / shard["url"]) as tar:
            assert len(tar.getnames()) == 2 * shard["nsamples"]


def test_images_are_hard_links_into_the_store(exported):
    export = exported[1] / "export"
    row = labels(export)[0]
    stored = next((exported[1] / "images").rglob(f"{row['sha256']}.jpg"))
    hf_file = export / "hf" / ("train" if row["split"] == "train" else "validation") / row["wnid"] / \
        f"{row['wnid']}_{row['n']}.jpg"
    assert os.path.samefile(export / row["path"], stored) and os.path.samefile(hf_file, stored)


def test_images_are_copied_where_links_fail(run_copy, monkeypatch):
    pipeline, run_dir = run_copy

    def no_links(*args, **kwargs):
        raise OSError("links not supported here")

    monkeypatch.setattr(os, "link", no_links)
    assert main(["run", str(pipeline), "--no-progress", "--only", "export", "--force",
                 "--set", "export.formats=[hf_imagefolder]"]) == 0
    files = list((run_dir / "export" / "hf").rglob("*.jpg"))
    assert len(files) == 24 and all(f.stat().st_nlink == 1 for f in files)


# ---------------------------------------------------------------------------------------------- selection
def test_cap_keeps_the_images_the_crowd_agreed_on_most(run_copy):
    pipeline, run_dir = run_copy
    assert main(["run", str(pipeline), "--no-progress", "--only", "export", "--set",
                 "export.max_images_per_class=5"]) == 0
    export = run_dir / "export"
    rows = labels(export)
    assert Counter(r["wnid"] for r in rows) == {DOG: 5, CAT: 5, MOUSE: 5}
    sheet = json.loads((export / "datasheet.json").read_text())
    assert sheet["selection"]["left_out_over_cap"] == {DOG: 3, CAT: 3, MOUSE: 3}
    assert sheet["classes"][DOG]["images"] == 5


def test_cap_order_is_p_true_then_sha256():
    import pandas as pd

    table = pd.DataFrame({"wnid": ["a"] * 4 + ["b"], "sha256": ["s4", "s3", "s2", "s1", "s9"],
                          "p_true": [0.6, 1.0, 0.6, 0.3, 0.5]})
    kept, over = cap_per_class(table, 2)
    assert sorted(kept["sha256"]) == ["s2", "s3", "s9"] and over == {"a": 2}
    assert cap_per_class(table, None)[1] == {}


def test_cap_below_the_minimum_is_a_config_error(pipeline_file, capsys):
    assert main(["validate", str(pipeline_file), "--set", "export.max_images_per_class=2",
                 "--set", "export.min_images_per_class=3"]) == 2
    assert "max_images_per_class (2) must be at least min_images_per_class (3)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- splits
def photo(seed: int) -> Image.Image:
    """A smooth random picture: pHashes of different seeds lie about 32 bits apart."""
    coarse = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((128, 128), Image.BICUBIC)


def near_copy(img: Image.Image, quality: int = 60, scale: float = 0.9) -> Image.Image:
    buf = io.BytesIO()
    img.resize((int(img.width * scale), int(img.height * scale))).save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def split_table(rows: list[tuple[str, str]]):
    import pandas as pd

    table = pd.DataFrame(rows, columns=["wnid", "sha256"])
    return table.sort_values(["wnid", "sha256"]).reset_index(drop=True)


def test_near_duplicates_by_phash_never_straddle_train_and_val():
    pictures = {f"{w}{i:02d}": photo(100 * k + i) for k, w in enumerate("abc") for i in range(12)}
    # near copies: a cross-class pair (a00 ~ b-copy), a triple inside class c, and the same picture
    # (same sha256) accepted under two classes
    pictures["bcopy"] = near_copy(pictures["a00"])
    pictures["c-copy1"], pictures["c-copy2"] = near_copy(pictures["c00"]), near_copy(pictures["c00"], 80, 0.8)
    hashes = {sha: measure(img).phash for sha, img in pictures.items()}
    assert hamming(hashes["a00"], hashes["bcopy"]) <= 4 and hamming(hashes["a00"], hashes["b00"]) > 4
    rows = [(sha[0], sha) for sha in pictures if sha != "bcopy"] + [("b", "bcopy"), ("c", "a05")]
    table = split_table(rows)
    ctx = SimpleNamespace(config=SimpleNamespace(candidates=SimpleNamespace(
        quality=SimpleNamespace(near_duplicate_distance=4))), catalog=SimpleNamespace(image_phashes=lambda: hashes))
    groups = split_groups(ctx, table)
    assert sorted(map(sorted, groups)) == [["a00", "bcopy"], ["c-copy1", "c-copy2", "c00"]]
    for seed in range(25):
        split = assign_split(table, 0.25, seed, groups)
        side = split.groupby("sha256")["split"].agg(set)
        assert side["a00"] == side["bcopy"] and side["c00"] == side["c-copy1"] == side["c-copy2"]
        assert len(side["a05"]) == 1  # the same picture under a and c: one side
        sizes, val = Counter(split["wnid"]), Counter(split.loc[split["split"] == "val", "wnid"])
        assert all(1 <= val[w] <= round(sizes[w] * 0.25) for w in sizes)  # quota kept, never exceeded


def test_split_without_groups_is_the_plain_stratified_cut():
    table = split_table([(w, f"{w}{i:02d}") for w in "ab" for i in range(10)] + [("c", "c0"), ("d", "d0"), ("d", "d1")])
    split = assign_split(table, 0.2, seed=3)
    val = Counter(split.loc[split["split"] == "val", "wnid"])
    assert val == {"a": 2, "b": 2, "d": 1}  # c has one image: train; d has two: one each side
    assert list(split["n"][:3]) == [1, 2, 3] and split.equals(assign_split(table, 0.2, seed=3))
    assert not split.equals(assign_split(table, 0.2, seed=4))


def test_exported_near_duplicates_stay_on_one_side(exported):
    export = exported[1] / "export"
    rows = labels(export)
    hashes = {r["sha256"]: measure(Image.open(export / r["path"])).phash for r in rows}
    sides = {r["sha256"]: r["split"] for r in rows}
    assert not [(a, b) for a in hashes for b in hashes
                if sides[a] == "train" and sides[b] == "val" and hamming(hashes[a], hashes[b]) <= 4]


# ---------------------------------------------------------------------------------------------- datasheet
def test_datasheet_json_and_markdown(exported):
    _, run_dir = exported
    export = run_dir / "export"
    sheet = json.loads((export / "datasheet.json").read_text())
    assert sheet["formats"] == ["imagenet", "hf_imagefolder", "webdataset"]
    assert {w: (c["train"], c["val"]) for w, c in sheet["classes"].items()} == {
        w: (expected_counts(export, "train")[w], expected_counts(export, "val")[w]) for w in WNIDS}
    assert [c["index"] for c in sheet["classes"].values()] == [0, 1, 2]
    assert sheet["classes"][DOG]["licenses"] == {"CC0-1.0": 8} and sheet["collection"]["sources"] == {
        "local:corpus": 24}
    assert sheet["labeling"]["votes_per_exported_image"] == {"mean": 3.0, "median": 3, "min": 3, "max": 3,
                                                             "histogram": {"3": 24}}
    assert sheet["label_noise"]["issues_by_kind"] == {"label": 0, "outlier": 0, "near_duplicate": 0,
                                                      "cross_class_duplicate": 0}
    assert sheet["config"]["run"]["name"] == "fixture" and sheet["config"]["export"]["formats"][2]["maxcount"] == 5
    md = (export / "datasheet.md").read_text()
    assert "| 0 | n02084071 | dog | dog, domestic dog, Canis familiaris | 6 | 2 | 8 |" in md
    assert "datasets.load_dataset" in md and "ImageFolder" in md and "wds.WebDataset" in md
    assert "votes_per_image: 3" in md  # the configuration, as YAML
    for text in (json.dumps(sheet), md):  # no path of the curator's machine
        assert str(run_dir.parent) not in text


def test_datasheet_cells_and_paths_are_made_safe():
    assert markdown_cell('<script>alert("x")</script> a|b\nc') == '&lt;script&gt;alert("x")&lt;/script&gt; a\\|b c'
    assert portable({"dir": "/home/me/runs/demo", "root": ["C:\\data\\corpus"], "url": "file:///x/y",
                     "name": "demo"}) == {"dir": "…/demo", "root": ["…/corpus"], "url": "file:///x/y", "name": "demo"}
