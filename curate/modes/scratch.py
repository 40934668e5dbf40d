"""``scratch`` mode: a randomly initialised network trained on the export alone.

The architecture defaults to the benchmark's backbone (``model`` picks another torchvision model, e.g. a
smaller one); weights are random (seeded), every layer trains at ``lr`` under a cosine schedule
(:mod:`curate.vision.fit`). Needs many images per class and many epochs to get anywhere: it is the
baseline that shows what the pretrained modes bring. Checkpointed every epoch like ``finetune``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from curate.modes.base import MODES, Job
from curate.modes.training import ImageTrainingConfig, run_training
from curate.registry import Plugin


@MODES.register
class Scratch(Plugin):
    name = "scratch"
    description = "random initialisation, every layer trained on the export; cosine schedule"
    uses_backbone_weights = False  # an untrained backbone is no reason to doubt its numbers

    class Config(ImageTrainingConfig):
        type: Literal["scratch"] = "scratch"
        model: str | None = Field(None, description="torchvision model name; default: the benchmark's backbone")
        epochs: int = Field(30, ge=1)
        lr: float = Field(2e-3, gt=0)
        weight_decay: float = Field(0.05, ge=0)
        label_smoothing: float = Field(0.1, ge=0, lt=1)
        image_size_px: int = Field(128, ge=16)

    def run(self, job: Job) -> dict[str, Any]:
        return run_training(job, self.config, self.config.model or job.backbone.name, "none", warmup_epochs=0,
                            warmup_probe_epochs=0, backbone_lr_scale=1.0, freeze_batchnorm=False)
