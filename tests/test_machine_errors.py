"""Errors of the machine (a full disk, an I/O error, too many open files) are no property of a candidate:
the candidates stage stops with a message saying what to fix, the items it struck stay pending, and a
resume once the cause is gone downloads them all."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import write_pipeline

from curate.cli import main
from curate.engine import IngestTask
from curate.http import Fetcher, FetchError
from curate.store import ImageStore

RUN = ["--no-progress", "--only", "synsets", "--only", "candidates"]


def in_process(pipeline_file: Path) -> Path:
    """The fixture pipeline with the download threads in this process, where a monkeypatch reaches them."""
    data = yaml.safe_load(pipeline_file.read_text())
    data["run"]["executor"] = {"type": "local", "processes": 0}
    return write_pipeline(pipeline_file, data)


def statuses(run_dir: Path) -> dict[str, int]:
    with sqlite3.connect(run_dir / "catalog.sqlite") as con:
        return dict(con.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall())


def oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def fail_after(n_ok: int, code: int, original):
    """A stand-in for ``original`` that works ``n_ok`` times, then raises an OSError with ``code``."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) > n_ok:
            raise oserror(code)
        return original(*args, **kwargs)
    return wrapper


@pytest.mark.parametrize(("code", "what", "fix"), [
    (errno.ENOSPC, r"the disk is full \(No space left on device\)", "free space and run again"),
    (errno.EMFILE, r"this process has too many open files \(Too many open files\)", "raise the open-file limit"),
])
def test_a_machine_error_writing_the_store_stops_the_stage_and_a_resume_finishes(
        pipeline_file: Path, tmp_path: Path, capsys, monkeypatch, code: int, what: str, fix: str):
    pipeline, run_dir = in_process(pipeline_file), tmp_path / "run"
    monkeypatch.setattr(ImageStore, "_write_atomic", fail_after(5, code, ImageStore._write_atomic))
    assert main(["run", str(pipeline), *RUN]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"stage 'candidates' failed: {what} writing the image store at {re.escape(str(run_dir))}", err)
    assert fix in err and "resume with: curate run" in err
    counts = statuses(run_dir)
    left = int(re.search(r"(\d+) candidates left pending", err).group(1))
    assert counts.get("failed", 0) == 0 and counts["pending"] == left > 10
    assert 5 <= counts.get("downloaded", 0) + counts.get("duplicate", 0) < 10  # the stage stopped feeding work

    monkeypatch.undo()
    assert main(["run", str(pipeline), *RUN]) == 0
    after = statuses(run_dir)
    assert "pending" not in after and after.get("failed", 0) == 0
    assert sum(after.values()) == sum(counts.values())


def test_a_machine_error_reading_a_source_file_leaves_it_pending(pipeline_file: Path, tmp_path: Path, capsys,
                                                                 monkeypatch):
    pipeline, run_dir = in_process(pipeline_file), tmp_path / "run"
    monkeypatch.setattr(Fetcher, "fetch", fail_after(3, errno.EIO, Fetcher.fetch))
    assert main(["run", str(pipeline), *RUN]) == 1
    err = capsys.readouterr().err
    assert re.search(r"failed: the disk failed to read or write \(Input/output error\) reading file://", err)
    counts = statuses(run_dir)
    assert counts.get("failed", 0) == 0 and counts["pending"] > 10

    monkeypatch.undo()
    assert main(["run", str(pipeline), *RUN]) == 0
    assert "pending" not in statuses(run_dir) and statuses(run_dir).get("failed", 0) == 0


@pytest.mark.parametrize("code", [errno.EMFILE, errno.EIO, errno.ENOMEM])
def test_the_fetcher_lets_a_machine_error_through_and_turns_a_file_error_into_a_fetch_error(
        tmp_path: Path, monkeypatch, code: int):
    """Whatever the fetcher calls on the file's path (resolving it first) is where the error strikes."""
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    monkeypatch.setattr(Path, "resolve", raising(oserror(code)))
    with pytest.raises(OSError) as caught:
        Fetcher().fetch(image.as_uri(), file_root=tmp_path)
    assert caught.value.errno == code and not isinstance(caught.value, FetchError)

    monkeypatch.setattr(Path, "resolve", raising(oserror(errno.EACCES)))
    with pytest.raises(FetchError, match="cannot read .*Permission denied"):
        Fetcher().fetch(image.as_uri(), file_root=tmp_path)


