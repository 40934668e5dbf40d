"""linear_probe on a tiny separable ImageFolder (red / green / blue images, random backbone)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from curate.vision.backbones import Backbone, load_backbone
from curate.vision.train import linear_probe

CLASSES = {"n00000001": (200, 30, 30), "n00000002": (30, 180, 30), "n00000003": (30, 30, 200)}


def write_split(root: Path, per_class: int, seed: int, classes: dict = CLASSES) -> Path:
    """``root/<wnid>/*.png``: each class a jittered colour field, so even random features separate them."""
    rng = random.Random(seed)
    for wnid, colour in classes.items():
        (root / wnid).mkdir(parents=True)
        for i in range(per_class):
            jitter = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
            size_px = (rng.randint(40, 80), rng.randint(40, 80))
            Image.new("RGB", size_px, jitter).save(root / wnid / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    torch.manual_seed(0)
    return load_backbone("resnet18", weights="none", device="cpu")


def test_probe_separates_colours(tmp_path: Path, backbone: Backbone):
    train = write_split(tmp_path / "train", per_class=8, seed=1)
    val = write_split(tmp_path / "val", per_class=4, seed=2)
    result = linear_probe(train, val, backbone, epochs=30, batch_size=8, progress=False)
    assert result.top1 == 1.0 and result.top5 == 1.0 and result.k_top5 == 3
    assert (result.n_train, result.n_val, result.num_classes, result.epochs) == (24, 12, 3, 30)
    assert result.per_class_top1 == {wnid: 1.0 for wnid in CLASSES}
    assert json.loads(json.dumps(result.to_dict()))["device"] == "cpu"


def test_val_classes_use_the_train_index(tmp_path: Path, backbone: Backbone):
    """Val lacks the first class: mapped with its own class_to_idx every label would shift by one."""
    train = write_split(tmp_path / "train", per_class=8, seed=1)
    val = write_split(tmp_path / "val", per_class=4, seed=2,
                      classes={w: c for w, c in CLASSES.items() if w != "n00000001"})
    result = linear_probe(train, val, backbone, epochs=30, batch_size=8, progress=False)
    assert result.top1 == 1.0 and result.n_val == 8
    assert set(result.per_class_top1) == {"n00000002", "n00000003"}


def test_val_class_unknown_to_train(tmp_path: Path, backbone: Backbone):
    train = write_split(tmp_path / "train", per_class=2, seed=1)
    val = write_split(tmp_path / "val", per_class=1, seed=2, classes={"n09999999": (0, 0, 0)})
    with pytest.raises(ValueError, match="n09999999"):
        linear_probe(train, val, backbone, epochs=1, progress=False)


def test_missing_folder(tmp_path: Path, backbone: Backbone):
    with pytest.raises(ValueError, match="not an image folder"):
        linear_probe(tmp_path / "absent", tmp_path / "absent", backbone, epochs=1, progress=False)


def test_top5_counts_only_the_five_best_of_more_classes():
    """Seven classes: a target ranked sixth is a top-5 miss, one ranked fifth a hit."""
    from curate.vision.train import evaluate

    logits = torch.tensor([[7.0, 6, 5, 4, 3, 2, 1]] * 3)  # class 0 first ... class 6 last
    targets = torch.tensor([0, 4, 5])  # ranked 1st, 5th, 6th
    top1, top5, per_class = evaluate(nn.Identity(), [(logits, targets)], k=5, class_names=[f"c{i}" for i in range(7)])
    assert top1 == pytest.approx(1 / 3) and top5 == pytest.approx(2 / 3)
    assert per_class == {"c0": 1.0, "c4": 0.0, "c5": 0.0}
