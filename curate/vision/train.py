"""Benchmark training on an exported ImageNet-style dataset: the linear probe.

Reads: two ImageFolder roots (``train_dir``/``val_dir``, one folder per class named by wnid) and a
frozen :class:`~curate.vision.backbones.Backbone`. Writes nothing; returns a :class:`ProbeResult`.
The probe embeds every image once, then trains a new linear head (features standardized with the
training set's statistics) with seeded minibatch Adam, and reports top-1 / top-k on the validation
split, whose class folders are mapped with the training split's ``class_to_idx``.
On failure: a missing or empty folder, or a validation class absent from training, raises
``ValueError`` with the reason; unreadable images raise :class:`~curate.vision.embed.ImageReadError`.

The shape follows torchvision's ``references/classification/train.py`` (``train_one_epoch``,
``evaluate``), which take any model and any iterable of ``(inputs, targets)`` batches so that
fine-tuning and from-scratch modes can reuse them over image batches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from tqdm.auto import tqdm

from curate.vision.backbones import Backbone
from curate.vision.embed import embed_images

log = logging.getLogger(__name__)

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ProbeResult:
    top1: float
    top5: float  # top-k accuracy with k = k_top5 = min(5, num_classes)
    k_top5: int
    n_train: int
    n_val: int
    num_classes: int
    epochs: int
    device: str
    seconds: float
    per_class_top1: dict[str, float]  # class name (wnid) -> top-1 on its validation images

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Split:
    paths: list[Path]
    targets: list[int]


class LinearHead(nn.Module):
    """Standardization with fixed training-set statistics, then one Linear layer."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std.clamp_min(1e-6))
        self.linear = nn.Linear(mean.numel(), num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)


def linear_probe(
    train_dir: Path,
    val_dir: Path,
    backbone: Backbone,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> ProbeResult:
    """Train a linear head on frozen backbone features and evaluate it on the validation split."""
    started_s = time.perf_counter()
    class_names, train, val = load_image_folders(Path(train_dir), Path(val_dir))
    train_x, train_y = _embed_split(train, backbone, batch_size, progress)
    val_x, val_y = _embed_split(val, backbone, batch_size, progress)
    head = _init_head(train_x, len(class_names), seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    criterion = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(seed)
    for epoch in tqdm(range(epochs), desc="linear probe", unit="epoch", disable=not progress):
        batches = _feature_batches(train_x, train_y, batch_size, shuffle)
        loss = train_one_epoch(head, batches, criterion, optimizer)
        log.debug("epoch %d: train loss %.4f", epoch, loss)
    k = min(5, len(class_names))
    top1, topk, per_class = evaluate(head, _feature_batches(val_x, val_y, batch_size), k, class_names)
    return ProbeResult(top1, topk, k, len(train.paths), len(val.paths), len(class_names), epochs,
                       str(backbone.device), round(time.perf_counter() - started_s, 3), per_class)


def train_one_epoch(model: nn.Module, batches: Batches, criterion: nn.Module,
                    optimizer: torch.optim.Optimizer) -> float:
    """One pass over ``batches``; returns the mean training loss per sample."""
    model.train()
    total_loss, seen = 0.0, 0
    for inputs, targets in batches:
        loss = criterion(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(targets)
        seen += len(targets)
    return total_loss / max(seen, 1)


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Batches, k: int,
             class_names: Sequence[str]) -> tuple[float, float, dict[str, float]]:
    """Top-1, top-k and per-class top-1 accuracy of ``model`` over ``batches``."""
    model.eval()
    topk_hits, targets = [], []
    for inputs, batch_targets in batches:
        top = model(inputs).topk(k, dim=1).indices
        topk_hits.append(top == batch_targets[:, None])
        targets.append(batch_targets)
    hits, target = torch.cat(topk_hits).cpu(), torch.cat(targets).cpu()
    top1_hits = hits[:, 0].float()
    per_class = {class_names[c]: top1_hits[target == c].mean().item() for c in target.unique().tolist()}
    return top1_hits.mean().item(), hits.any(dim=1).float().mean().item(), per_class


def load_image_folders(train_dir: Path, val_dir: Path) -> tuple[list[str], Split, Split]:
    """Class names from ``train_dir`` and both splits' images, val mapped with train's class_to_idx."""
    class_names, class_to_idx = _find_classes(train_dir)
    val_classes, _ = _find_classes(val_dir)
    unknown = sorted(set(val_classes) - set(class_to_idx))
    if unknown:
        raise ValueError(f"validation classes missing from {train_dir}: {', '.join(unknown[:10])}")
    val_to_idx = {name: class_to_idx[name] for name in val_classes}
    return class_names, _list_images(train_dir, class_to_idx), _list_images(val_dir, val_to_idx)


def _find_classes(root: Path) -> tuple[list[str], dict[str, int]]:
    try:
        return find_classes(str(root))
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ValueError(f"{root} is not an image folder with one sub-folder per class: {exc}") from exc


def _list_images(root: Path, class_to_idx: dict[str, int]) -> Split:
    try:
        samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:  # raised for class folders without any image
        raise ValueError(f"{root}: {exc}") from exc
    return Split([Path(path) for path, _ in samples], [target for _, target in samples])


def _embed_split(split: Split, backbone: Backbone, batch_size: int,
                 progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    features = embed_images(split.paths, backbone, batch_size=batch_size, progress=progress)
    targets = np.asarray(split.targets, dtype=np.int64)
    return torch.from_numpy(features).to(backbone.device), torch.from_numpy(targets).to(backbone.device)


def _init_head(train_x: torch.Tensor, num_classes: int, seed: int) -> LinearHead:
    with torch.random.fork_rng(devices=[]):  # seed the head's init without touching the caller's RNG
        torch.manual_seed(seed)
        std = train_x.std(dim=0) if len(train_x) > 1 else torch.ones_like(train_x[0])
        return LinearHead(train_x.mean(dim=0), std, num_classes).to(train_x.device)


def _feature_batches(features: torch.Tensor, targets: torch.Tensor, batch_size: int,
                     shuffle: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches of in-memory features, in a seeded random order when ``shuffle`` is given."""
    count = len(targets)
    order = torch.randperm(count, generator=shuffle) if shuffle is not None else torch.arange(count)
    for index in order.split(batch_size):
        index = index.to(features.device)
        yield features[index], targets[index]
