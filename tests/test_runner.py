"""The runner: resume hints on stage errors, waiting for the crowd, --allow-partial."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from conftest import write_pipeline

from curate.cli import main
from curate.config import load_config
from curate.errors import StageError
from curate.runner import open_run, run_stage
from curate.stages.base import Stage, StageResult


class FailingStage(Stage):
    name = "synsets"  # borrows a real section for its fingerprint
    description = "raises its own stage error"

    def run(self, ctx) -> StageResult:
        raise StageError(self.name, "the source refused the API key")


def test_a_stage_error_raised_by_a_stage_shows_the_resume_command(pipeline_file: Path):
    config = load_config(pipeline_file)
    with open_run(config, progress=False, resume_command="curate run p.yaml --set x=1") as ctx:
        with pytest.raises(StageError) as info:
            run_stage(FailingStage(), ctx)
        assert ctx.catalog.stage_summary()[-1]["status"] == "failed"
    text = str(info.value)
    assert "the source refused the API key" in text
    assert text.endswith("resume with: curate run p.yaml --set x=1")


def slow_crowd_pipeline(pipeline_file: Path, answers_per_pull: int) -> Path:
    data = yaml.safe_load(pipeline_file.read_text())
    data["annotate"]["backend"]["answers_per_pull"] = answers_per_pull
    return write_pipeline(pipeline_file, data)


def annotate_status(run_dir: Path) -> str:
    with sqlite3.connect(run_dir / "catalog.sqlite") as con:
        return con.execute("SELECT status FROM stage_runs WHERE stage = 'annotate' ORDER BY id DESC").fetchone()[0]


def test_a_waiting_crowd_holds_back_later_stages_until_asked(pipeline_file: Path, tmp_path: Path, capsys):
    pipeline = slow_crowd_pipeline(pipeline_file, answers_per_pull=40)
    run_dir = tmp_path / "run"
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "annotate: waiting for 44 votes" in out and "--allow-partial" in out
    assert f"{'noise':<11} not run: waiting for annotate" in out
    assert annotate_status(run_dir) == "waiting"
    assert not (run_dir / "report").exists() and not (run_dir / "export").exists()

    assert main(["run", str(pipeline), "--no-progress", "--allow-partial"]) == 0
    out = capsys.readouterr().out
    assert "annotate: waiting for 4 votes" in out and "not run" not in out
    assert (run_dir / "export" / "labels.csv").is_file()
    partial = len((run_dir / "export" / "labels.csv").read_text().splitlines())

    assert main(["run", str(pipeline), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "waiting for" not in out and annotate_status(run_dir) == "ok"
    assert len((run_dir / "export" / "labels.csv").read_text().splitlines()) > partial
