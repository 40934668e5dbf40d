"""A worker process that dies on an item (a crashing decoder, the out-of-memory killer): the items in flight
with it are done again, one at a time, and the item that kills a worker while alone in flight is failed
with the reason, so no run crashes on it again."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DOG, write_pipeline
from PIL import Image

import curate.engine
from curate.cli import main
from curate.config import load_config
from curate.executors.local import LocalExecutor, LocalExecutorConfig, TaskError
from curate.reasons import reason_of
from curate.runner import open_run

POISON = 3


class KillsItsWorker:
    """Item POISON takes its worker process down (a signal, or an exit code); the others square."""

    def __init__(self, how: str = "kill"):
        self.how = how

    def setup(self, shards: int) -> None:
        pass

    def fetch(self, item: int) -> int:
        return item

    def process(self, item: int) -> int:
        if item == POISON:
            os.kill(os.getpid(), signal.SIGKILL) if self.how == "kill" else os._exit(3)
        return item * item

    def crashed(self, item: int, reason: str) -> str:
        return f"failed: {reason}"


class BrokenSetup(KillsItsWorker):
    def setup(self, shards: int) -> None:
        raise RuntimeError("no image store here")


def test_the_item_that_kills_its_worker_is_failed_and_the_items_beside_it_are_done():
    executor = LocalExecutor(LocalExecutorConfig(processes=2))
    results = dict(executor.map_unordered(KillsItsWorker(), range(40), workers=2))
    assert sorted(results) == list(range(40))
    assert {i: r for i, r in results.items() if i != POISON} == {i: i * i for i in range(40) if i != POISON}
    assert results[POISON] == "failed: worker process died (exit code -9, SIGKILL) while processing it, 2 times"


def test_the_crash_count_is_configurable_and_an_exit_code_is_named():
    executor = LocalExecutor(LocalExecutorConfig(processes=2, max_crashes=1))
    results = dict(executor.map_unordered(KillsItsWorker("exit"), range(12), workers=2))
    assert results[POISON] == "failed: worker process died (exit code 3) while processing it, 1 time"
    assert len(results) == 12


def test_a_task_that_cannot_be_set_up_stops_the_iteration_instead_of_failing_every_item():
    started = time.monotonic()
    with pytest.raises(TaskError, match=r"(?s)set up.*RuntimeError: no image store here"):
        list(LocalExecutor(LocalExecutorConfig(processes=2)).map_unordered(BrokenSetup(), range(20), workers=2))
    assert time.monotonic() - started < 60


# ---------------------------------------------------------------------- through the candidates stage
MARK = "kills-the-decoder"


class CrashingIngest(curate.engine.IngestTask):
    """The download task, but a file carrying MARK kills the worker process decoding it (as a decoder crash
    would); defined at module level, so spawned worker processes import it."""

    def process(self, fetched: dict[str, Any]) -> dict[str, Any]:
        if MARK.encode() in (fetched.get("data") or b""):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().process(fetched)


def test_the_candidates_stage_fails_the_candidate_that_kills_its_worker(pipeline_file: Path, corpus: Path,
                                                                       tmp_path: Path, monkeypatch):
    poison = Image.new("RGB", (64, 64), "white")
    poison.save(corpus / "images" / "poison.png", pnginfo=_text(MARK))
    with (corpus / "index.csv").open("a") as fh:
        fh.write("images/poison.png,a dog that crashes decoders,,CC0-1.0,tests\n")
    data = yaml.safe_load(pipeline_file.read_text())
    data["run"]["executor"] = {"type": "local", "processes": 2}
    pipeline = write_pipeline(pipeline_file, data)
    with open_run(load_config(pipeline), progress=False) as ctx:  # the class and its query, as synsets makes them
        ctx.catalog.upsert_synsets([{"wnid": DOG, "name": "dog.n.01", "lemmas": "dog", "gloss": "a dog", "depth": 0,
                                     "hypernym_wnid": None, "lexname": "noun.animal"}])
        ctx.catalog.add_queries([{"wnid": DOG, "text": "dog", "lang": "en", "kind": "synonym"}])
    monkeypatch.setattr(curate.engine, "IngestTask", CrashingIngest)
    assert main(["run", str(pipeline), "--no-progress", "--only", "candidates"]) == 0
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as con:
        rows = con.execute("SELECT url, status, error FROM candidates").fetchall()
    crashed = [(status, error) for url, status, error in rows if url.endswith("poison.png")]
    assert crashed == [("failed", "worker process died (exit code -9, SIGKILL) while processing it, 2 times")]
    assert reason_of(crashed[0][1]) == "worker_crash"
    assert {status for url, status, _ in rows if not url.endswith("poison.png")} == {"downloaded"}
    assert main(["run", str(pipeline), "--no-progress", "--only", "candidates"]) == 0


def _text(value: str) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", value)
    return info
