"""``export.link``: exported images are hard links into the run's image store (the default), or copies that
share nothing with it (``copy``); the store's files carry the umask's mode either way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import build_corpus, pipeline_dict, write_pipeline

from curate.cli import main

STAGES = ["--only", "synsets", "--only", "candidates", "--only", "annotate", "--only", "export"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("link")
    data = pipeline_dict(build_corpus(tmp / "corpus"), tmp / "run")
    data["export"]["formats"] = ["imagenet", "hf_imagefolder"]
    return write_pipeline(tmp / "pipeline.yaml", data), tmp / "run"


def shared_with_store(run_dir: Path) -> list[bool]:
    """For every exported image of both formats: is it the store's file of the same image (one inode)?"""
    stored = {p.read_bytes(): p for p in (run_dir / "images").rglob("*.jpg")}
    files = [*(run_dir / "export" / "train").rglob("*.JPEG"), *(run_dir / "export" / "hf").rglob("*.jpg")]
    return [os.path.samefile(f, stored[f.read_bytes()]) for f in files]


def test_copy_gives_files_of_their_own_and_hardlink_shares_the_store(pipeline):
    path, run_dir = pipeline
    previous = os.umask(0o022)
    try:
        assert main(["run", str(path), "--no-progress", *STAGES, "--set", "export.link=copy"]) == 0
        copies = shared_with_store(run_dir)
        assert main(["run", str(path), "--no-progress", "--only", "export", "--set", "export.link=hardlink"]) == 0
        links = shared_with_store(run_dir)
    finally:
        os.umask(previous)
    assert len(copies) == len(links) > 20
    assert not any(copies) and all(links)
    assert {p.stat().st_mode & 0o777 for p in (run_dir / "images").rglob("*.jpg")} == {0o644}


def test_an_unknown_link_mode_is_a_config_error(pipeline, capsys):
    path, _ = pipeline
    assert main(["run", str(path), "--no-progress", "--only", "export", "--set", "export.link=symlink"]) == 2
    assert "export.link" in capsys.readouterr().err
