from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from curate.errors import ConfigError
from curate.sources import Query, create_source
from curate.sources.local import LocalSourceConfig


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
    assert source.instance == f"local:{tmp_path.name}"
    assert {Path(h.url).name for h in source.search(Query("dog"), 10)} == {"brown_dog.png", "pic1.jpg"}
    assert source.search(Query("cat"), 10) == []
    assert [Path(h.url).name for h in source.search(Query("berry"), 10)] == ["berries.png"]
    assert [Path(h.url).name for h in source.search(Query("brown dog"), 10)] == ["brown_dog.png"]
    assert len(source.search(Query("dog"), 1)) == 1


def test_index_csv_carries_provenance_and_truth(tmp_path: Path):
    make(tmp_path, "x.png")
    header = "file,caption,license,creator,true_wnids\n"
    (tmp_path / "index.csv").write_text(header + "x.png,hot dog,CC0-1.0,Ann,n07697537\n")
    source = create_source(LocalSourceConfig(root=tmp_path, index="index.csv", captions=["index"]))
    (hit,) = source.search(Query("dog"), 5)
    assert (hit.title, hit.license, hit.creator, hit.true_wnids) == ("hot dog", "CC0-1.0", "Ann", "n07697537")
    assert hit.url.startswith("file://")


def test_index_problems_are_config_errors(tmp_path: Path):
    (tmp_path / "index.csv").write_text("path,text\nx.png,dog\n")
    source = create_source(LocalSourceConfig(root=tmp_path, index="index.csv"))
    with pytest.raises(ConfigError, match="lacks the column"):
        source.search(Query("dog"), 5)
    (tmp_path / "index.csv").write_text("file,caption\nmissing.png,dog\n")
    with pytest.raises(ConfigError, match="line 2: file 'missing.png' not found"):
        create_source(LocalSourceConfig(root=tmp_path, index="index.csv")).search(Query("dog"), 5)


@pytest.mark.parametrize("name, problem", [
    ("../../etc/passwd", "leads outside the corpus root"),
    ("/etc/passwd", "must be a path relative to the corpus root"),
    ("images/../../outside.png", "leads outside the corpus root"),
    ("link.png", "leads outside the corpus root"),  # a symlink pointing outside
])
def test_index_rows_escaping_the_root_are_refused_naming_the_row(tmp_path: Path, name: str, problem: str):
    root = tmp_path / "corpus"
    make(root, "ok.png")
    make(tmp_path, "outside.png")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    (root / "index.csv").write_text(f"file,caption\nok.png,dog\n{name},dog\n")
    source = create_source(LocalSourceConfig(root=root, index="index.csv"))
    with pytest.raises(ConfigError) as info:
        source.search(Query("dog"), 5)
    assert f"line 3: file {name!r} {problem}" in str(info.value)


def test_scanned_symlinks_leading_outside_are_skipped(tmp_path: Path):
    root = tmp_path / "corpus"
    make(root, "dog_inside.png")
    make(tmp_path, "dog_outside.png")
    (root / "dog_link.png").symlink_to(tmp_path / "dog_outside.png")
    hits = create_source(LocalSourceConfig(root=root)).search(Query("dog"), 10)
    assert [Path(h.url).name for h in hits] == ["dog_inside.png"]


def test_exported_urls_are_relative_to_the_root(tmp_path: Path):
    make(tmp_path, "a/brown_dog.png")
    source = create_source(LocalSourceConfig(root=tmp_path))
    (hit,) = source.search(Query("dog"), 5)
    assert source.file_root == tmp_path.resolve()
    assert source.display_url(hit.url) == "a/brown_dog.png"
    assert source.display_url("https://example.org/x.jpg") == "https://example.org/x.jpg"
