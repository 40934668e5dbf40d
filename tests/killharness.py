"""The kill-and-resume harness's machinery (tests/test_kill_resume.py): kill ``curate run`` at a moment,
check what the kill left, and take a snapshot of a finished run to compare with an uninterrupted one.

A :class:`Moment` is a stage and a trigger: the n-th new line of the run's log matching ``after`` (a stage
starting, an embedding pass, a training epoch, an import request) or a path appearing in the run directory
(``report.incomplete``), then a seeded delay. :func:`kill_at` starts the command as the leader of a new process
group (``setsid``), waits for the trigger, sends SIGKILL to the command alone and reads where the kill landed:
the stage whose ``stage_runs`` row the kill left ``running``, and whether the moment's ``unfinished`` output was
still missing. Every process of the killed one's group must be gone within :data:`WORKERS_GRACE_S` (workers
that outlive their driver are a leak; torch's loader workers check their parent every 5 s).

Reads: the run directory (log, catalog read-only, exports, benchmark results). Writes: nothing there.
Failure: a trigger that never comes within the moment's deadline ends the process and is recorded as a
kill that landed nowhere (``landed`` is None), never as a pass.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

WORKERS_GRACE_S = 20.0
POLL_S = 0.002


@dataclass(frozen=True)
class Moment:
    """Where to kill: in ``stage``, ``delay`` seconds (a seeded draw) after the n-th new log line matching
    ``after`` (n a seeded draw from ``nth``) or after the path ``appears`` (relative to the run directory)
    exists. The kill counts as inside the stage when that stage is running and ``unfinished`` (a result file,
    relative to the run directory) is absent."""

    name: str
    stage: str
    after: str | None = None
    nth: tuple[int, int] = (1, 1)
    appears: str | None = None
    delay: tuple[float, float] = (0.0, 0.0)
    unfinished: str | None = None
    deadline_s: float = 300.0


@dataclass
class Kill:
    moment: str
    stage: str
    delay: float
    nth: int = 1
    landed: str | None = None  # the stage that was running when the kill arrived; None: the run had ended
    inside: bool = False
    leftover_workers: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ killing
def kill_at(command: list[str], run_dir: Path, moment: Moment, rng: Random, env: dict | None = None) -> Kill:
    log_file = run_dir / "logs" / "curate.log"
    offset = log_file.stat().st_size if log_file.exists() else 0
    kill = Kill(moment.name, moment.stage, round(rng.uniform(*moment.delay), 3), rng.randint(*moment.nth))
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=env)
    try:
        triggered = _wait_for_trigger(proc, log_file, offset, run_dir, moment, kill.nth)
        if triggered:
            _sleep_within_stage(log_file, offset, moment.stage, kill.delay)
        unfinished = moment.unfinished is not None and not (run_dir / moment.unfinished).exists()
        proc.send_signal(signal.SIGKILL)  # the driver only: its workers must end on their own
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    kill.landed = running_stage(run_dir)
    kill.inside = triggered and kill.landed == moment.stage and (moment.unfinished is None or unfinished)
    kill.leftover_workers = wait_for_group_end(proc.pid)
    return kill


def _wait_for_trigger(proc: subprocess.Popen, log_file: Path, offset: int, run_dir: Path, moment: Moment,
                      nth: int) -> bool:
    """True once the trigger came; False when the process ended, the deadline passed or the stage ended (or had
    nothing to do) without it: the kill then comes at once, so one missed moment does not run the pipeline on
    past the stages of the moments after it."""
    pattern = re.compile(moment.after) if moment.after else None
    ended, started = _stage_ended(moment.stage), time.time()
    deadline = time.monotonic() + moment.deadline_s
    while proc.poll() is None and time.monotonic() < deadline:
        if pattern is not None and _new_lines_matching(log_file, offset, pattern) >= nth:
            return True
        if moment.appears is not None and _created_since(run_dir / moment.appears, started):
            return True
        if _new_lines_matching(log_file, offset, ended):
            return False
        time.sleep(POLL_S)
    return False


def _created_since(path: Path, started: float) -> bool:
    """``path`` exists and was written since ``started`` (not a staging folder an earlier kill left)."""
    try:
        return path.stat().st_mtime >= started
    except OSError:
        return False


def _stage_ended(stage: str) -> re.Pattern:
    return re.compile(rf"\[{re.escape(stage)}\] (done|waiting|nothing to do)")


def _sleep_within_stage(log_file: Path, offset: int, stage: str, delay: float) -> None:
    """Sleep ``delay`` seconds, or less when the stage ends first (a kill that misses its stage then lands just
    after it, not stages later where the next moments would find their stages done)."""
    ended = _stage_ended(stage)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and not _new_lines_matching(log_file, offset, ended):
        time.sleep(POLL_S)


def _new_lines_matching(log_file: Path, offset: int, pattern: re.Pattern) -> int:
    try:
        with log_file.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return 0
    return sum(bool(pattern.search(line)) for line in text.splitlines())


def running_stage(run_dir: Path) -> str | None:
    """The stage of the newest ``stage_runs`` row when a kill left it running; None when none was running."""
    rows = query(run_dir, "SELECT stage, status FROM stage_runs ORDER BY id DESC LIMIT 1")
    return rows[0][0] if rows and rows[0][1] == "running" else None


def group_members(pgid: int) -> list[str]:
    """Live (not zombie) processes of process group ``pgid``: 'pid cmdline' each."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields after the name: state, ppid, pgrp
            found.append(f"{entry.name} {cmdline[:160]}")
    return found


