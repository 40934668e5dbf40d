"""Benchmark training on an exported ImageNet-style dataset: the building blocks and the linear probe.

Reads: two ImageFolder roots (``train_dir``/``val_dir``, one folder per class named by wnid) or an
:class:`~curate.vision.data.ImageData`, and a frozen :class:`~curate.vision.backbones.Backbone`.
Writes nothing; returns a :class:`TrainResult`. The probe embeds every image once (or takes the
features from ``data.embed``, a cache), then trains a new linear head (features standardized with the
training set's statistics) with seeded minibatch AdamW, evaluating top-1 / top-k on the validation
split after every epoch. Validation class folders are mapped with the training split's ``class_to_idx``.
On failure: a missing or empty folder, or a validation class absent from training, raises
``ValueError`` with the reason; unreadable images raise :class:`~curate.vision.embed.ImageReadError`.

The shape follows torchvision's ``references/classification/train.py``: :func:`train_one_epoch` and
:func:`evaluate` take any model and any iterable of ``(inputs, targets)`` batches (features here, image
batches in :mod:`curate.vision.fit`); given a CUDA ``device`` they copy batches non-blocking in
channels_last and, with an enabled ``GradScaler``, run under float16 autocast.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from curate.vision.backbones import Backbone
from curate.vision.data import ImageData, Split, load_image_data, load_image_folders
from curate.vision.embed import embed_images

log = logging.getLogger(__name__)

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
__all__ = ["EpochStats", "LinearHead", "TrainResult", "evaluate", "linear_probe", "linear_probe_data",
           "load_image_folders", "train_linear_head", "train_one_epoch"]


@dataclass
class TrainResult:
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
    # one row per epoch: epoch (1-based), train_loss, train_top1, lr, seconds, and val top1/top5 where evaluated
    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int | None = None  # the checkpoint's epoch when training continued from one
    settings: dict = field(default_factory=dict)  # what the model was trained with (mode-specific)

    def to_dict(self) -> dict:
        return asdict(self)


ProbeResult = TrainResult  # the linear probe's result, under its earlier name


@dataclass
class EpochStats:
    loss: float  # mean training loss per sample
    top1: float  # training accuracy (on augmented inputs, for the weights as they were during the epoch)
    seconds: float
    lr: float | None = None  # the learning rate the epoch started with, where the caller records it


class LinearHead(nn.Module):
    """Standardization with fixed training-set statistics, then one Linear layer."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std.clamp_min(1e-6))
        self.linear = nn.Linear(mean.numel(), num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)

    @torch.no_grad()
    def fold_into(self, linear: nn.Linear) -> None:
        """Write this head into a plain Linear of the same shape, the standardization folded into its weights."""
        weight = self.linear.weight / self.std
        linear.weight.copy_(weight)
        linear.bias.copy_(self.linear.bias - weight @ self.mean)


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
) -> TrainResult:
    """Train a linear head on frozen backbone features and evaluate it on the validation split."""
    return linear_probe_data(load_image_data(train_dir, val_dir), backbone, epochs=epochs, lr=lr,
                             batch_size=batch_size, weight_decay=weight_decay, seed=seed, progress=progress)


def linear_probe_data(data: ImageData, backbone: Backbone, epochs: int = 30, lr: float = 1e-3,
                      batch_size: int = 64, weight_decay: float = 1e-4, seed: int = 0,
                      progress: bool = True) -> TrainResult:
    """:func:`linear_probe` on given splits; features from ``data.embed`` when it is set."""
    started_s = time.perf_counter()
    train_x, train_y = _features(data, data.train, backbone, batch_size, progress)
    val_x, val_y = _features(data, data.val, backbone, batch_size, progress)
    k = min(5, len(data.class_names))
    history: list[dict] = []

    def score(epoch: int, stats: EpochStats, head: LinearHead) -> None:
        top1, topk, _ = evaluate(head, _feature_batches(val_x, val_y, batch_size), k, data.class_names)
        history.append(epoch_row(epoch, stats, lr, top1, topk))
        log.debug("linear probe epoch %d: train loss %.4f, val top-1 %.4f", epoch, stats.loss, top1)

    head = train_linear_head(train_x, train_y, len(data.class_names), epochs=epochs, lr=lr, batch_size=batch_size,
                             weight_decay=weight_decay, seed=seed, on_epoch=score, progress=progress)
    top1, topk, per_class = evaluate(head, _feature_batches(val_x, val_y, batch_size), k, data.class_names)
    return TrainResult(top1, topk, k, len(data.train), len(data.val), len(data.class_names), epochs,
                       str(backbone.device), round(time.perf_counter() - started_s, 3), per_class, history,
                       settings={"lr": lr, "batch_size": batch_size, "weight_decay": weight_decay})


