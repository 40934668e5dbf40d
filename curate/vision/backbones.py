"""Backbones: any torchvision classification model, loaded as a frozen feature extractor or as a
classifier with a fresh head.

Reads: torchvision's model registry, the torch hub cache (``weights: imagenet``) or a local
state_dict file (``weights: <path>``). Writes nothing itself, except that ``weights: imagenet``
lets torchvision download the checkpoint into the torch hub cache when it is not there yet.
On failure: an unknown model name, a missing or unreadable weights file, or a state_dict of another
architecture raise :class:`~curate.errors.ConfigError` (exit 2); ImageNet weights that can be
neither found in the cache nor downloaded raise :class:`WeightsUnavailable` (exit 2), whose message
says how to provide them.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import PIL.Image
import torch
import torchvision
from torch import nn
from torchvision import transforms as T

from curate.errors import ConfigError, CurateError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_PX = 256
CROP_PX = 224
# Keys under which training scripts commonly nest the state_dict inside a checkpoint dict.
CHECKPOINT_KEYS = ("state_dict", "model")


class WeightsUnavailable(CurateError):
    """Pretrained ImageNet weights could not be loaded (no network and nothing in the hub cache)."""

    exit_code = 2

    def __init__(self, name: str, weights: str, cause: Exception, url: str | None = None):
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        checkpoint = f"{hub_dir / Path(url).name} (from {url})" if url else f"the checkpoint in {hub_dir}"
        super().__init__(
            f"backbone '{name}': weights '{weights}' are unavailable ({type(cause).__name__}: {cause}).\n"
            f"Fix one of:\n"
            f"  - place {checkpoint}\n"
            f"    or run once where download.pytorch.org is reachable, which fills that cache;\n"
            f"  - set 'weights: <path to a state_dict .pth file>' for this backbone;\n"
            f"  - set 'weights: none' to start from random initialization (the noise stage then skips its check:\n"
            f"    an untrained backbone cannot judge labels)."
        )


@dataclass
class Backbone:
    name: str
    weights: str
    key: str  # stable cache key: "<name>:imagenet", "<name>:none" or "<name>:sha256-<16 hex of the file>"
    model: nn.Module  # classifier whose last Linear is an Identity: outputs (N, feature_dim) features
    feature_dim: int
    transform: Callable[[PIL.Image.Image], torch.Tensor]
    device: torch.device

    @property
    def trained(self) -> bool:
        """False for random initialisation (``weights: none``, also what ``weights_fallback: none`` loads):
        its features barely tell classes apart, so what is found or scored on them is no evidence. A
        state_dict file counts as trained: the file is the user's word for it."""
        return self.weights != "none"


def list_backbones() -> list[str]:
    """Names of torchvision's image classification models."""
    return torchvision.models.list_models(module=torchvision.models)


