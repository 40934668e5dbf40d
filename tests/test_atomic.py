"""Folders published whole or not at all: exceptions, kills while writing and kills mid-swap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from curate.atomic import previous_path, published, recover, replace_dir, staging_path, write_text


def contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def publish(target: Path, files: dict[str, str]) -> None:
    with replace_dir(target) as staging:
        for name, text in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text)


def test_first_write_creates_the_folder(tmp_path: Path):
    target = tmp_path / "deep" / "export"
    with replace_dir(target) as staging:
        assert staging == staging_path(target) and staging.is_dir()
        assert not target.exists()  # nothing is visible until the block ends
        (staging / "labels.csv").write_text("a,b\n")
    assert contents(target) == {"labels.csv": "a,b\n"}
    assert not staging_path(target).exists() and not previous_path(target).exists()
    assert published(target) == target


def test_exception_keeps_the_previous_version_and_no_staging(tmp_path: Path):
    target = tmp_path / "export"
    publish(target, {"labels.csv": "v1\n", "train/a.jpg": "img"})
    with pytest.raises(RuntimeError, match="boom"):
        with replace_dir(target) as staging:
            (staging / "labels.csv").write_text("v2, half written")
            raise RuntimeError("boom")
    assert contents(target) == {"labels.csv": "v1\n", "train/a.jpg": "img"}
    assert not staging_path(target).exists() and not previous_path(target).exists()


def test_keyboard_interrupt_also_cleans_up(tmp_path: Path):
    target = tmp_path / "export"
    publish(target, {"a": "1"})
    with pytest.raises(KeyboardInterrupt):
        with replace_dir(target) as staging:
            (staging / "a").write_text("2")
            raise KeyboardInterrupt
    assert contents(target) == {"a": "1"} and not staging_path(target).exists()


def test_successful_rewrite_replaces_the_folder_whole(tmp_path: Path):
    target = tmp_path / "export"
    publish(target, {"old.txt": "old", "train/old.jpg": "x", "labels.csv": "v1"})
    publish(target, {"labels.csv": "v2", "val/new.jpg": "y"})
    assert contents(target) == {"labels.csv": "v2", "val/new.jpg": "y"}  # old files are gone, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from curate.atomic import replace_dir
    with replace_dir(Path(sys.argv[1])) as staging:
        (staging / "labels.csv").write_text("v2, never finished")
        print("ready", flush=True)
        time.sleep(60)
""")


def test_sigkill_while_writing_keeps_previous_version(tmp_path: Path):
    target = tmp_path / "export"
    publish(target, {"labels.csv": "v1", "train/a.jpg": "img"})
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert contents(target) == {"labels.csv": "v1", "train/a.jpg": "img"}
    assert contents(staging_path(target)) == {"labels.csv": "v2, never finished"}  # what the kill left behind
    assert published(target) == target and contents(target)["labels.csv"] == "v1"

    publish(target, {"labels.csv": "v3"})
    assert contents(target) == {"labels.csv": "v3"}  # the stale half-written version was discarded
    assert not staging_path(target).exists() and not previous_path(target).exists()


def test_kill_between_the_renames_is_undone_by_readers(tmp_path: Path):
    target = tmp_path / "export"
    previous = previous_path(target)
    (previous / "train").mkdir(parents=True)
    (previous / "labels.csv").write_text("v1")
    (previous / "train" / "a.jpg").write_text("img")
    assert published(target) == target
    assert contents(target) == {"labels.csv": "v1", "train/a.jpg": "img"}
    assert not previous.exists()


def test_kill_between_the_renames_is_undone_by_the_next_write(tmp_path: Path):
    target = tmp_path / "export"
    previous_path(target).mkdir()
    (previous_path(target) / "labels.csv").write_text("v1")
    staging_path(target).mkdir()
    (staging_path(target) / "stale").write_text("half")
    with pytest.raises(RuntimeError):
        with replace_dir(target):
            raise RuntimeError("fails before finishing")
    assert contents(target) == {"labels.csv": "v1"}  # restored by recover() before the write began
    assert not previous_path(target).exists() and not staging_path(target).exists()


def test_recover_drops_previous_when_the_new_version_is_in_place(tmp_path: Path):
    target = tmp_path / "export"
    publish(target, {"labels.csv": "v2"})
    previous_path(target).mkdir()
    (previous_path(target) / "labels.csv").write_text("v1")
    recover(target)
    assert not previous_path(target).exists()
    assert contents(target) == {"labels.csv": "v2"}


def test_published_is_none_when_nothing_was_published(tmp_path: Path):
    target = tmp_path / "export"
    assert published(target) is None
    staging_path(target).mkdir()  # a first write killed midway
    (staging_path(target) / "x").write_text("half")
    assert published(target) is None
    assert not staging_path(target).exists()


def test_write_text_replaces_a_file_whole(tmp_path: Path):
    path = tmp_path / "sub" / "datasheet.json"
    write_text(path, "first version, rather long\n" * 10)
    assert path.read_text() == "first version, rather long\n" * 10
    write_text(path, "second\n")
    assert path.read_text() == "second\n"  # not the new text over the tail of the old
    assert sorted(p.name for p in path.parent.iterdir()) == ["datasheet.json"]  # no temporary left
