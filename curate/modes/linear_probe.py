"""``linear_probe`` mode: a new linear head on frozen backbone features (:func:`curate.vision.train.linear_probe`).

Features come from the job's data (``data.embed``: the catalog's cached embeddings in a pipeline run)
or are computed with the backbone; no checkpoint (the whole probe takes seconds once embedded).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from curate.modes.base import MODES, Job
from curate.registry import Plugin
from curate.sections import Section


@MODES.register
class LinearProbe(Plugin):
    name = "linear_probe"
    description = "frozen backbone, new linear head; top-1 / top-5 on val"

    class Config(Section):
        type: Literal["linear_probe"] = "linear_probe"
        epochs: int = Field(30, ge=1)
        lr: float = Field(1e-3, gt=0)
        batch_size: int = Field(64, ge=1)


    def run(self, job: Job) -> dict[str, Any]:
        from curate.vision.train import linear_probe_data

        cfg = self.config
        result = linear_probe_data(job.data, job.backbone, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                                   seed=job.seed, progress=job.progress)
        return result.to_dict()