def train_linear_head(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, *, epochs: int, lr: float,
                      batch_size: int, weight_decay: float = 1e-4, seed: int = 0,
                      on_epoch: Callable[[int, EpochStats, LinearHead], None] | None = None,
                      progress: bool = False) -> LinearHead:
    """A :class:`LinearHead` trained with seeded minibatch AdamW on in-memory features."""
    head = _init_head(train_x, num_classes, seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    criterion = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(seed)
    for epoch in tqdm(range(1, epochs + 1), desc="linear head", unit="epoch", disable=not progress):
        stats = train_one_epoch(head, _feature_batches(train_x, train_y, batch_size, shuffle), criterion, optimizer)
        if on_epoch is not None:
            on_epoch(epoch, stats, head)
    return head


def train_one_epoch(model: nn.Module, batches: Batches, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    *, device: torch.device | None = None, scaler: torch.amp.GradScaler | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    progress: tqdm | None = None, freeze_batchnorm: bool = False) -> EpochStats:
    """One pass over ``batches`` (``scheduler`` stepped per batch); the mean loss and accuracy per sample.

    BatchNorm layers whose parameters are all frozen stay in eval mode (a frozen backbone keeps its running
    statistics while a new head is trained on it); with ``freeze_batchnorm`` every BatchNorm layer does."""
    started_s = time.perf_counter()
    train_mode(model, freeze_batchnorm)
    amp = scaler is not None and scaler.is_enabled()
    total_loss, correct, seen = 0.0, 0, 0
    for inputs, targets in batches:
        inputs, targets = to_device(inputs, targets, device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            output = model(inputs)
            loss = criterion(output, targets)
        optimizer.zero_grad(set_to_none=True)
        if amp:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * len(targets)
        correct += (output.argmax(dim=1) == targets).sum().item()
        seen += len(targets)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return EpochStats(total_loss / max(seen, 1), correct / max(seen, 1), time.perf_counter() - started_s)


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Batches, k: int, class_names: Sequence[str], *,
             device: torch.device | None = None, amp: bool = False) -> tuple[float, float, dict[str, float]]:
    """Top-1, top-k and per-class top-1 accuracy of ``model`` over ``batches``."""
    model.eval()
    topk_hits, targets = [], []
    for inputs, batch_targets in batches:
        inputs, batch_targets = to_device(inputs, batch_targets, device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            top = model(inputs).topk(k, dim=1).indices
        topk_hits.append(top == batch_targets[:, None])
        targets.append(batch_targets)
    hits, target = torch.cat(topk_hits).cpu(), torch.cat(targets).cpu()
    top1_hits = hits[:, 0].float()
    per_class = {class_names[c]: top1_hits[target == c].mean().item() for c in target.unique().tolist()}
    return top1_hits.mean().item(), hits.any(dim=1).float().mean().item(), per_class


def train_mode(model: nn.Module, freeze_batchnorm: bool = False) -> None:
    """``model.train()``, except BatchNorm layers that are frozen (all of them, or those without trainable
    parameters), which normalise with their running statistics and leave them unchanged."""
    model.train()
    for module in model.modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        params = list(module.parameters(recurse=False))
        if freeze_batchnorm or (params and not any(p.requires_grad for p in params)):
            module.eval()


def to_device(inputs: torch.Tensor, targets: torch.Tensor,
              device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    if device is None:
        return inputs, targets
    non_blocking = device.type == "cuda"
    if inputs.dim() == 4:  # image batches: channels_last suits cuDNN and oneDNN alike
        inputs = inputs.to(device, non_blocking=non_blocking, memory_format=torch.channels_last)
    else:
        inputs = inputs.to(device, non_blocking=non_blocking)
    return inputs, targets.to(device, non_blocking=non_blocking)


def epoch_row(epoch: int, stats: EpochStats, lr: float, val_top1: float | None = None,
              val_topk: float | None = None) -> dict:
    row = {"epoch": epoch, "train_loss": round(stats.loss, 5), "train_top1": round(stats.top1, 5),
           "lr": lr, "seconds": round(stats.seconds, 3)}
    if val_top1 is not None:
        row.update(val_top1=round(val_top1, 5), val_top5=round(val_topk, 5))
    return row


def _features(data: ImageData, split: Split, backbone: Backbone, batch_size: int,
              progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if data.embed is not None:
        features = data.embed(split)
    else:
        features = embed_images(split.paths, backbone, batch_size=batch_size, progress=progress)
    targets = np.asarray(split.targets, dtype=np.int64)
    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(backbone.device), \
        torch.from_numpy(targets).to(backbone.device)


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
