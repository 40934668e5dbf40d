"""Backbones: generic head stripping, weight sources (none / file / ImageNet) and their errors."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from curate.errors import ConfigError
from curate.vision.backbones import (
    WeightsUnavailable,
    build_classifier,
    list_backbones,
    load_backbone,
    resolve_device,
)


@pytest.mark.parametrize(
    ("name", "head_path", "feature_dim"),
    [("resnet18", "fc", 512), ("mobilenet_v3_small", "classifier.3", 1024),
     ("efficientnet_b0", "classifier.1", 1280), ("shufflenet_v2_x0_5", "fc", 1024)],
)
def test_last_linear_becomes_identity(name: str, head_path: str, feature_dim: int):
    torch.manual_seed(0)
    backbone = load_backbone(name, weights="none", device="cpu")
    assert isinstance(backbone.model.get_submodule(head_path), nn.Identity)
    assert backbone.feature_dim == feature_dim and backbone.key == f"{name}:none"
    assert not backbone.model.training
    with torch.inference_mode():
        assert backbone.model(torch.rand(2, 3, 64, 64)).shape == (2, feature_dim)


def test_transform_gives_a_normalized_224_crop():
    backbone = load_backbone("resnet18", weights="none", device="cpu")
    tensor = backbone.transform(Image.new("RGB", (100, 60), (255, 255, 255)))
    assert tensor.shape == (3, 224, 224)
    assert tensor[0, 0, 0].item() == pytest.approx((1.0 - 0.485) / 0.229, abs=1e-3)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ConfigError, match="resnet50") as info:
        load_backbone("resnet5O", weights="none")
    assert info.value.exit_code == 2


def test_model_without_linear_head_is_refused():
    with pytest.raises(ConfigError, match="no Linear"):
        load_backbone("squeezenet1_0", weights="none", device="cpu")


def test_missing_weights_file(tmp_path: Path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(ConfigError, match="does not exist"):
        load_backbone("resnet18", weights=str(missing), device="cpu")


def test_weights_of_another_architecture(tmp_path: Path):
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.get_model("mobilenet_v3_small").state_dict(), path)
    with pytest.raises(ConfigError, match="does not fit backbone 'resnet18'"):
        load_backbone("resnet18", weights=str(path), device="cpu")


def test_file_that_is_not_a_state_dict(tmp_path: Path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable torch state_dict"):
        load_backbone("resnet18", weights=str(path), device="cpu")


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "ddp"])
def test_state_dict_file_loads_and_keys_by_content(tmp_path: Path, wrap: str):
    torch.manual_seed(1)
    state = torchvision.models.get_model("resnet18").state_dict()
    payload = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state},
        "ddp": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    path = tmp_path / "resnet18.pth"
    torch.save(payload, path)
    backbone = load_backbone("resnet18", weights=str(path), device="cpu")
    assert backbone.key == f"resnet18:sha256-{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
    assert torch.equal(backbone.model.conv1.weight, state["conv1.weight"])


def test_imagenet_weights_unreachable_says_how_to_fix(monkeypatch: pytest.MonkeyPatch):
    def offline(url: str, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailable) as info:
        load_backbone("resnet18", weights="imagenet", device="cpu")
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "resnet18-f37072fd.pth" in message and "weights: none" in message and "state_dict" in message


def test_build_classifier_has_a_fresh_head():
    torch.manual_seed(0)
    model = build_classifier("resnet18", "none", num_classes=3, device="cpu")
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 3
    assert all(p.requires_grad for p in model.parameters())
    model.eval()
    with torch.inference_mode():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 3)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_list_backbones_names_classification_models():
    names = list_backbones()
    assert {"resnet50", "mobilenet_v2", "vit_b_16"} <= set(names)
    assert "fasterrcnn_resnet50_fpn" not in names
