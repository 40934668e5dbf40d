from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from curate.config import LocalSourceConfig
from curate.errors import ConfigError
from curate.sources import create_source


def make(root: Path, name: str, caption: str | None = None) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40)).save(path)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption)
    return path


def test_sidecar_and_filename_captions_whole_word_and_plural(tmp_path: Path):
    make(tmp_path, "a/brown_dog.png")
    make(tmp_path, "b/pic1.jpg", "Two dogs in a park")
    make(tmp_path, "c/catalog.png")  # 'cat' must not match inside 'catalog'
    make(tmp_path, "d/berries.png")
    source = create_source(LocalSourceConfig(root=tmp_path))
    assert source.name == f"local:{tmp_path.name}"
    assert {Path(h.url).name for h in source.search("dog", 10)} == {"brown_dog.png", "pic1.jpg"}
    assert source.search("cat", 10) == []
    assert [Path(h.url).name for h in source.search("berry", 10)] == ["berries.png"]
    assert [Path(h.url).name for h in source.search("brown dog", 10)] == ["brown_dog.png"]
    assert len(source.search("dog", 1)) == 1


def test_index_csv_carries_provenance_and_truth(tmp_path: Path):
    make(tmp_path, "x.png")
    header = "file,caption,license,creator,true_wnids\n"
    (tmp_path / "index.csv").write_text(header + "x.png,hot dog,CC0-1.0,Ann,n07697537\n")
    source = create_source(LocalSourceConfig(root=tmp_path, index="index.csv", captions=["index"]))
    (hit,) = source.search("dog", 5)
    assert (hit.title, hit.license, hit.creator, hit.true_wnids) == ("hot dog", "CC0-1.0", "Ann", "n07697537")
    assert hit.url.startswith("file://")


def test_index_problems_are_config_errors(tmp_path: Path):
    (tmp_path / "index.csv").write_text("path,text\nx.png,dog\n")
    source = create_source(LocalSourceConfig(root=tmp_path, index="index.csv"))
    with pytest.raises(ConfigError, match="lacks the column"):
        source.search("dog", 5)
    (tmp_path / "index.csv").write_text("file,caption\nmissing.png,dog\n")
    with pytest.raises(ConfigError, match="listed file"):
        create_source(LocalSourceConfig(root=tmp_path, index="index.csv")).search("dog", 5)
