"""``finetune`` mode: the whole pretrained network with a new head, the head warmed up first.

The benchmark's backbone (name and the weights actually loaded) gets a new linear head for the
export's classes, warmed up first: trained as a linear probe on the frozen network's features
(``warmup_probe_epochs``) and, optionally, for ``warmup_epochs`` over augmented images with the backbone
frozen; then the whole network trains, the backbone at ``lr * backbone_lr_scale``, under a cosine
schedule (:mod:`curate.vision.fit`). With random weights (``weights: none``, e.g. the demo's fallback) it
trains from scratch: no probe warm-up, BatchNorm trains (``batchnorm: auto``).
Checkpointed every epoch: an interrupted benchmark resumes at its last
finished epoch.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field, model_validator

from curate.modes.base import MODES, Job
from curate.modes.training import ImageTrainingConfig, run_training, warmup_below_epochs
from curate.registry import Plugin

log = logging.getLogger(__name__)


@MODES.register
class Finetune(Plugin):
    name = "finetune"
    description = "whole pretrained network, new head warmed up first, lower backbone lr, cosine schedule"

    class Config(ImageTrainingConfig):
        type: Literal["finetune"] = "finetune"
        epochs: int = Field(5, ge=1)
        warmup_probe_epochs: int = Field(30, ge=0, description="first train the new head as a linear probe on "
                                         "the frozen network's features of the training images (0: random head)")
        warmup_epochs: int = Field(0, ge=0, description="epochs over augmented images that train only the head")
        backbone_lr_scale: float = Field(0.1, gt=0, le=1, description="backbone lr = lr * backbone_lr_scale")
        # frozen: BatchNorm normalises with the pretrained running statistics (its scale and shift still
        # train). Batch statistics of small batches are noisy, and a state_dict with BatchNorm folded into
        # the convolutions (running mean 0, variance 1: ../shared/models' dequantized MobileNetV2) is
        # wrecked by them: one training pass took its 128 px Imagenette top-1 from 0.68 to chance.
        # auto: frozen with pretrained weights, train with `weights: none` (random statistics are no use:
        # frozen, a random resnet50's activations blew up to a training loss of 23,645 in the demo).
        batchnorm: Literal["auto", "frozen", "train"] = "auto"

        _warmup = model_validator(mode="after")(warmup_below_epochs)

    def run(self, job: Job) -> dict[str, Any]:
        cfg, pretrained = self.config, job.backbone.weights != "none"
        if not pretrained:  # the weights_fallback path: nothing to preserve, nothing to probe
            log.warning("finetune: the backbone has random weights (weights: none): this trains from scratch; "
                        "no linear-probe warm-up of the head")
        return run_training(job, cfg, job.backbone.name, job.backbone.weights, warmup_epochs=cfg.warmup_epochs,
                            warmup_probe_epochs=cfg.warmup_probe_epochs if pretrained else 0,
                            backbone_lr_scale=cfg.backbone_lr_scale,
                            freeze_batchnorm=cfg.batchnorm == "frozen" or (cfg.batchnorm == "auto" and pretrained))