def raising(exc: BaseException):
    def method(self, *args, **kwargs):
        raise exc
    return method


class Failing:
    def __init__(self, exc: BaseException):
        self.exc = exc

    def fetch(self, *args, **kwargs) -> bytes:
        raise self.exc

    put = fetch


def test_the_task_reports_a_machine_error_as_not_done_and_other_os_errors_as_failed(tmp_path: Path):
    task = IngestTask({"max_side_px": 64, "min_side_px": 8}, {}, tmp_path / "images", 90)
    task.fetcher = Failing(oserror(errno.EMFILE))
    outcome = task.fetch(({"id": 7, "url": "file:///x/a.png"}, tmp_path))
    assert outcome["status"] == "pending" and outcome["id"] == 7
    assert outcome["error"] == "this process has too many open files (Too many open files) reading file:///x/a.png"
    assert "ulimit -n" in outcome["fix"]

    task.store = Failing(oserror(errno.ENOSPC))
    outcome = task.process({"id": 8, "sha256": None, "error": None, "image": None, "data": b"bytes"})
    assert outcome["status"] == "pending"
    store = tmp_path / "images"
    assert outcome["error"] == f"the disk is full (No space left on device) writing the image store at {store}"

    task.store = Failing(oserror(errno.EACCES))
    outcome = task.process({"id": 9, "sha256": None, "error": None, "image": None, "data": b"bytes"})
    assert outcome["status"] == "failed" and "Permission denied" in outcome["error"]


def test_no_socket_to_be_had_is_a_machine_error_not_the_candidates(tmp_path: Path):
    """With every file descriptor in use, an HTTP download cannot open its socket (EMFILE): that is the
    machine's fault, let through as the OSError it is (the candidate stays pending), not a FetchError
    that would fail the candidate for good. Run in a child whose open-file limit is really exhausted."""
    script = tmp_path / "emfile.py"
    script.write_text(
        "import errno, os, resource, sys\n"
        "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
        "from curate.http import Fetcher, FetchError\n"
        "server = ThreadingHTTPServer(('127.0.0.1', 0), BaseHTTPRequestHandler)\n"
        "url = f'http://127.0.0.1:{server.server_address[1]}/a.jpg'\n"
        "fetcher = Fetcher(timeout_s=2, deadline_s=5, retries=0, allow_private_networks=True)\n"
        "fetcher._pool()\n"  # the pool exists; only the socket is missing
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
        "held = []\n"
        "try:\n"
        "    while True:\n"
        "        held.append(os.open(os.devnull, os.O_RDONLY))\n"
        "except OSError as exc:\n"
        "    assert exc.errno == errno.EMFILE\n"
        "try:\n"
        "    fetcher.fetch(url)\n"
        "except FetchError as exc:\n"
        "    print('FetchError', exc)\n"
        "except OSError as exc:\n"
        "    print('OSError', errno.errorcode[exc.errno])\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "OSError EMFILE", done.stdout + done.stderr


def test_a_full_catalog_stops_the_run_with_a_plain_error_and_loses_nothing(pipeline_file: Path, tmp_path: Path,
                                                                           capsys, monkeypatch):
    """SQLite's own "database or disk is full" (a catalog that may not grow: max_page_count, as a full disk
    does it) is an error of the machine in any stage: exit 1 with what to do, no internal error, no traceback;
    what was recorded stays, and the run finishes once there is room."""
    from curate.catalog.db import Database

    pipeline, run_dir = in_process(pipeline_file), tmp_path / "run"
    assert main(["run", str(pipeline), "--no-progress", "--only", "synsets"]) == 0
    connect = Database._connect

    def no_room(self):
        db = connect(self)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 1}")
        return db

    monkeypatch.setattr(Database, "_connect", no_room)
    capsys.readouterr()
    assert main(["run", str(pipeline), *RUN]) == 1
    err = capsys.readouterr().err
    assert "the disk is full (SQLite: database or disk is full); free space and run again" in err, err
    assert "internal error" not in err and "Traceback" not in err
    monkeypatch.undo()
    assert main(["run", str(pipeline), *RUN]) == 0
    assert "pending" not in statuses(run_dir) and statuses(run_dir).get("downloaded", 0) > 10
