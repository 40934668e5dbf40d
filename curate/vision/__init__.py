"""Vision: torchvision backbones (:mod:`.backbones`), batched embedding (:mod:`.embed`) and
benchmark training (:mod:`.train`)."""

from curate.vision.backbones import (
    Backbone,
    WeightsUnavailable,
    build_classifier,
    list_backbones,
    load_backbone,
    resolve_device,
)
from curate.vision.embed import ImageReadError, embed_images

__all__ = [
    "Backbone",
    "ImageReadError",
    "WeightsUnavailable",
    "build_classifier",
    "embed_images",
    "list_backbones",
    "load_backbone",
    "resolve_device",
]
