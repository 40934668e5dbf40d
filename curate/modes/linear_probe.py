"""``linear_probe`` mode: a new linear head on frozen backbone features (:func:`curate.vision.train.linear_probe`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from curate.config import Section
from curate.modes import MODES
from curate.registry import Plugin


@MODES.register
class LinearProbe(Plugin):
    name = "linear_probe"
    description = "frozen backbone, new linear head; top-1 / top-5 on val"

    class Config(Section):
        type: Literal["linear_probe"] = "linear_probe"
        epochs: int = Field(30, ge=1)
        lr: float = Field(1e-3, gt=0)
        batch_size: int = Field(64, ge=1)


    def run(self, train_dir: Path, val_dir: Path, backbone: Any, ctx: Any) -> dict[str, Any]:
        from curate.vision.train import linear_probe

        cfg = self.config
        result = linear_probe(train_dir, val_dir, backbone, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                              seed=ctx.seed, progress=ctx.progress_enabled)
        return result.to_dict()
