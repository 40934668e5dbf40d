"""The ``imagefolder`` source: ImageFolder trees and path/label tables, their labels, URLs and path safety."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from curate.errors import ConfigError
from curate.http import Fetcher, FetchError, FileRoot
from curate.sources import Query, create_source
from curate.sources.imagefolder import ImageFolderConfig, ImageFolderSource


def make(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), (90, 120, 200)).save(path)
    return path


def source(**settings) -> ImageFolderSource:
    return create_source(ImageFolderConfig(**settings))


def rels(found) -> list[str]:
    return [hit.title for hit in found]


def test_a_tree_labels_images_by_their_top_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    for name in ["cat/a.jpg", "cat/b.PNG", "cat/more/c.jpg", "dog/x.jpeg", "dog/notes.txt", "dog/.hidden.jpg",
                 ".cache/cat/z.jpg", "loose.jpg"]:
        make(tmp_path / name) if not name.endswith(".txt") else (tmp_path / name).write_text("text")
    (tmp_path / "empty").mkdir()
    caplog.set_level(logging.WARNING)
    folder = source(root=tmp_path)
    assert folder.instance == f"imagefolder:{tmp_path.name}"
    assert folder.labels() == {"cat": 3, "dog": 1}
    assert rels(folder.search(Query("anything", "cat"), 10)) == ["cat/a.jpg", "cat/b.PNG", "cat/more/c.jpg"]
    assert rels(folder.search(Query("cat", "cat"), 2)) == ["cat/a.jpg", "cat/b.PNG"]
    assert folder.search(Query("dog", "n02084071"), 10) == []  # a class is found by its id only
    (hit,) = folder.search(Query("dog", "dog"), 10)
    assert hit.url == (tmp_path / "dog" / "x.jpeg").as_uri()
    assert folder.display_url(hit.url) == "dog/x.jpeg"
    assert folder.file_root == FileRoot(tmp_path.resolve(), links_out=True)
    assert "1 images directly in" in caplog.text


def test_symlinked_views_are_followed_and_read_where_they_point(tmp_path: Path):
    """A view of a dataset made of links (here: one to a file, one class folder to a folder elsewhere)."""
    shared = tmp_path / "shared"
    make(shared / "train" / "n1" / "a.jpg")
    make(shared / "train" / "n2" / "b.jpg")
    view = tmp_path / "view"
    (view / "n2").mkdir(parents=True)
    (view / "n2" / "a.jpg").symlink_to(shared / "train" / "n1" / "a.jpg")  # a flipped label
    (view / "n1").symlink_to(shared / "train" / "n2", target_is_directory=True)
    folder = source(root=view)
    assert folder.labels() == {"n1": 1, "n2": 1}
    (hit,) = folder.search(Query("x", "n2"), 10)
    assert hit.url == (view / "n2" / "a.jpg").as_uri()  # the path inside the view, not the link's target
    assert folder.display_url(hit.url) == "n2/a.jpg"
    data = Fetcher().fetch(hit.url, file_root=folder.file_root)
    assert data == (shared / "train" / "n1" / "a.jpg").read_bytes()
    # only what the view names is read: the shared copy's other files stay out of reach
    with pytest.raises(FetchError, match="outside the source root"):
        Fetcher().fetch((shared / "train" / "n2" / "b.jpg").as_uri(), file_root=folder.file_root)
    with pytest.raises(FetchError, match="outside the source root"):
        Fetcher().fetch((view / ".." / "shared" / "train" / "n2" / "b.jpg").as_uri(), file_root=folder.file_root)


def test_without_following_links_files_leading_outside_are_skipped(tmp_path: Path, caplog):
    make(tmp_path / "outside" / "a.jpg")
    view = tmp_path / "view"
    make(view / "cat" / "inside.jpg")
    (view / "cat" / "link.jpg").symlink_to(tmp_path / "outside" / "a.jpg")
    (view / "dog").symlink_to(tmp_path / "outside", target_is_directory=True)
    caplog.set_level(logging.WARNING)
    folder = source(root=view, follow_symlinks=False)
    assert folder.labels() == {"cat": 1}
    assert folder.file_root == FileRoot(view.resolve(), links_out=False)
    assert "2 files or folders skipped" in caplog.text


def test_a_link_loop_is_walked_once(tmp_path: Path):
    make(tmp_path / "cat" / "a.jpg")
    (tmp_path / "cat" / "again").symlink_to(tmp_path / "cat", target_is_directory=True)
    assert source(root=tmp_path).labels() == {"cat": 1}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_a_table_names_files_relative_to_its_folder_or_absolute_inside_root(tmp_path: Path, suffix: str):
    make(tmp_path / "imgs" / "1.jpg")
    make(tmp_path / "imgs" / "2.jpg")
    rows = pd.DataFrame({"path": ["imgs/1.jpg", str(tmp_path / "imgs" / "2.jpg"), "imgs/1.jpg"],
                         "label": ["cat", " dog ", "dog"], "extra": [1, 2, 3]})
    table = tmp_path / f"labels{suffix}"
    if suffix == ".parquet":
        rows.to_parquet(table)
    else:
        rows.to_csv(table, sep="\t" if suffix == ".tsv" else ",", index=False)
    folder = source(root=tmp_path, table=table)
    assert folder.instance == f"imagefolder:labels{suffix}"
    assert folder.labels() == {"cat": 1, "dog": 2}  # one file may carry two labels: two candidates
    assert rels(folder.search(Query("x", "dog"), 10)) == ["imgs/1.jpg", "imgs/2.jpg"]
    assert folder.search(Query("x", "cat"), 10)[0].url == (tmp_path / "imgs" / "1.jpg").as_uri()


def test_table_problems_are_one_config_error(tmp_path: Path):
    make(tmp_path / "root" / "ok.jpg")
    make(tmp_path / "elsewhere.jpg")
    (tmp_path / "root" / "link.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    table = tmp_path / "root" / "labels.csv"
    table.write_text("path,label\nok.jpg,cat\nmissing.jpg,cat\n../elsewhere.jpg,cat\n"
                     f"{tmp_path / 'elsewhere.jpg'},cat\nok.jpg,\nok.jpg,a/b\n,cat\nlink.jpg,cat\n")
    with pytest.raises(ConfigError) as caught:
        source(root=tmp_path / "root", table=table, follow_symlinks=False).labels()
    assert caught.value.problems == [
        f"{table} line 3: file 'missing.jpg' not found",
        f"{table} line 4: file '../elsewhere.jpg': '..' is not allowed in a path",
        f"{table} line 5: file '{tmp_path / 'elsewhere.jpg'}' lies outside the root {tmp_path / 'root'}",
        f"{table} line 6: label '' is empty",
        f"{table} line 7: label 'a/b' cannot be a folder name",
        f"{table} line 8: empty path",
        f"{table} line 9: file 'link.jpg' leads outside the root {tmp_path / 'root'} (follow_symlinks is off)",
    ]


def test_a_table_without_the_columns_says_which_it_has(tmp_path: Path):
    table = tmp_path / "labels.csv"
    table.write_text("file,class\na.jpg,cat\n")
    with pytest.raises(ConfigError, match=r"lacks the column\(s\) path, label \(it has: file, class\)"):
        source(root=tmp_path, table=table).labels()


def test_config_checks_the_root_and_the_table(tmp_path: Path):
    missing = tmp_path / "nope"
    assert ImageFolderConfig(root=missing).check_inputs("s") == [f"s.root: folder not found: {missing}"]
    assert ImageFolderConfig(root=tmp_path, table=tmp_path / "t.csv").check_inputs("s") == [
        f"s.table: file not found: {tmp_path / 't.csv'}"]
    (tmp_path / "t.xlsx").write_text("")
    assert "unsupported file type" in ImageFolderConfig(root=tmp_path, table=tmp_path / "t.xlsx").check_inputs("s")[0]


def test_a_changed_listing_stops_a_pinned_run(tmp_path: Path):
    make(tmp_path / "cat" / "a.jpg")
    make(tmp_path / "dog" / "b.jpg")
    pinned = source(root=tmp_path).listing_sha256()
    assert source(root=tmp_path, listing_sha256=pinned).labels() == {"cat": 1, "dog": 1}
    (tmp_path / "cat" / "a.jpg").rename(tmp_path / "dog" / "a.jpg")  # relabelled
    with pytest.raises(ConfigError, match="changed since this run started"):
        source(root=tmp_path, listing_sha256=pinned).labels()
