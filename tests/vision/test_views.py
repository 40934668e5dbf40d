"""Region views: the embedding and its four corner windows from one forward pass."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from curate.vision.backbones import Backbone, load_backbone
from curate.vision.embed import embed_images
from curate.vision.views import NUM_VIEWS, RegionViewsUnsupported, region_model, supports_region_views


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    torch.manual_seed(0)
    return load_backbone("resnet18", weights="none", device="cpu")


def lopsided(path: Path, mirrored: bool = False) -> Path:
    """A 256 px square with a red block top left and a blue bar at the bottom: no symmetry to hide behind."""
    image = Image.new("RGB", (256, 256), (245, 245, 245))
    image.paste((210, 20, 20), (0, 0, 110, 90))
    image.paste((20, 20, 200), (60, 200, 256, 256))
    if mirrored:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image.save(path)
    return path


def test_view_0_is_the_ordinary_embedding_and_the_corners_are_windows_of_the_map(backbone: Backbone):
    x = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        views = region_model(backbone.model, backbone.name)(x).reshape(2, NUM_VIEWS, -1)
        plain = backbone.model(x)
        trunk = nn.Sequential(*list(backbone.model.children())[:-2])  # resnet: up to layer4, the 7 x 7 map
        grid = trunk(x)
    assert grid.shape[-2:] == (7, 7)
    assert torch.allclose(views[:, 0], plain, atol=1e-5)
    corners = [grid[:, :, t:t + 5, left:left + 5].mean(dim=(2, 3)) for t in (0, 2) for left in (0, 2)]
    for k, corner in enumerate(corners, start=1):
        assert torch.allclose(views[:, k], corner, atol=1e-5)
    assert not torch.allclose(views[:, 1], views[:, 4], atol=1e-3)


def test_embed_images_returns_every_view_of_every_image(backbone: Backbone, tmp_path: Path):
    paths = [lopsided(tmp_path / "a.png"), lopsided(tmp_path / "b.png", mirrored=True)]
    plain = embed_images(paths, backbone, progress=False)
    views = embed_images(paths, backbone, progress=False, regions=True)
    assert views.shape == (2, NUM_VIEWS, backbone.feature_dim) and views.dtype == np.float32
    assert np.allclose(views[:, 0], plain, atol=1e-5)
    assert embed_images([], backbone, progress=False, regions=True).shape == (0, NUM_VIEWS, backbone.feature_dim)


def test_mirroring_averages_each_window_with_its_mirror_image(backbone: Backbone, tmp_path: Path):
    """With hflip, an image and its mirror image get the same views, left and right corners swapped:
    so each window was averaged with the mirrored image's window over the same pixels."""
    image = embed_images([lopsided(tmp_path / "a.png")], backbone, progress=False, hflip=True, regions=True)[0]
    mirror = embed_images([lopsided(tmp_path / "b.png", mirrored=True)], backbone, progress=False, hflip=True,
                          regions=True)[0]
    assert np.allclose(image[[0, 2, 1, 4, 3]], mirror, atol=1e-4)
    assert not np.allclose(image[1], image[2], atol=1e-3)


class Pooled(nn.Module):
    """A map's global mean by the functional call (MobileNetV2's way), then a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.conv(x), (1, 1)), 1))


def test_a_functional_global_pooling_is_found_too():
    model = Pooled().eval()
    x = torch.rand(3, 3, 28, 28)
    with torch.inference_mode():
        views = region_model(model, "pooled")(x).reshape(3, NUM_VIEWS, 2)
        assert torch.allclose(views[:, 0], model(x), atol=1e-6)


def test_a_backbone_without_a_spatial_map_gets_one_view_with_a_warning(caplog):
    flat = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    with pytest.raises(RegionViewsUnsupported, match="flat has none"):
        region_model(flat, "flat")
    stand_in = Backbone("flat", "none", "flat:none", flat, 4, lambda image: image, torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="curate.vision.views"):
        assert not supports_region_views(stand_in)
    assert "one view per image" in caplog.text