def resolve_device(preference: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu`` and ``cuda`` (or ``cuda:N``) as asked."""
    if isinstance(preference, torch.device):
        return preference
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cpu":
        return torch.device("cpu")
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{preference}' was requested but CUDA is not available here")
        return torch.device(preference)
    raise ConfigError(f"unknown device '{preference}': use auto, cpu or cuda")


def load_backbone(name: str, weights: str = "imagenet", device: str | torch.device = "auto") -> Backbone:
    """A frozen feature extractor: the classifier with its last Linear replaced by an Identity."""
    torch_device = resolve_device(device)
    model, key = _build_model(name, weights)
    head_name, head = _last_linear(model, name)
    _replace_module(model, head_name, nn.Identity())
    model = _to_device(model.eval().requires_grad_(False), torch_device)
    log.info("backbone %s (%s): %d-d features from '%s' on %s", name, key, head.in_features, head_name,
             torch_device)
    return Backbone(name, weights, key, model, head.in_features, image_transform(name), torch_device)


def build_classifier(
    name: str, weights: str, num_classes: int, device: str | torch.device = "auto"
) -> nn.Module:
    """The full classifier with its last Linear replaced by a new one with ``num_classes`` outputs."""
    model, _ = _build_model(name, weights)
    head_name, head = _last_linear(model, name)
    _replace_module(model, head_name, nn.Linear(head.in_features, num_classes))
    return _to_device(model, resolve_device(device))


def weights_identity(name: str, weights: str) -> str:
    """What ``weights`` would load now, cheaply (no model is built): ``none``; ``sha256-<16 hex>`` of a
    state_dict file; for ``imagenet``, the checkpoint's file name and whether the torch hub cache holds
    it. Stages fingerprint this, so a checkpoint that appears after a fallback run re-runs them."""
    if weights == "none":
        return "none"
    if weights != "imagenet":
        path = Path(weights).expanduser()
        return f"sha256-{_sha256_prefix(path)}" if path.is_file() else f"missing:{path}"
    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, AttributeError, KeyError):
        return "imagenet:unknown"
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return f"imagenet:{checkpoint.name}:{'cached' if checkpoint.is_file() else 'absent'}"


def image_transform(name: str) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """Evaluation preprocessing: the weights' own transforms when torchvision has them, else
    resize 256 / center crop 224 / ImageNet normalization."""
    try:
        return torchvision.models.get_model_weights(name).DEFAULT.transforms()
    except (ValueError, AttributeError, KeyError):
        return T.Compose([
            T.Resize(RESIZE_PX, antialias=True),
            T.CenterCrop(CROP_PX),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])


def _build_model(name: str, weights: str) -> tuple[nn.Module, str]:
    """The torchvision model with the asked weights, and its cache key."""
    _check_name(name)
    if weights == "imagenet":
        return _imagenet_model(name), f"{name}:imagenet"
    if weights == "none":
        return torchvision.models.get_model(name, weights=None), f"{name}:none"
    path = Path(weights).expanduser()
    state_dict = _read_state_dict(path)
    model = torchvision.models.get_model(name, weights=None)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"weights file {path} does not fit backbone '{name}': {_mismatch(exc)}") from exc
    return model, f"{name}:sha256-{_sha256_prefix(path)}"


def _check_name(name: str) -> None:
    known = list_backbones()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see curate.vision.list_backbones()"
        raise ConfigError(f"unknown backbone '{name}'{hint}")


def _imagenet_model(name: str) -> nn.Module:
    try:
        return torchvision.models.get_model(name, weights="DEFAULT")
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a corrupt cache file a RuntimeError
        url = torchvision.models.get_model_weights(name).DEFAULT.url
        raise WeightsUnavailable(name, "imagenet", exc, url) from exc


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a plain file or from a checkpoint dict nesting it; DDP's ``module.`` stripped."""
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist (use 'imagenet', 'none' or a state_dict path)")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise ConfigError(f"weights file {path} is not a readable torch state_dict: {exc}") from exc
    for key in CHECKPOINT_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not loaded:
        raise ConfigError(f"weights file {path} holds no state_dict (found {type(loaded).__name__})")
    if all(k.startswith("module.") for k in loaded):
        loaded = {k.removeprefix("module."): v for k, v in loaded.items()}
    return loaded


def _mismatch(exc: RuntimeError) -> str:
    """The first lines of torch's load_state_dict error: enough to see which keys differ."""
    lines = str(exc).splitlines()
    text = " ".join(line.strip() for line in lines[:3])
    return text[:400] + ("..." if len(text) > 400 else "")


def _sha256_prefix(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _last_linear(model: nn.Module, name: str) -> tuple[str, nn.Linear]:
    """The classification head: the last ``nn.Linear`` in module order (fc, classifier.1, heads.head...)."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"backbone '{name}' has no Linear classification head to replace")
    return linears[-1]


def _replace_module(model: nn.Module, dotted_name: str, replacement: nn.Module) -> None:
    parent_name, _, child_name = dotted_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child_name, replacement)


def _to_device(model: nn.Module, device: torch.device) -> nn.Module:
    # channels_last suits cuDNN (tensor cores) and oneDNN alike: mobilenet_v2 runs 1.7x faster on CPU.
    return model.to(device, memory_format=torch.channels_last)
