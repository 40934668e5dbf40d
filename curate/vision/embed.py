"""Batched image embedding with a frozen :class:`~curate.vision.backbones.Backbone`.

Reads: image files (any format Pillow decodes; converted to RGB) and the backbone. Writes nothing;
returns a float32 array with one row per path, in the order given. On CUDA it pins host memory,
copies non-blocking, feeds channels_last batches and runs under float16 autocast; everywhere under
``torch.inference_mode()``. On failure: an image that cannot be read raises :class:`ImageReadError`
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

log = logging.getLogger(__name__)


class ImageReadError(CurateError):
    """An image file could not be opened or decoded."""


class ImageFiles(Dataset):
    """Image paths -> transformed tensors, in the order given."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[PIL.Image.Image], torch.Tensor]):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        try:
            with PIL.Image.open(path) as image:
                return self.transform(image.convert("RGB"))
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
            raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def embed_images(
    paths: Sequence[Path],
    backbone: Backbone,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Features of every image as a float32 array of shape (len(paths), backbone.feature_dim)."""
    if not paths:
        return np.zeros((0, backbone.feature_dim), dtype=np.float32)
    on_cuda = backbone.device.type == "cuda"
    loader = DataLoader(
        ImageFiles(paths, backbone.transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=on_cuda,
    )
    batches = tqdm(loader, desc=f"embed {backbone.name}", unit="batch", disable=not progress)
    features = [_embed_batch(batch, backbone, on_cuda) for batch in batches]
    log.info("embedded %d images with %s", len(paths), backbone.key)
    return np.concatenate(features, axis=0)


@torch.inference_mode()
def _embed_batch(batch: torch.Tensor, backbone: Backbone, on_cuda: bool) -> np.ndarray:
    batch = batch.to(backbone.device, non_blocking=on_cuda, memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.float16, enabled=on_cuda):
        output = backbone.model(batch)
    return output.float().cpu().numpy()
