"""Training a whole classifier on images: the loop behind the ``finetune`` and ``scratch`` benchmark modes.

Reads: an :class:`~curate.vision.data.ImageData` (image files and class indices) and a classifier whose
last ``nn.Linear`` is its head (:func:`~curate.vision.backbones.build_classifier`). Writes: a checkpoint
after every epoch when ``checkpoint`` is given (:mod:`curate.vision.checkpoint`); the last one holds the
trained model only, a rerun that finds it just evaluates, and removing it is the caller's business.
Returns a :class:`~curate.vision.train.TrainResult` with per-epoch history.

The recipe: the new head is first trained as a linear probe on the frozen network's features of the
training images (``warmup_probe_epochs``; linear probing, then fine-tuning, "LP-FT", Kumar et al. 2022);
optimizer parameter groups with the head at ``lr`` and the rest (the backbone) at
``lr * backbone_lr_scale``; for ``warmup_epochs`` (over augmented images) the backbone is frozen (its
BatchNorm statistics too) and only the head learns; then everything trains with a per-step cosine decay
to zero (with ``freeze_batchnorm`` BatchNorm keeps normalising with its pretrained running statistics); train
transforms from :mod:`curate.vision.presets` (random resized crop and flip, stronger policies on
request); on CUDA float16 autocast with a grad scaler and channels_last batches. Every epoch reseeds
from (seed, epoch), so a run resumed from a checkpoint continues exactly as an uninterrupted one would.
On failure: errors of the data (:class:`~curate.vision.embed.ImageReadError`) propagate; the checkpoint
of the last finished epoch stays for the next attempt.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from curate.vision.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from curate.vision.checkpoint import training_fingerprint as _fingerprint
from curate.vision.data import ImageData, image_loader
from curate.vision.presets import ClassificationPresetEval, ClassificationPresetTrain
from curate.vision.train import (
    EpochStats,
    TrainResult,
    epoch_row,
    evaluate,
    to_device,
    train_linear_head,
    train_one_epoch,
)

log = logging.getLogger(__name__)

PROBE_BATCH_SIZE = 64  # the head's warm-up probe, as the linear_probe mode's default
OPTIMIZERS = {
    "adamw": lambda groups, s: torch.optim.AdamW(groups, weight_decay=s.weight_decay),
    "sgd": lambda groups, s: torch.optim.SGD(groups, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=True),
}


@dataclass(frozen=True)
class FitSettings:
    epochs: int = 5
    warmup_probe_epochs: int = 30  # before epoch 1: the head trained as a linear probe on frozen features
    warmup_epochs: int = 0  # epochs over augmented images that train only the head, backbone frozen
    lr: float = 1e-3  # the head's learning rate
    backbone_lr_scale: float = 0.1  # backbone lr = lr * backbone_lr_scale
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # a key of OPTIMIZERS
    momentum: float = 0.9  # sgd only
    label_smoothing: float = 0.0
    freeze_batchnorm: bool = False  # BatchNorm normalises with its pretrained running statistics
    batch_size: int = 32
    image_size_px: int = 224  # the training crop (and the head's warm-up features)
    eval_image_size_px: int | None = None  # the evaluation crop (after a resize to it / 0.875); None: image_size_px
    augment: str = "flip_crop"  # flip_crop | trivial_augment | randaugment
    min_crop_area: float = 0.08  # the smallest random crop, as a fraction of the image's area
    random_erase_prob: float = 0.0
    amp: bool = True  # float16 autocast, CUDA only
    num_workers: int = 0
    val_every: int = 1  # evaluate every N epochs (the last epoch always)
    seed: int = 0


@dataclass
class Trainer:
    """The model and what trains it: optimizer, per-step scheduler, grad scaler, and the head's params."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    backbone_params: list[nn.Parameter]

    def states(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load(self, states: dict) -> None:
        """Every state present (a finished training's checkpoint holds the model only)."""
        for name, target in (("model", self.model), ("optimizer", self.optimizer), ("scheduler", self.scheduler),
                             ("scaler", self.scaler)):
            if name in states:
                target.load_state_dict(states[name])

    def freeze_backbone(self, frozen: bool) -> None:
        for param in self.backbone_params:
            param.requires_grad_(not frozen)


def fit(model: nn.Module, data: ImageData, settings: FitSettings, device: torch.device, *, model_key: str,
        checkpoint: Path | None = None, progress: bool = True, label: str = "fit") -> TrainResult:
    """Train ``model`` (already on ``device``) on ``data.train``; top-1/top-k on ``data.val``.
    ``model_key`` names its initialisation (backbone and weights) in the checkpoint's fingerprint."""
    started_s = time.perf_counter()
    train_tf = ClassificationPresetTrain(settings.image_size_px, settings.augment, min_crop_area=settings.min_crop_area,
                                         random_erase_prob=settings.random_erase_prob)
    steps_per_epoch = len(image_loader(data.train, train_tf, settings.batch_size, shuffle_seed=0))
    trainer = make_trainer(model, settings, device, steps_per_epoch)
    fingerprint = _fingerprint({"settings": asdict(settings), "model": model_key, "data": data_identity(data)})
    resumed = resume_or_warm_up(trainer, data, settings, device, checkpoint, fingerprint, label)
    history, start = ([], 0) if resumed is None else (resumed.history, resumed.epoch)
    evaluate_val = validation(data, settings, device, trainer.scaler.is_enabled())
    scores = None
    for epoch in range(start, settings.epochs):
        stats = train_epoch(trainer, data, settings, device, epoch, train_tf, progress, label)
        last = epoch + 1 == settings.epochs
        scores = evaluate_val(trainer.model) if last or (settings.val_every and (epoch + 1) % settings.val_every == 0) \
            else None
        history.append(epoch_row(epoch + 1, stats, stats.lr, *(scores[:2] if scores else ())))
        _log_epoch(label, history[-1], settings.epochs)
        if checkpoint is not None:  # the last one holds the trained model only, the optimizer is done
            states = {"model": trainer.model.state_dict()} if last else trainer.states()
            save_checkpoint(checkpoint, Checkpoint(fingerprint, epoch + 1, history, states))
    top1, topk, per_class = scores or evaluate_val(trainer.model)  # none: a finished checkpoint, only evaluated
    return TrainResult(top1, topk, min(5, len(data.class_names)), len(data.train), len(data.val),
                       len(data.class_names), settings.epochs, str(device), round(time.perf_counter() - started_s, 3),
                       per_class, history, resumed_from_epoch=start if resumed is not None else None,
                       settings={**asdict(settings), "model": model_key})


def resume_or_warm_up(trainer: Trainer, data: ImageData, settings: FitSettings, device: torch.device,
                      checkpoint: Path | None, fingerprint: str, label: str) -> Checkpoint | None:
    """The checkpoint's states loaded into ``trainer`` when there is one for this training, else the head's
    warm-up probe (when configured); returns the checkpoint."""
    resumed = load_checkpoint(checkpoint, fingerprint)
    if resumed is not None:
        trainer.load(resumed.states)
        log.info("%s: resuming from the checkpoint of epoch %d/%d (%s)", label, resumed.epoch, settings.epochs,
                 checkpoint)
    elif settings.warmup_probe_epochs:
        warm_up_head(trainer.model, data, settings, device, label)
    return resumed


def train_epoch(trainer: Trainer, data: ImageData, settings: FitSettings, device: torch.device, epoch: int,
                train_tf, progress: bool, label: str) -> EpochStats:
    """Epoch ``epoch`` (0-based), seeded from (seed, epoch) alone: the same whether resumed or not."""
    torch.manual_seed(epoch_seed(settings.seed, epoch))
    loader = image_loader(data.train, train_tf, settings.batch_size, shuffle_seed=epoch_seed(settings.seed, epoch),
                          num_workers=settings.num_workers, pin_memory=device.type == "cuda")
    trainer.freeze_backbone(epoch < settings.warmup_epochs)
    lr = trainer.optimizer.param_groups[0]["lr"]  # the head's, at the start of the epoch
    with tqdm(total=len(loader), desc=f"{label} {epoch + 1}/{settings.epochs}", unit="batch", leave=False,
              disable=not progress) as bar:
        stats = train_one_epoch(trainer.model, loader, criterion(settings), trainer.optimizer, device=device,
                                scaler=trainer.scaler, scheduler=trainer.scheduler, progress=bar,
                                freeze_batchnorm=settings.freeze_batchnorm)
    stats.lr = lr
    return stats


def validation(data: ImageData, settings: FitSettings, device: torch.device, amp: bool):
    """A function scoring a model on ``data.val``: top-1, top-k and per-class top-1."""
    loader = image_loader(data.val, ClassificationPresetEval(settings.eval_image_size_px or settings.image_size_px),
                          settings.batch_size, num_workers=settings.num_workers, pin_memory=device.type == "cuda")
    k = min(5, len(data.class_names))
    return lambda model: evaluate(model, loader, k, data.class_names, device=device, amp=amp)


def warm_up_head(model: nn.Module, data: ImageData, settings: FitSettings, device: torch.device, label: str) -> None:
    """Initialise the new head as a linear probe: features of the training images (evaluation transform)
    through the frozen network, a standardized linear head trained on them, folded into the model's head.
    A head that starts random would first push large, noisy gradients into the pretrained layers."""
    started_s = time.perf_counter()
    head = last_linear(model)
    loader = image_loader(data.train, ClassificationPresetEval(settings.image_size_px), settings.batch_size,
                          num_workers=settings.num_workers, pin_memory=device.type == "cuda")
    features = head_inputs(model, head, loader, device, amp=settings.amp and device.type == "cuda")
    targets = torch.as_tensor(data.train.targets, device=features.device)
    probe = train_linear_head(features, targets, len(data.class_names), epochs=settings.warmup_probe_epochs,
                              lr=settings.lr, batch_size=PROBE_BATCH_SIZE, seed=settings.seed)
    probe.fold_into(head)
    log.info("%s: head initialised by a %d-epoch linear probe on %d frozen features (%.1f s)", label,
             settings.warmup_probe_epochs, len(features), time.perf_counter() - started_s)


@torch.no_grad()
def head_inputs(model: nn.Module, head: nn.Module, loader, device: torch.device, amp: bool) -> torch.Tensor:
    """What ``head`` receives for each image of ``loader``, the model in eval mode (no grad, not inference
    mode: the features then train a probe)."""
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _module, inputs, _output: captured.append(inputs[0].float()))
    try:
        model.eval()
        for inputs, targets in loader:
            inputs, _ = to_device(inputs, targets, device)
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                model(inputs)
    finally:
        hook.remove()
    return torch.cat(captured)


