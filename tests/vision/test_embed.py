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


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_that_still_covers_the_resize(tmp_path: Path, backbone: Backbone):
    from curate.vision.embed import ImageFiles

    path = tmp_path / "big.jpg"
    Image.new("RGB", (1200, 900), (10, 120, 200)).save(path)
    seen: list[tuple[int, int]] = []

    def transform(image):
        seen.append(image.size)
        return backbone.transform(image)

    transform.resize_size = [256]  # as torchvision's presets say it
    ImageFiles([path], transform)[0]
    assert seen == [(600, 450)]  # libjpeg's 1/2 scale: the shorter side stays >= 256
    assert embed_images([path], backbone, progress=False).shape == (1, backbone.feature_dim)


def test_mirrored_embeddings_are_averaged_in(image_paths: list[Path], backbone: Backbone, tmp_path: Path):
    lopsided = Image.new("RGB", (64, 64), (250, 250, 250))
    lopsided.paste((200, 20, 20), (0, 0, 20, 64))  # a red bar on the left only
    lopsided.save(tmp_path / "lopsided.png")
    paths = [image_paths[0], tmp_path / "lopsided.png"]
    plain = embed_images(paths, backbone, progress=False)
    flipped = embed_images(paths, backbone, progress=False, hflip=True)
    assert np.allclose(flipped[0], plain[0], atol=1e-5)  # a plain colour is its own mirror image
    assert not np.allclose(flipped[1], plain[1], atol=1e-3)


def test_a_batch_that_does_not_fit_the_gpu_is_split_in_halves(image_paths: list[Path], backbone: Backbone,
                                                               monkeypatch: pytest.MonkeyPatch):
    import curate.vision.embed as embed

    real = embed._embed_batch

    def small_memory(batch, *args):  # the device's memory: at most two images at a time
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(batch, *args)

    monkeypatch.setattr(embed, "_embed_batch", small_memory)
    fits = embed._BatchFit(8)
    batch = torch.stack([backbone.transform(Image.open(p).convert("RGB")) for p in image_paths])
    out = fits.embed(batch, backbone.model, backbone.device, False, False)
    assert fits.size == 2 and out.shape == (5, backbone.feature_dim)
    assert np.allclose(out, real(batch, backbone.model, backbone.device), atol=1e-5)
