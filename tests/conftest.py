"""Shared fixtures: a tiny captioned corpus built in code, and pipeline files pointing at it."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MOBILENET = SHARED / "models" / "mobilenet_v2_imagenet.pth"
IMAGENETTE_MINI = SHARED / "eval" / "imagenette-mini"

DOG, CAT, MOUSE = "n02084071", "n02121620", "n02330245"  # dog.n.01, cat.n.01, mouse.n.01
HOTDOG, COMPUTER_MOUSE = "n07697537", "n03793489"

# (caption, true wnid, colour, shape): each class draws in its own colour so even a random backbone
# separates them; the noise items are real keyword-search noise (polysemy).
CORPUS_SPEC = (
    [(f"a dog playing {i}", DOG, (200, 40, 40), "ellipse") for i in range(8)]
    + [(f"sleeping cat {i}", CAT, (40, 40, 200), "rectangle") for i in range(8)]
    + [(f"field mouse {i}", MOUSE, (40, 160, 40), "polygon") for i in range(8)]
    + [(f"hot dog with mustard {i}", HOTDOG, (230, 200, 60), "rectangle") for i in range(2)]
    + [(f"computer mouse {i}", COMPUTER_MOUSE, (120, 120, 120), "ellipse") for i in range(2)]
)


def draw_image(colour: tuple[int, int, int], shape: str, seed: int, size: int = 96) -> Image.Image:
    rng = random.Random(seed)
    img = Image.new("RGB", (size, size), tuple(255 - c // 4 for c in colour))
    draw = ImageDraw.Draw(img)
    box = [rng.randint(5, 25), rng.randint(5, 25), rng.randint(60, 90), rng.randint(60, 90)]
    jitter = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in colour)
    if shape == "ellipse":
        draw.ellipse(box, fill=jitter)
    elif shape == "rectangle":
        draw.rectangle(box, fill=jitter)
    else:
        draw.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=jitter)
    return img


def build_corpus(root: Path, extra_rows: list[dict] | None = None) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (caption, wnid, colour, shape) in enumerate(CORPUS_SPEC):
        name = f"images/img_{i:03d}.png"
        draw_image(colour, shape, seed=i).save(root / name)
        rows.append({"file": name, "caption": caption, "true_wnids": wnid, "license": "CC0-1.0", "creator": "tests"})
    rows += extra_rows or []
    with (root / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "caption", "true_wnids", "license", "creator"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def pipeline_dict(corpus: Path, run_dir: Path) -> dict:
    return {
        "run": {"name": "fixture", "dir": str(run_dir), "seed": 0},
        "synsets": {"wnids": [DOG, CAT, MOUSE]},
        "candidates": {
            "sources": [{"type": "local", "root": str(corpus), "index": "index.csv", "captions": ["index"]}],
            "download": {"workers": 2, "max_side_px": 128},
            # the fixture's drawn shapes are simple on purpose: quality checks and near-duplicate
            # grouping are tested on images made for them (tests/test_quality*.py)
            "quality": {"enabled": False, "near_duplicate_distance": 0},
        },
        "annotate": {"backend": {"type": "simulated", "workers": 7, "accuracy": 0.95, "accuracy_spread": 0.03,
                                 "spammer_share": 0.0},
                     "votes_per_image": 3, "aggregate": "majority"},  # fixed voting: 7 workers, no rounds
        "noise": {"backbone": "mobilenet_v3_small", "weights": "none", "folds": 3, "min_images_per_class": 3,
                  "batch_size": 16},
        "export": {"val_fraction": 0.25},
        "benchmark": {"modes": [{"type": "linear_probe", "epochs": 20}]},
    }


def write_pipeline(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def seeded_weights(tmp_path_factory) -> Path:
    """The fixture pipeline's backbone (mobilenet_v3_small, random weights seeded as ``run.seed`` 0 seeds
    them) saved as a state_dict file, for tests of the noise stage's machinery: ``weights: none`` skips the
    noise check (no trained backbone), a weights file counts as trained. Its flags are no judgement of the
    labels (tests of that use MOBILENET)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small_seed0.pth"
    torch.save(torchvision.models.get_model("mobilenet_v3_small", weights=None).state_dict(), path)
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return build_corpus(tmp_path / "corpus")


@pytest.fixture
def pipeline_file(tmp_path: Path, corpus: Path) -> Path:
    return write_pipeline(tmp_path / "pipeline.yaml", pipeline_dict(corpus, tmp_path / "run"))


def require_labelstudio() -> None:
    """Skip (or, with CURATE_REQUIRE_LABELSTUDIO=1 as `make test` sets it, fail) when Label Studio is not
    installed beside curate."""
    import os

    from curate.labelstudio import LabelStudioError
    from curate.labelstudio.server import find_executable

    try:
        find_executable()
    except LabelStudioError as exc:
        if os.environ.get("CURATE_REQUIRE_LABELSTUDIO") == "1":
            pytest.fail(f"CURATE_REQUIRE_LABELSTUDIO=1 but {exc}")
        pytest.skip(f"Label Studio is not installed (run `make labelstudio`): {exc}")
