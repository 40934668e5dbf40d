"""What the modes that train a whole network on images share: their settings and the call into
:func:`curate.vision.fit.fit`.

Reads: a :class:`~curate.modes.Job`. Writes: the job's checkpoint while training (see
:mod:`curate.vision.fit`). On failure: errors of the model or the data propagate; the checkpoint of the
last finished epoch stays, so running the benchmark again resumes there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import Field

from curate.sections import Section


class ImageTrainingConfig(Section):
    """Settings of a training on images; the defaults of each mode are set in its own Config."""

    epochs: int = Field(5, ge=1)
    lr: float = Field(1e-3, gt=0, description="learning rate (the new head's, when the backbone's is scaled)")
    weight_decay: float = Field(0.01, ge=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    batch_size: int = Field(32, ge=1)
    image_size_px: int = Field(224, ge=16, description="training crop size")
    eval_image_size_px: int | None = Field(None, ge=16, description="evaluation crop (after a resize to it/0.875); "
                                           "default: image_size_px")
    augment: Literal["flip_crop", "trivial_augment", "randaugment"] = "flip_crop"
    min_crop_area: float = Field(0.08, gt=0, le=1, description="smallest random crop, fraction of the image area")
    random_erase_prob: float = Field(0.0, ge=0, le=1)
    amp: bool = Field(True, description="float16 autocast and a grad scaler on CUDA (ignored on CPU)")
    num_workers: int | None = Field(None, ge=0, description="image-decoding worker processes; default: none on "
                                    "CPU (decoding shares the cores with training), min(8, CPUs) on CUDA")
    val_every: int = Field(1, ge=0, description="evaluate on val every N epochs (0: the last epoch only)")
    keep_checkpoint: bool = Field(False, description="keep benchmark/checkpoints/<mode>.pt (the trained model)")
    # On a CPU shared with other busy processes, torch's OpenMP threads wait for each other at every op:
    # the demo's fine-tuning took 9 s with 2 threads on an idle 2-core machine but 120-140 s while another
    # process kept one core busy, and 15 s with 1 thread either way.
    cpu_threads: int | None = Field(None, ge=1, description="torch CPU threads while training; default: torch's")


def run_training(job: Any, cfg: ImageTrainingConfig, model_name: str, weights: str, *, warmup_epochs: int,
                 warmup_probe_epochs: int, backbone_lr_scale: float, freeze_batchnorm: bool) -> dict[str, Any]:
    """Build ``model_name`` with ``weights`` and a new head for the job's classes, train it, score it."""
    import torch

    from curate.vision.backbones import build_classifier
    from curate.vision.fit import FitSettings, fit

    settings = FitSettings(
        epochs=cfg.epochs, warmup_probe_epochs=warmup_probe_epochs, warmup_epochs=warmup_epochs, lr=cfg.lr,
        backbone_lr_scale=backbone_lr_scale, freeze_batchnorm=freeze_batchnorm,
        weight_decay=cfg.weight_decay, optimizer=cfg.optimizer, label_smoothing=cfg.label_smoothing,
        batch_size=cfg.batch_size, image_size_px=cfg.image_size_px, augment=cfg.augment,
        min_crop_area=cfg.min_crop_area, eval_image_size_px=cfg.eval_image_size_px,
        random_erase_prob=cfg.random_erase_prob, amp=cfg.amp,
        num_workers=default_workers(job.backbone.device) if cfg.num_workers is None else cfg.num_workers,
        val_every=cfg.val_every, seed=job.seed,
    )
    device = job.backbone.device
    with torch.random.fork_rng(devices=[]):  # the new head's initialisation is seeded
        torch.manual_seed(job.seed)
        model = build_classifier(model_name, weights, len(job.data.class_names), device)
    same = (model_name, weights) == (job.backbone.name, job.backbone.weights)
    model_key = job.backbone.key if same else f"{model_name}:{weights}"
    with cpu_threads(cfg.cpu_threads if device.type == "cpu" else None):
        result = fit(model, job.data, settings, device, model_key=model_key, checkpoint=job.checkpoint,
                     progress=job.progress, label=job.label)
    return result.to_dict()


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``count`` inside the block (None: unchanged), restored after."""
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_workers(device: Any) -> int:
    import os

    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def warmup_below_epochs(config: Any) -> Any:
    if config.warmup_epochs >= config.epochs:
        raise ValueError(f"warmup_epochs ({config.warmup_epochs}) must be less than epochs ({config.epochs}): "
                         "the backbone would never be trained")
    return config

