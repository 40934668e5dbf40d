"""Stale results: stages fingerprint what they would actually use, not only what was asked for."""

from __future__ import annotations

import json
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from conftest import MOBILENET, write_pipeline

from curate.cli import main


def stage_line(out: str, stage: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"  {stage:<11}"))


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch) -> Path:
    """An empty torch hub cache, and a network that refuses every download (as on an offline machine)."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError(f"offline: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return tmp_path / "hub" / "checkpoints"


@pytest.mark.skipif(not MOBILENET.is_file(), reason="needs the pretrained MobileNetV2 state_dict (shared/models)")
def test_weights_that_appear_after_a_fallback_run_rerun_noise_and_benchmark(pipeline_file, offline_hub, capsys):
    data = yaml.safe_load(pipeline_file.read_text())
    data["noise"].update(backbone="mobilenet_v2", weights="imagenet", weights_fallback="none")
    pipeline = write_pipeline(pipeline_file, data)
    run_dir = Path(data["run"]["dir"])

    assert main(["run", str(pipeline), "--no-progress"]) == 0
    assert "backbone=mobilenet_v2:none" in stage_line(capsys.readouterr().out, "noise")

    assert main(["run", str(pipeline), "--no-progress"]) == 0  # nothing changed: nothing to do
    assert stage_line(capsys.readouterr().out, "noise").endswith("nothing to do")

    url = torchvision.models.get_model_weights("mobilenet_v2").DEFAULT.url
    offline_hub.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MOBILENET, offline_hub / Path(url).name)  # the checkpoint is now in the cache
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "backbone=mobilenet_v2:imagenet" in stage_line(out, "noise")
    assert json.loads((run_dir / "benchmark" / "linear_probe.json").read_text())["backbone"] == "mobilenet_v2:imagenet"


def test_the_benchmark_reruns_when_the_backbone_it_inherits_changes(pipeline_file, capsys):
    run_dir = Path(yaml.safe_load(pipeline_file.read_text())["run"]["dir"])
    assert main(["run", str(pipeline_file), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", str(pipeline_file), "--no-progress", "--only", "benchmark",
                 "--set", "noise.backbone=resnet18"]) == 0
    assert not stage_line(capsys.readouterr().out, "benchmark").endswith("nothing to do")
    assert json.loads((run_dir / "benchmark" / "linear_probe.json").read_text())["backbone"] == "resnet18:none"
