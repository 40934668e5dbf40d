from __future__ import annotations

import os
import threading
from collections.abc import Callable
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


# --------------------------------------------------------------------------- what a caption may be read from


def captions(root: Path, **config) -> dict[str, str]:
    source = create_source(LocalSourceConfig(root=root, **config))
    return {entry.path.name: entry.caption for entry in source.entries()}


def test_a_sidecar_that_links_outside_the_root_is_no_caption(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = tmp_path / "corpus"
    make(root, "a.png")
    (tmp_path / "secret.txt").write_text("api_key=hunter2")
    (root / "a.txt").symlink_to(tmp_path / "secret.txt")
    assert captions(root, captions=["sidecar"]) == {"a.png": ""}
    assert "leads outside the corpus root" in caplog.text and "hunter2" not in caplog.text


def test_a_sidecar_linking_inside_the_root_is_read(tmp_path: Path):
    make(tmp_path, "a.png")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a caption.txt").write_text("a brown dog")
    (tmp_path / "a.txt").symlink_to(tmp_path / "notes" / "a caption.txt")
    assert captions(tmp_path, captions=["sidecar"]) == {"a.png": "a brown dog"}


def test_an_oversized_sidecar_is_no_caption(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    make(tmp_path, "a.png", "dog " * 20_000)  # 80 KB
    make(tmp_path, "b.png", "dog " * 16_000)  # 64,000 bytes: under 64 KiB
    found = captions(tmp_path, captions=["sidecar"])
    assert found["a.png"] == "" and found["b.png"].startswith("dog dog")
    assert "larger than 64 KiB" in caplog.text


def within(seconds: float, call: Callable[[], object]) -> object:
    """``call()``'s result or exception, failing the test when it has not returned after ``seconds``."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except Exception as exc:  # re-raised below, in the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still waiting after {seconds} s (on a FIFO?)"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def test_fifos_neither_hang_the_listing_nor_become_images_or_captions(tmp_path: Path):
    make(tmp_path, "dog_a.png")
    os.mkfifo(tmp_path / "dog_a.txt")  # a sidecar nobody writes: reading it would wait for ever
    os.mkfifo(tmp_path / "dog_b.png")
    # the file-name words only: the FIFO sidecar is not read, the FIFO "image" not listed
    assert within(15, lambda: captions(tmp_path)) == {"dog_a.png": "dog a"}


def test_an_index_that_links_outside_the_root_is_refused(tmp_path: Path):
    root = tmp_path / "corpus"
    make(root, "x.png")
    (tmp_path / "index.csv").write_text("file,caption\nx.png,hot dog\n")
    (root / "index.csv").symlink_to(tmp_path / "index.csv")
    config = LocalSourceConfig(root=root, index="index.csv")
    assert config.check_inputs("candidates.sources.0") == [
        f"candidates.sources.0.index: {root / 'index.csv'}: it leads outside the corpus root {root.resolve()}"]
    with pytest.raises(ConfigError, match="cannot read the index: it leads outside the corpus root"):
        create_source(config).search(Query("dog"), 5)


def test_an_index_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path):
    os.mkfifo(tmp_path / "index.csv")
    config = LocalSourceConfig(root=tmp_path, index="index.csv")
    assert config.check_inputs("s") == [f"s.index: {tmp_path / 'index.csv'}: not a regular file"]
    with pytest.raises(ConfigError, match="not a regular file"):
        within(15, lambda: create_source(config).search(Query("dog"), 5))


def test_a_symlink_loop_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    make(tmp_path, "dog.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    assert captions(tmp_path) == {"dog.png": "dog"}
    assert "loop.png: its links form a loop" in caplog.text


@pytest.mark.parametrize("content, problem", [
    (b"file,caption\nx.png,caf\xe9\n", "it is not UTF-8 text"),
    (b"file,caption\nx.png," + b"dog " * 40_000 + b"\n", r"field larger than field limit"),
])
def test_an_index_that_is_no_utf8_csv_is_a_config_error(tmp_path: Path, content: bytes, problem: str):
    make(tmp_path, "x.png")
    (tmp_path / "index.csv").write_bytes(content)
    with pytest.raises(ConfigError, match=f"index.csv: cannot read the index: {problem}"):
        create_source(LocalSourceConfig(root=tmp_path, index="index.csv")).search(Query("dog"), 5)