def wait_for_group_end(pgid: int, grace_s: float = WORKERS_GRACE_S) -> list[str]:
    """Wait until no process of the killed command's group lives; return the ones still alive after
    ``grace_s`` (then killed, so one leak does not slow down the rest)."""
    deadline = time.monotonic() + grace_s
    while (alive := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    return alive


# ------------------------------------------------------------------------------------------ comparing
def query(run_dir: Path, sql: str) -> list[tuple]:
    catalog = run_dir / "catalog.sqlite"
    if not catalog.exists():
        return []
    con = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # a table the run has not created yet
        return []
    finally:
        con.close()


def file_hashes(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def datasheet(export: Path) -> dict:
    """The datasheet without its creation time."""
    sheet = json.loads((export / "datasheet.json").read_text())
    sheet.pop("created", None)
    return sheet


def benchmark_numbers(run_dir: Path) -> dict[str, dict]:
    """Per mode what the training measured (no timings, paths or resume marks)."""
    numbers = {}
    for path in sorted((run_dir / "benchmark").glob("*.json")):
        result = json.loads(path.read_text())
        if "top1" not in result:
            continue
        history = [{k: v for k, v in row.items() if k != "seconds"} for row in result.get("history", [])]
        numbers[path.stem] = {k: result.get(k) for k in ("top1", "top5", "per_class_top1", "n_train", "n_val",
                                                         "backbone", "epochs")} | {"history": history}
    return numbers


def catalog_snapshot(run_dir: Path) -> dict:
    """The catalog's outcomes: votes (not their remote ids: a crowd's ids differ between two runs), tasks,
    labels, decisions, issues, candidates, images and the stages that finished."""
    return {
        "votes": query(run_dir, "SELECT t.sha256, t.wnid, t.backend, v.annotator, v.answer, v.superseded_by IS NULL"
                                " FROM votes v JOIN tasks t ON t.id = v.task_id ORDER BY 1, 2, 3, 4, 5"),
        "tasks": query(run_dir, "SELECT sha256, wnid, backend, votes_wanted, is_gold, state, remote_id IS NOT NULL"
                                " FROM tasks ORDER BY 1, 2, 3"),
        "labels": query(run_dir, "SELECT * FROM labels ORDER BY 1, 2"),
        "decisions": query(run_dir, "SELECT sha256, wnid, action, new_wnid, reason FROM decisions ORDER BY 1, 2"),
        "issues": query(run_dir, "SELECT * FROM issues ORDER BY 1, 2, 3"),
        "candidates": query(run_dir, "SELECT wnid, url, status, sha256 FROM candidates ORDER BY 1, 2"),
        "images": query(run_dir, "SELECT sha256, path FROM images ORDER BY 1"),
        "stages_ok": sorted({r[0] for r in query(run_dir, "SELECT stage FROM stage_runs WHERE status = 'ok'")}),
    }


def snapshot(run_dir: Path) -> dict:
    """What an interrupted run must end with exactly as an uninterrupted one did: the catalog's outcomes,
    the export (every file; the datasheet without its creation time), the noise report's tables and the
    benchmark's numbers."""
    export = run_dir / "export"
    with (export / "labels.csv").open(newline="") as fh:
        labels_csv = list(csv.DictReader(fh))
    return catalog_snapshot(run_dir) | {
        "export_files": file_hashes(export, skip=("datasheet.json", "datasheet.md")),
        "labels_csv": labels_csv,
        "datasheet": datasheet(export),
        "report_tables": file_hashes(run_dir / "report", skip=("index.html", "summary.json")),
        "benchmark": benchmark_numbers(run_dir),
    }


def duplicates(run_dir: Path) -> dict[str, list]:
    """Work done twice: a vote per (task, annotator) or a stored image per sha256 more than once, a store file
    without its catalog row or a row without its file."""
    stored = sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / "images").rglob("*") if p.is_file())
    rows = sorted(r[0] for r in query(run_dir, "SELECT path FROM images"))
    return {
        "votes": query(run_dir, "SELECT task_id, annotator, COUNT(*) FROM votes WHERE superseded_by IS NULL"
                                " GROUP BY task_id, annotator HAVING COUNT(*) > 1"),
        "images": query(run_dir, "SELECT sha256, COUNT(*) FROM images GROUP BY sha256 HAVING COUNT(*) > 1"),
        "store_without_row": sorted(set(stored) - set(rows)),
        "row_without_file": sorted(set(rows) - set(stored)),
    }


def leftovers(run_dir: Path) -> list[str]:
    """Staging and swap folders (``*.incomplete``, ``*.previous``) and temporary files left anywhere."""
    return sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                  if p.name.endswith((".incomplete", ".previous", ".tmp")) or ".tmp" in p.suffixes)
