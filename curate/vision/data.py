"""Training data for the benchmark: labelled image lists, ImageFolder roots, per-class subsets, loaders.

Reads: ImageFolder roots (``train/<wnid>/*``, ``val/<wnid>/*``) or lists of image paths with class
indices, and the image files themselves when a loader is iterated. Writes nothing.
A :class:`Split` is one labelled list (``keys`` optionally names each image, e.g. by sha256, so that
cached embeddings can be reused); :class:`ImageData` is a train and a val split over one class list.
On failure: a missing or empty folder, or a validation class absent from training, raises
``ValueError`` with the reason; an image that cannot be decoded raises
:class:`~curate.vision.embed.ImageReadError` naming the file when its batch is loaded.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from curate.vision.embed import ImageReadError


@dataclass
class Split:
    paths: list[Path]
    targets: list[int]
    keys: list[str] | None = None  # one stable id per image (sha256) where known: cached embeddings use it

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int]) -> Split:
        keys = [self.keys[i] for i in indices] if self.keys is not None else None
        return Split([self.paths[i] for i in indices], [self.targets[i] for i in indices], keys)


@dataclass
class ImageData:
    """A train and a val split whose targets index ``class_names``; ``embed`` (optional) returns the
    frozen backbone's features of a split, e.g. from a cache, instead of computing them again."""

    class_names: list[str]
    train: Split
    val: Split
    embed: Callable[[Split], np.ndarray] | None = field(default=None, repr=False)

    def with_train(self, train: Split) -> ImageData:
        return ImageData(self.class_names, train, self.val, self.embed)


class LabelledImages(Dataset):
    """(transformed image, class index) pairs of a :class:`Split`."""

    def __init__(self, split: Split, transform: Callable[[PIL.Image.Image], torch.Tensor]):
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.split.paths[index]
        try:
            with PIL.Image.open(path) as image:
                return self.transform(image.convert("RGB")), self.split.targets[index]
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
            raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def image_loader(split: Split, transform: Callable, batch_size: int, *, shuffle_seed: int | None = None,
                 num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Batches of ``split``; shuffled in a seeded order when ``shuffle_seed`` is given (training), which
    also seeds the workers' augmentation. A last batch of one image is dropped in training: BatchNorm
    cannot normalise a single sample."""
    shuffle = shuffle_seed is not None
    generator = torch.Generator().manual_seed(shuffle_seed) if shuffle else None
    return DataLoader(LabelledImages(split, transform), batch_size=batch_size, shuffle=shuffle,
                      generator=generator, num_workers=num_workers, pin_memory=pin_memory,
                      drop_last=shuffle and len(split) % batch_size == 1 and len(split) > 1,
                      persistent_workers=False)


def per_class_subset(split: Split, samples_per_class: int, seed: int) -> Split:
    """At most ``samples_per_class`` images of each class, chosen at random with ``seed`` (the same
    images for every mode, and a smaller subset is contained in a larger one)."""
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(split.targets):
        by_class.setdefault(target, []).append(index)
    chosen = []
    for target, indices in sorted(by_class.items()):
        random.Random(f"{seed}:subset:{target}").shuffle(indices)
        chosen += indices[:samples_per_class]
    return split.subset(sorted(chosen))


def load_image_folders(train_dir: Path, val_dir: Path) -> tuple[list[str], Split, Split]:
    """Class names from ``train_dir`` and both splits' images, val mapped with train's class_to_idx."""
    class_names, class_to_idx = _find_classes(train_dir)
    val_classes, _ = _find_classes(val_dir)
    unknown = sorted(set(val_classes) - set(class_to_idx))
    if unknown:
        raise ValueError(f"validation classes missing from {train_dir}: {', '.join(unknown[:10])}")
    val_to_idx = {name: class_to_idx[name] for name in val_classes}
    return class_names, list_images(train_dir, class_to_idx), list_images(val_dir, val_to_idx)


def load_image_data(train_dir: Path, val_dir: Path) -> ImageData:
    class_names, train, val = load_image_folders(Path(train_dir), Path(val_dir))
    return ImageData(class_names, train, val)


def _find_classes(root: Path) -> tuple[list[str], dict[str, int]]:
    try:
        return find_classes(str(root))
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ValueError(f"{root} is not an image folder with one sub-folder per class: {exc}") from exc


def list_images(root: Path, class_to_idx: dict[str, int]) -> Split:
    try:
        samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:  # raised for class folders without any image
        raise ValueError(f"{root}: {exc}") from exc
    return Split([Path(path) for path, _ in samples], [target for _, target in samples])
