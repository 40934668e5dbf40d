"""SIGKILL ``curate run --only export`` at random moments, again and again, over a finished export: a folder
named ``export`` is always a finished export (the previous one or the new one, never part of one), a
reader through :func:`curate.atomic.published` always finds one, and the next run completes.

Six of eight kills are timed from the moment ``export.incomplete/`` appears, so they land while the writers
write (600 images in three formats take about 0.13 s), during the swap or just after; two are timed from
the start of the process and land earlier. About 15 s on two cores.
"""

from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from conftest import CAT, DOG, pipeline_dict, write_pipeline
from PIL import Image

from curate.atomic import published, staging_path
from curate.cli import main

N_IMAGES = 300  # per class
ROUNDS = 8
FORMATS = ["imagenet", "hf_imagefolder", {"type": "webdataset", "maxcount": 50}]


def build_corpus(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for wnid, word in ((DOG, "dog"), (CAT, "cat")):
        for i in range(N_IMAGES):
            name = f"images/{word}_{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / name)
            rows.append({"file": name, "caption": f"{word} {i}", "true_wnids": wnid})
    with (root / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "caption", "true_wnids"])
        writer.writeheader()
        writer.writerows(rows)


def finished_export(export: Path) -> float:
    """Check that ``export`` is whole in every format; return the val_fraction that produced it."""
    sheet = json.loads((export / "datasheet.json").read_text())
    with (export / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    n_val = sum(r["split"] == "val" for r in rows)
    assert len(rows) == sheet["counts"]["images"] == 2 * N_IMAGES and n_val == sheet["counts"]["val"]
    assert sorted(str(p.relative_to(export)) for p in export.glob("*/*/*.JPEG")) == sorted(r["path"] for r in rows)
    for hf_split, split in (("train", "train"), ("validation", "val")):
        lines = (export / "hf" / hf_split / "metadata.jsonl").read_text().splitlines()
        assert len(lines) == sum(r["split"] == split for r in rows)
        assert all((export / "hf" / hf_split / json.loads(line)["file_name"]).is_file() for line in lines)
    shards = json.loads((export / "webdataset" / "shards.json").read_text())
    for split, listed in shards.items():
        members = 0
        for shard in listed:
            with tarfile.open(export / "webdataset" / shard["url"]) as tar:
                members += len(tar.getmembers())
        assert members == 3 * sum(s["nsamples"] for s in listed) == 3 * sum(r["split"] == split for r in rows)
    assert (export / "datasheet.md").read_text().startswith("# Datasheet")
    return sheet["split"]["val_fraction"]


def export_command(pipeline: Path, val_fraction: float) -> list[str]:
    return [sys.executable, "-m", "curate", "run", str(pipeline), "--no-progress", "-q", "--only", "export",
            "--set", f"export.val_fraction={val_fraction}"]


def kill_during(command: list[str], staging: Path, after_staging: bool, rng: random.Random) -> None:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if after_staging:  # writing 600 images in three formats takes about 0.13 s on two busy cores
        deadline = time.monotonic() + 30
        while not staging.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.1))
    else:  # start-up, reading the catalog, selecting (the process starts writing after about 0.5 s)
        time.sleep(rng.uniform(0.1, 0.8))
    proc.send_signal(signal.SIGKILL)  # nothing when the run already finished
    proc.wait()


def test_sigkill_during_export_never_leaves_a_partial_export(tmp_path: Path):
    corpus, run_dir = tmp_path / "corpus", tmp_path / "run"
    build_corpus(corpus)
    data = pipeline_dict(corpus, run_dir)
    data["synsets"] = {"wnids": [DOG, CAT]}
    data["candidates"]["max_per_class"] = N_IMAGES
    data["candidates"]["sources"][0].update(captions=["index"], max_per_query=N_IMAGES)
    data["annotate"]["backend"].update(accuracy=1.0, accuracy_spread=0.0)  # every image accepted
    data["export"]["formats"] = FORMATS
    pipeline = write_pipeline(tmp_path / "pipeline.yaml", data)
    assert main(["run", str(pipeline), "--no-progress", "-q", "--only", "synsets", "--only", "candidates",
                 "--only", "annotate"]) == 0
    export, staging = run_dir / "export", staging_path(run_dir / "export")
    assert subprocess.run(export_command(pipeline, 0.25), capture_output=True).returncode == 0
    finished = {finished_export(export)}  # val_fractions of the exports that completed so far

    rng = random.Random(0)
    after_staging = [True] * (ROUNDS - 2) + [False] * 2
    rng.shuffle(after_staging)
    landed_in_writing = 0
    for round_, timed_from_staging in enumerate(after_staging):
        val_fraction = 0.2 if round_ % 2 else 0.3  # every round's export differs from the one before
        kill_during(export_command(pipeline, val_fraction), staging, timed_from_staging, rng)
        landed_in_writing += staging.exists()
        if export.exists():  # what a reader that knows nothing of staging folders sees
            found = finished_export(export)
            assert found in finished | {val_fraction}
            finished.add(found)
        reader_sees = published(export)  # undoes an interrupted swap, as every reader and writer does
        assert reader_sees is not None and finished_export(reader_sees) in finished

    assert landed_in_writing >= 2, "some kills must land while the export is being written"
    assert subprocess.run(export_command(pipeline, 0.35), capture_output=True).returncode == 0
    assert finished_export(export) == 0.35
    assert not staging.exists() and not export.with_name("export.previous").exists()
