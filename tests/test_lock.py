"""One curate per run directory: a second run is refused naming the holder; a killed holder blocks nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from curate.catalog import Catalog
from curate.cli import main
from curate.config import load_config
from curate.lock import RunDirectoryBusy, RunLock
from curate.runner import open_run

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from curate.lock import RunLock
    with RunLock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(30)
""")


@contextmanager
def holder(lock_path: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the run lock until the block ends (then SIGKILLed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()


def test_lock_is_exclusive_and_released(tmp_path: Path):
    path = tmp_path / "run" / ".lock"
    with RunLock(path):
        assert path.read_text().startswith(f"pid {os.getpid()}: ")
        with pytest.raises(RunDirectoryBusy, match=f"pid {os.getpid()}"):
            RunLock(path).acquire()  # a second open file description is refused, even in one process
    again = RunLock(path).acquire()  # released on exit
    again.release()
    again.release()  # releasing twice is harmless


def test_second_run_on_one_directory_is_refused(pipeline_file: Path, tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with holder(run_dir / ".lock") as proc:
        assert main(["run", str(pipeline_file), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"pid {proc.pid}" in err
        assert str(run_dir) in err and "in use by another curate" in err
        assert "Traceback" not in err
        assert proc.poll() is None  # the holder was not disturbed
    # the refused run wrote nothing of its own into the run directory
    assert not (run_dir / "config.yaml").exists()
    assert not (run_dir / "catalog.sqlite").exists()
    assert not (run_dir / "logs").exists()


def test_status_reads_while_a_run_holds_the_lock(tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    catalog = Catalog(run_dir / "catalog.sqlite")
    catalog.finish_stage(catalog.start_stage("synsets", "fp"), "ok", {"synsets": 3})
    catalog.close()
    with holder(run_dir / ".lock"):
        assert main(["status", str(run_dir)]) == 0  # status does not take the lock
    assert "synsets=3" in capsys.readouterr().out


def test_lock_of_a_killed_holder_is_released_by_the_kernel(tmp_path: Path):
    path = tmp_path / "run" / ".lock"
    with holder(path) as proc:
        with pytest.raises(RunDirectoryBusy, match=f"pid {proc.pid}"):
            RunLock(path).acquire()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    assert path.read_text().startswith(f"pid {proc.pid}: ")  # the stale file is still there ...
    with RunLock(path):  # ... and blocks nothing
        assert path.read_text().startswith(f"pid {os.getpid()}: ")


def test_run_opens_after_a_killed_holder(pipeline_file: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    with holder(run_dir / ".lock") as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    config = load_config(pipeline_file)
    with open_run(config, progress=False, quiet=True) as ctx:
        assert ctx.layout.root == run_dir
        assert (run_dir / ".lock").read_text().startswith(f"pid {os.getpid()}: ")
        with pytest.raises(RunDirectoryBusy):  # held by this run now
            RunLock(run_dir / ".lock").acquire()
    assert (run_dir / "config.yaml").is_file() and (run_dir / "catalog.sqlite").is_file()
    RunLock(run_dir / ".lock").acquire().release()  # and released when the run ends
