"""Batched image embedding with a frozen :class:`~curate.vision.backbones.Backbone`.

Reads: image files (any format Pillow decodes; converted to RGB) and the backbone. Writes nothing;
returns a float32 array with one row per path, in the order given. On CUDA it pins host memory,
copies non-blocking, feeds channels_last batches, runs under float16 autocast, and splits a batch that
does not fit the GPU's memory in halves (the smaller size is kept for the batches after it); everywhere
under ``torch.inference_mode()``. JPEGs are decoded by libjpeg at the smallest DCT scale that still
covers the transform's resize (``draft``), so a large photo is never decoded whole only to be shrunk.
With ``hflip`` every image is also embedded mirrored and the two vectors averaged (test-time
augmentation: the mirrored tensor is flipped on the device, so it costs a forward pass, not a decode).
With ``regions`` each image gets ``(1 + 4, D)`` vectors from the same forward pass: the ordinary
embedding, then its four corner windows (:mod:`curate.vision.views`).
On failure: an image that cannot be read raises :class:`ImageReadError`
naming the file (the caller decides whether that stops its stage); nothing is partially returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from curate.errors import CurateError
from curate.vision.backbones import Backbone
from curate.vision.views import MIRRORED, NUM_VIEWS, region_model

log = logging.getLogger(__name__)


class ImageReadError(CurateError):
    """An image file could not be opened or decoded."""


class ImageFiles(Dataset):
    """Image paths -> transformed tensors, in the order given."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[PIL.Image.Image], torch.Tensor]):
        self.paths = list(paths)
        self.transform = transform
        self.draft_px = _resize_px(transform)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        try:
            with PIL.Image.open(path) as image:
                if self.draft_px and image.format == "JPEG":
                    image.draft("RGB", (self.draft_px, self.draft_px))
                return self.transform(image.convert("RGB"))
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
            raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def embed_images(
    paths: Sequence[Path],
    backbone: Backbone,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
    hflip: bool = False,
    regions: bool = False,
) -> np.ndarray:
    """Features of every image as a float32 array of shape (len(paths), backbone.feature_dim), or with
    ``regions`` (len(paths), NUM_VIEWS, backbone.feature_dim), view 0 being the ordinary embedding.
    ``regions`` on a backbone without a spatial map raises
    :class:`~curate.vision.views.RegionViewsUnsupported`."""
    model = region_model(backbone.model, backbone.name) if regions else backbone.model
    if not paths:
        shape = (0, NUM_VIEWS, backbone.feature_dim) if regions else (0, backbone.feature_dim)
        return np.zeros(shape, dtype=np.float32)
    on_cuda = backbone.device.type == "cuda"
    loader = DataLoader(
        ImageFiles(paths, backbone.transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=on_cuda,
        persistent_workers=False,
        prefetch_factor=4 if num_workers else None,
    )
    batches = tqdm(loader, desc=f"embed {backbone.name}", unit="batch", disable=not progress)
    fits = _BatchFit(batch_size)
    features = [fits.embed(batch, model, backbone.device, hflip, regions) for batch in batches]
    log.info("embedded %d images with %s%s%s", len(paths), backbone.key, " (+ mirrored)" if hflip else "",
             " (+ 4 region views)" if regions else "")
    return np.concatenate(features, axis=0)


class _BatchFit:
    """Embeds a batch in pieces of at most ``size`` images, halving ``size`` when CUDA runs out of memory."""

    def __init__(self, size: int):
        self.size = size

    def embed(self, batch: torch.Tensor, model: torch.nn.Module, device: torch.device, hflip: bool,
              regions: bool) -> np.ndarray:
        while True:
            try:
                return np.concatenate([_embed_batch(part, model, device, hflip, regions)
                                       for part in batch.split(self.size)], axis=0)
            except torch.cuda.OutOfMemoryError:
                if self.size == 1:
                    raise
                torch.cuda.empty_cache()
                self.size = max(1, self.size // 2)
                log.warning("embedding: out of GPU memory; batch size lowered to %d", self.size)


@torch.inference_mode()
def _embed_batch(batch: torch.Tensor, model: torch.nn.Module, device: torch.device, hflip: bool = False,
                 regions: bool = False) -> np.ndarray:
    on_cuda = device.type == "cuda"
    batch = batch.to(device, non_blocking=on_cuda, memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.float16, enabled=on_cuda):
        output = _views(model(batch).float(), len(batch), regions)
        if hflip:
            mirrored = _views(model(batch.flip(-1)).float(), len(batch), regions)
            output = (output + (mirrored[:, list(MIRRORED)] if regions else mirrored)) / 2
    return output.cpu().numpy()


def _views(output: torch.Tensor, n: int, regions: bool) -> torch.Tensor:
    return output.reshape(n, NUM_VIEWS, -1) if regions else output


def _resize_px(transform: Callable) -> int | None:
    """The shorter side the transform resizes to (torchvision's presets and Resize), if it says."""
    size = getattr(transform, "resize_size", None)
    if size is None:
        steps = getattr(transform, "transforms", [])
        size = next((getattr(t, "size", None) for t in steps if type(t).__name__ == "Resize"), None)
    if isinstance(size, list | tuple):
        size = min(size) if size else None
    return int(size) if isinstance(size, int) else None
