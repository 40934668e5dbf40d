"""SIGKILL during `candidates`, then run again: every candidate resolved, every image stored once."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import DOG, pipeline_dict, write_pipeline
from PIL import Image

N_IMAGES = 120


def build_slow_corpus(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(N_IMAGES):
        name = f"images/dog_{i:03d}.jpg"
        Image.effect_noise((1400, 1400), 40 + i % 50).convert("RGB").save(root / name, quality=95)
        rows.append({"file": name, "caption": f"dog {i}", "true_wnids": DOG})
    with (root / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "caption", "true_wnids"])
        writer.writeheader()
        writer.writerows(rows)


def downloaded(catalog: Path) -> int:
    try:
        with sqlite3.connect(catalog, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM candidates WHERE status != 'pending'").fetchone()[0]
    except sqlite3.Error:
        return 0


def run_cmd(pipeline: Path) -> list[str]:
    return [sys.executable, "-m", "curate", "run", str(pipeline), "--no-progress", "--only", "synsets",
            "--only", "candidates"]


def test_sigkill_during_candidates_then_resume(tmp_path: Path):
    corpus, run_dir = tmp_path / "corpus", tmp_path / "run"
    build_slow_corpus(corpus)
    data = pipeline_dict(corpus, run_dir)
    data["synsets"] = {"wnids": [DOG]}
    data["candidates"]["download"] = {"workers": 1, "max_side_px": 256}
    pipeline = write_pipeline(tmp_path / "pipeline.yaml", data)
    catalog = run_dir / "catalog.sqlite"

    proc = subprocess.Popen(run_cmd(pipeline), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while downloaded(catalog) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = downloaded(catalog)
    assert 10 <= done_at_kill < N_IMAGES, "the kill must land in the middle of the downloads"

    assert subprocess.run(run_cmd(pipeline), capture_output=True).returncode == 0
    with sqlite3.connect(catalog) as con:
        status = dict(con.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall())
        rows = con.execute("SELECT sha256, path FROM images").fetchall()
        searches = con.execute("SELECT COUNT(*) FROM searches").fetchone()[0]
        queries = con.execute("SELECT COUNT(*) FROM queries").fetchone()[0]
    assert status == {"downloaded": N_IMAGES}
    files = sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / "images").rglob("*") if p.is_file())
    assert files == sorted(path for _, path in rows)  # each image on disk exactly once, no temp files left
    assert len({sha for sha, _ in rows}) == N_IMAGES
    assert searches == queries  # every query searched once, none repeated
