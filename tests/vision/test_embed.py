"""embed_images: shape, row order, determinism, empty input and unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from curate.vision.backbones import Backbone, load_backbone
from curate.vision.embed import ImageReadError, embed_images

COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (240, 240, 20), (20, 20, 20)]


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    torch.manual_seed(0)
    return load_backbone("resnet18", weights="none", device="cpu")


@pytest.fixture
def image_paths(tmp_path: Path) -> list[Path]:
    """Five small images of different colours, sizes, modes and formats."""
    paths = []
    for i, colour in enumerate(COLOURS):
        image = Image.new("RGB", (40 + 10 * i, 30 + 7 * i), colour)
        if i == 3:
            image = image.convert("L")  # grayscale: must come out as 3 channels
        path = tmp_path / f"img{i}.{'png' if i % 2 else 'jpg'}"
        image.save(path)
        paths.append(path)
    return paths


def test_shape_dtype_and_determinism(image_paths: list[Path], backbone: Backbone):
    first = embed_images(image_paths, backbone, batch_size=2, progress=False)
    second = embed_images(image_paths, backbone, batch_size=2, progress=False)
    assert first.shape == (5, backbone.feature_dim) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)
    red, blue = first[0], first[2]  # different images, different features
    assert np.linalg.norm(red - blue) > 0.01 * np.linalg.norm(red)


def test_rows_follow_the_order_of_paths(image_paths: list[Path], backbone: Backbone):
    forward = embed_images(image_paths, backbone, batch_size=64, progress=False)
    reverse = embed_images(image_paths[::-1], backbone, batch_size=3, progress=False)
    np.testing.assert_allclose(reverse, forward[::-1], rtol=1e-4, atol=1e-5)


def test_empty_input(backbone: Backbone):
    assert embed_images([], backbone, progress=False).shape == (0, backbone.feature_dim)


def test_unreadable_image_names_the_file(tmp_path: Path, backbone: Backbone):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        embed_images([broken], backbone, progress=False)
