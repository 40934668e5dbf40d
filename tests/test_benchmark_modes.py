"""The benchmark stage's modes in a pipeline: config, several modes with noisy vs cleaned labels and a
learning curve, and the acceptance test of resuming: SIGKILL a fine-tuning after its first epoch
checkpoint, run again, and it continues from the saved epoch and finishes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import MOBILENET, build_corpus, pipeline_dict, write_pipeline

from curate.cli import main
from curate.config import load_config
from curate.errors import ConfigError

UNTIL_EXPORT = ["--only", "synsets", "--only", "candidates", "--only", "annotate", "--only", "noise",
                "--only", "export"]
# one CPU thread: on two cores shared with other work, two threads can make training 20x slower
FAST_FINETUNE = {"type": "finetune", "epochs": 2, "image_size_px": 64, "batch_size": 8, "warmup_probe_epochs": 10,
                 "cpu_threads": 1}


def pipeline_with(tmp_path: Path, benchmark: dict, **sections) -> Path:
    data = pipeline_dict(build_corpus(tmp_path / "corpus"), tmp_path / "run")
    data["benchmark"] = benchmark
    data.update(sections)
    return write_pipeline(tmp_path / "pipeline.yaml", data)


def test_modes_by_name_with_defaults(tmp_path: Path):
    config = load_config(pipeline_with(tmp_path, {"modes": ["linear_probe", "finetune", "scratch"]}))
    probe, finetune, scratch = config.benchmark.modes
    assert (finetune.epochs, finetune.warmup_probe_epochs, finetune.backbone_lr_scale, finetune.batchnorm) == \
        (5, 30, 0.1, "auto")
    assert (scratch.epochs, scratch.model, scratch.image_size_px) == (30, None, 128)
    assert config.benchmark.compare_noisy is False and config.benchmark.learning_curve is None


@pytest.mark.parametrize(("benchmark", "message"), [
    ({"modes": [{"type": "finetune", "epochs": 2, "warmup_epochs": 2}]}, "warmup_epochs"),
    ({"modes": ["linear_probe"], "learning_curve": {"modes": ["nosuchmode"]}}, "nosuchmode"),
    ({"modes": ["linear_probe"], "learning_curve": {"samples_per_class": [0]}}, "samples_per_class"),
    ({"modes": [{"type": "finetune", "lr_head": 1}]}, "lr_head"),
])
def test_bad_benchmark_settings_name_their_key(tmp_path: Path, benchmark: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        load_config(pipeline_with(tmp_path, benchmark))


@pytest.mark.skipif(not MOBILENET.is_file(), reason="shared/models/mobilenet_v2_imagenet.pth not present")
def test_modes_noisy_vs_cleaned_and_learning_curve(tmp_path: Path):
    """Pretrained weights (trusted flags: the export drops them; the comparison puts them back)."""
    noise = {"backbone": "mobilenet_v2", "weights": str(MOBILENET), "folds": 3, "min_images_per_class": 3,
             "batch_size": 16}
    benchmark = {"modes": ["linear_probe", FAST_FINETUNE], "compare_noisy": True,
                 "learning_curve": {"samples_per_class": [2, 4], "modes": ["linear_probe", "finetune"]}}
    pipeline = pipeline_with(tmp_path, benchmark, noise=noise)
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    bench = tmp_path / "run" / "benchmark"
    sheet = json.loads((tmp_path / "run" / "export" / "datasheet.json").read_text())
    for mode in ("linear_probe", "finetune"):
        result = json.loads((bench / f"{mode}.json").read_text())
        assert 0 <= result["top1"] <= result["top5"] <= 1 and result["n_val"] == sheet["counts"]["val"]
        compared = result["compare_noisy"]
        assert compared["flagged_dropped_by_export"] == sheet["label_noise"]["flagged_dropped_from_export"]
        assert compared["noisy"]["n_train"] == compared["cleaned"]["n_train"] + compared["flagged_dropped_by_export"]
        assert compared["cleaned"]["n_train"] == result["n_train"]  # the export is the cleaned set
        assert (bench / result["plot"]).is_file()
    finetune = json.loads((bench / "finetune.json").read_text())
    assert [row["epoch"] for row in finetune["history"]] == [1, 2] and finetune["settings"]["image_size_px"] == 64
    curve = json.loads((bench / "learning_curve.json").read_text())
    assert [p["samples_per_class"] for p in curve["modes"]["finetune"]] == [2, 4]
    assert [p["n_train"] for p in curve["modes"]["linear_probe"]] == [6, 12]
    assert (bench / "learning_curve.png").stat().st_size > 1000
    page = (bench / "index.html").read_text()
    assert "learning_curve.png" in page and "noisy" in page and "finetune.png" in page
    assert not (bench / "checkpoints").exists()  # removed once the stage finished


def checkpoint_epoch(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # not there yet, or being replaced
        return None


def test_sigkill_during_finetune_then_resume(tmp_path: Path):
    epochs = 12
    finetune = {"type": "finetune", "epochs": epochs, "image_size_px": 64, "batch_size": 4, "warmup_probe_epochs": 5,
                "batchnorm": "train", "cpu_threads": 1}  # a random backbone: nothing to freeze in its BatchNorm
    pipeline = pipeline_with(tmp_path, {"modes": [finetune], "backbone": "resnet18", "weights": "none"})
    assert main(["run", str(pipeline), "--no-progress", *UNTIL_EXPORT]) == 0
    checkpoint = tmp_path / "run" / "benchmark" / "checkpoints" / "finetune.pt"
    command = [sys.executable, "-m", "curate", "run", str(pipeline), "--no-progress", "--only", "benchmark"]

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved_epoch = checkpoint_epoch(checkpoint)
    assert saved_epoch is not None and 1 <= saved_epoch < epochs, "the kill must land between epochs"

    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from the checkpoint of epoch {saved_epoch}/{epochs}" in rerun.stderr
    result = json.loads((tmp_path / "run" / "benchmark" / "finetune.json").read_text())
    assert result["resumed_from_epoch"] == saved_epoch
    assert [row["epoch"] for row in result["history"]] == list(range(1, epochs + 1))
    assert not checkpoint.exists()


def test_compare_noisy_when_the_export_kept_the_flags(tmp_path: Path, seeded_weights: Path):
    """Flags kept by the policy: the export holds them (label_issue column); 'cleaned' leaves them out."""
    import csv

    noise = {**pipeline_dict(tmp_path, tmp_path)["noise"], "weights": str(seeded_weights)}
    pipeline = pipeline_with(tmp_path, {"modes": ["linear_probe"], "compare_noisy": True}, noise=noise,
                             review={"policy": {"label": "keep"}})
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    with (tmp_path / "run" / "export" / "labels.csv").open() as fh:
        train = [row for row in csv.DictReader(fh) if row["split"] == "train"]
    compared = json.loads((tmp_path / "run" / "benchmark" / "linear_probe.json").read_text())["compare_noisy"]
    assert compared["flagged_dropped_by_export"] == 0
    assert compared["noisy"]["n_train"] == len(train)
    kept_flagged = sum(row["label_issue"] == "True" for row in train)
    assert kept_flagged and compared["cleaned"]["n_train"] == len(train) - kept_flagged


def test_compare_noisy_puts_relabelled_images_back_under_their_given_class():
    import pandas as pd

    from curate.stages.benchmark import _relabelled_from

    table = pd.DataFrame({"sha256": ["a", "b", "c"], "wnid": ["n2", "n2", "n1"], "given_wnid": ["n1", "n2", "n1"],
                          "decision": ["relabel", "keep", float("nan")]})
    assert _relabelled_from(table, {"n1": 0, "n2": 1}) == {"a": 0}
    assert _relabelled_from(table.drop(columns="decision"), {"n1": 0, "n2": 1}) == {}
