"""Every configured source has an instance of its own: the catalog keys searches and candidates by it, so two
sources recorded alike would leave the second unsearched and its files refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import DOG, draw_image, pipeline_dict, write_pipeline

from curate.cli import main
from curate.config import load_config
from curate.errors import ConfigError
from curate.sources import Query, create_sources
from curate.sources.imagefolder import ImageFolderConfig
from curate.sources.local import LocalSourceConfig


def dog_photos(root: Path, first_seed: int, n: int = 4) -> Path:
    """``n`` distinct dog images captioned by their file names."""
    root.mkdir(parents=True)
    for i in range(n):
        draw_image((200, 40, 40), "ellipse", seed=first_seed + i).save(root / f"dog_{first_seed + i}.png")
    return root


def pipeline(tmp_path: Path, sources: list[dict[str, Any]]) -> Path:
    data = pipeline_dict(tmp_path / "unused", tmp_path / "run")
    data["synsets"] = {"wnids": [DOG]}
    data["candidates"]["sources"] = sources
    return write_pipeline(tmp_path / "pipeline.yaml", data)


def local(root: Path, **extra: Any) -> dict[str, Any]:
    return {"type": "local", "root": str(root), "captions": ["filename"], **extra}


def candidates(run_dir: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(run_dir / "catalog.sqlite") as db:
        return db.execute("SELECT source, url, status FROM candidates ORDER BY source, url").fetchall()


def test_two_folders_of_one_name_are_both_searched_and_downloaded(tmp_path: Path):
    a, b = dog_photos(tmp_path / "a" / "photos", 0), dog_photos(tmp_path / "b" / "photos", 100)
    path = pipeline(tmp_path, [local(a), local(b)])
    assert main(["run", str(path), "--no-progress", "--only", "synsets", "--only", "candidates"]) == 0
    rows = candidates(tmp_path / "run")
    assert len(rows) == 8 and {status for _, _, status in rows} == {"downloaded"}, rows
    by_source: dict[str, set[str]] = {}
    for source, url, _ in rows:
        by_source.setdefault(source, set()).add(Path(url).parent.parent.name)
    assert sorted(sorted(sides) for sides in by_source.values()) == [["a"], ["b"]]
    assert all(source.startswith("local:photos@") for source in by_source)


def test_the_instance_names_are_stable_and_plain_for_a_source_alone(tmp_path: Path):
    a, b = dog_photos(tmp_path / "a" / "photos", 0), dog_photos(tmp_path / "b" / "photos", 100)
    (alone,) = create_sources([LocalSourceConfig(root=a)])
    assert alone.instance == "local:photos"
    first = [s.instance for s in create_sources([LocalSourceConfig(root=a), LocalSourceConfig(root=b)])]
    swapped = [s.instance for s in create_sources([LocalSourceConfig(root=b), LocalSourceConfig(root=a)])]
    assert len(set(first)) == 2 and first == swapped[::-1]  # by path, not by position
    (named,) = create_sources([LocalSourceConfig(root=a, name="mine")])
    assert named.instance == "local:mine"


def test_two_imagefolders_of_one_name_list_their_own_files(tmp_path: Path):
    for side in ("a", "b"):
        dog_photos(tmp_path / side / "photos" / "dog", 0 if side == "a" else 100, n=2)
    sources = create_sources([ImageFolderConfig(root=tmp_path / side / "photos") for side in ("a", "b")])
    assert len({s.instance for s in sources}) == 2
    for source, side in zip(sources, ("a", "b"), strict=True):
        hits = source.search(Query("dog", wnid="dog"), 10)
        assert len(hits) == 2 and all(f"/{side}/photos/" in hit.url for hit in hits)


@pytest.mark.parametrize("sources, repeat", [
    ([{"type": "openverse"}, {"type": "openverse", "licenses": ["cc0"]}], "'openverse'"),
    ([{"type": "local", "root": "a/photos"}, {"type": "local", "root": "a/photos/../photos"}], "'local:photos@"),
    ([{"type": "local", "root": "a/photos", "name": "x"}, {"type": "local", "root": "b/photos", "name": "x"}],
     "'local:x'"),
])
def test_sources_that_cannot_be_told_apart_are_refused_at_validation(tmp_path: Path, sources: list[dict[str, Any]],
                                                                     repeat: str):
    dog_photos(tmp_path / "a" / "photos", 0, n=1)
    dog_photos(tmp_path / "b" / "photos", 100, n=1)
    with pytest.raises(ConfigError) as info:
        load_config(pipeline(tmp_path, sources))
    message = str(info.value)
    assert f"candidates.sources.1: would be recorded as {repeat}" in message and "candidates.sources.0" in message
    assert "name" in message


def test_named_sources_of_one_type_pass_validation(tmp_path: Path):
    path = pipeline(tmp_path, [{"type": "openverse", "name": "cc0", "licenses": ["cc0"]},
                               {"type": "openverse", "name": "by", "licenses": ["by"]}])
    assert [s.name for s in load_config(path).candidates.sources] == ["cc0", "by"]