def make_trainer(model: nn.Module, settings: FitSettings, device: torch.device, steps_per_epoch: int) -> Trainer:
    head_params = list(last_linear(model).parameters())
    head_ids = {id(p) for p in head_params}
    backbone_params = [p for p in model.parameters() if id(p) not in head_ids]
    groups = [{"params": head_params, "lr": settings.lr, "name": "head"}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": settings.lr * settings.backbone_lr_scale, "name": "backbone"})
    optimizer = OPTIMIZERS[settings.optimizer](groups, settings)
    warmup_steps = settings.warmup_epochs * steps_per_epoch
    total_steps = settings.epochs * steps_per_epoch
    factors = [lr_factor(total_steps, warmup_steps, frozen=False), lr_factor(total_steps, warmup_steps, frozen=True)]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factors[: len(groups)])
    scaler = torch.amp.GradScaler("cuda", enabled=settings.amp and device.type == "cuda")
    return Trainer(model, optimizer, scheduler, scaler, backbone_params)


def lr_factor(total_steps: int, warmup_steps: int, frozen: bool):
    """The LR multiplier at a step: during the head's warm-up 1 (the head) or 0 (the frozen backbone),
    then a cosine decay from 1 to 0 over the remaining steps."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return 0.0 if frozen else 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def last_linear(model: nn.Module) -> nn.Linear:
    """The classification head: the last ``nn.Linear`` in module order (fc, classifier.1, heads.head...)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no Linear classification head")
    return linears[-1]


def criterion(settings: FitSettings) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def data_identity(data: ImageData) -> str:
    """What the training data is: the class list and each image (its key where known, else its path)
    with its target, for both splits."""
    def split_id(split) -> list:
        names = split.keys if split.keys is not None else [str(p) for p in split.paths]
        return list(zip(names, split.targets, strict=True))
    return _fingerprint({"classes": data.class_names, "train": split_id(data.train), "val": split_id(data.val)})


def _log_epoch(label: str, row: dict, epochs: int) -> None:
    val = f", val top-1 {row['val_top1']:.3f} top-5 {row['val_top5']:.3f}" if "val_top1" in row else ""
    log.info("%s epoch %d/%d: train loss %.4f acc %.3f%s, lr %.2e (%.1f s)", label, row["epoch"], epochs,
             row["train_loss"], row["train_top1"], val, row["lr"], row["seconds"])
