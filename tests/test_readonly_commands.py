"""Commands that only look at a run (``curate status``, ``curate report``, ``curate validate``) never change
its directory: no file or folder appears, goes, or changes size or mtime, whether the run is finished or a
stage is writing its output at that moment (``report.incomplete/``), or a kill left a swap half done
(``report.previous/``). ``curate status`` on a run with an empty catalog, or none, answers plainly.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from conftest import build_corpus, pipeline_dict, write_pipeline

from curate.cli import main
from curate.layout import RunLayout

STAGES = ["--only", "synsets", "--only", "candidates", "--only", "annotate", "--only", "noise"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, seeded_weights: Path) -> Path:
    """A run whose noise stage wrote its report (weights from a file: the check runs)."""
    tmp = tmp_path_factory.mktemp("readonly")
    data = pipeline_dict(build_corpus(tmp / "corpus"), tmp / "run")
    data["noise"]["weights"] = str(seeded_weights)
    assert main(["run", str(write_pipeline(tmp / "pipeline.yaml", data)), "--no-progress", "-q", *STAGES]) == 0
    return tmp / "run"


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def snapshot(root: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path below ``root`` (folders included: a file made and removed again changes its folder's mtime)
    with whether it is a folder, its size and its mtime."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files, ""]:
            path = Path(folder, name)
            stat = path.lstat()
            found[str(path.relative_to(root))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns)
    return found


def read_only_commands(run: Path) -> list[list[str]]:
    return [["status", str(run)], ["report", str(run)], ["validate", str(RunLayout(run).config)]]


@pytest.mark.parametrize("command", [0, 1, 2], ids=["status", "report", "validate"])
def test_a_read_only_command_changes_nothing_in_a_finished_run(run_dir: Path, command: int, capsys):
    before = snapshot(run_dir)
    assert main(read_only_commands(run_dir)[command]) == 0
    assert snapshot(run_dir) == before
    assert "error" not in capsys.readouterr().err


def test_report_leaves_the_report_being_written_alone(run_dir: Path, capsys):
    layout = RunLayout(run_dir)
    staging = run_dir / "report.incomplete"  # what the noise stage writes into before the swap
    (staging / "thumbs").mkdir(parents=True)
    (staging / "thumbs" / "a.jpg").write_bytes(b"half a thumbnail")
    before = snapshot(run_dir)
    for command in read_only_commands(run_dir):
        assert main(command) == 0
    assert snapshot(run_dir) == before and (staging / "thumbs" / "a.jpg").read_bytes() == b"half a thumbnail"
    assert f"report: {layout.report_index.resolve()}" in capsys.readouterr().out


def test_report_reads_the_previous_report_of_a_half_done_swap_where_it_lies(run_dir: Path, capsys):
    """A kill between the swap's two renames leaves ``report.previous/`` (the finished report) and no
    ``report/``: the next noise stage puts it back; a reader reads it where it is."""
    (run_dir / "report").rename(run_dir / "report.previous")
    before = snapshot(run_dir)
    assert main(["report", str(run_dir)]) == 0
    assert snapshot(run_dir) == before
    out = capsys.readouterr().out
    assert f"report: {(run_dir / 'report.previous' / 'index.html').resolve()}" in out and "24 images" in out


def test_status_on_a_catalog_without_rows_is_a_plain_answer(tmp_path: Path, capsys):
    from curate.catalog import Catalog

    Catalog(tmp_path / "run" / "catalog.sqlite").close()  # a run that has just been created
    assert main(["status", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert "internal error" not in captured.err and "no stage has run yet" in captured.out


def empty_sqlite(path: Path) -> None:
    """An SQLite file with a header and no table (a catalog created, its schema never written)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("DROP TABLE t")
    db.close()


@pytest.mark.parametrize("make", [lambda p: p.write_bytes(b""), empty_sqlite], ids=["empty-file", "no-tables"])
def test_status_on_a_catalog_without_tables_is_a_plain_answer(tmp_path: Path, make, capsys):
    path = tmp_path / "run" / "catalog.sqlite"
    path.parent.mkdir()
    make(path)
    before = snapshot(path.parent)
    assert main(["status", str(path.parent)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "no stage has run yet" in captured.out
    assert snapshot(path.parent) == before


def test_status_on_a_file_that_is_no_catalog_is_a_clear_error(tmp_path: Path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "catalog.sqlite").write_text("not a database, but long enough to be read as one" * 40)
    assert main(["status", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "internal error" not in err and "is not a curate catalog" in err


def test_status_without_a_catalog_says_so(tmp_path: Path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["status", str(tmp_path / "run")]) == 2
    assert "no run found" in capsys.readouterr().err


def test_validate_the_run_config_names_the_run(run_dir: Path, capsys):
    assert main(["validate", str(RunLayout(run_dir).config)]) == 0
    assert yaml.safe_load(RunLayout(run_dir).config.read_text())["run"]["dir"]
    assert "ok" in capsys.readouterr().out


def test_status_while_a_run_holds_the_catalog_reads_its_latest_rows(run_dir: Path, capsys):
    """A run going on has the catalog open (its ``-wal`` file lies there): status reads through it, and its
    rows not yet checkpointed into the catalog file are shown."""
    from curate.catalog import Catalog

    writer = Catalog(run_dir / "catalog.sqlite")
    try:
        with writer.transaction() as db:
            db.execute("UPDATE stage_runs SET status = 'running' WHERE stage = 'noise'")
        wal = run_dir / "catalog.sqlite-wal"
        assert wal.stat().st_size > 0
        files = {p.name for p in run_dir.iterdir()}
        assert main(["status", str(run_dir)]) == 0
        assert {p.name for p in run_dir.iterdir()} == files
        assert re.search(r"noise\s+running", capsys.readouterr().out)
    finally:
        writer.close()


def test_status_of_a_run_dir_whose_name_holds_uri_characters(finished_run: Path, tmp_path: Path, capsys):
    run = Path(shutil.copytree(finished_run, tmp_path / "run #1?x=%20"))
    assert main(["status", str(run)]) == 0
    assert re.search(r"noise\s+ok", capsys.readouterr().out)
