"""Benchmark modes: how the ``benchmark`` stage trains a model on the export, one module each, chosen
in YAML as ``benchmark.modes`` (several may run in one pipeline).

A mode is a class with a ``name`` (its ``type``), a ``Config`` beside it and ``run(job) -> dict``
returning at least ``top1`` and ``top5`` (and, for the stage's charts, ``history``: one row per epoch);
the stage writes that dict to ``RUN_DIR/benchmark/<name>.json``. A :class:`Job` carries the data, the
benchmark's frozen backbone (a mode that trains the whole network builds its own copy from the same
name and weights), a checkpoint path for resuming, the seed and whether to show progress. Heavy
imports (torch) happen inside ``run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.registry import Registry

MODES: Registry[Any] = Registry("benchmark mode")


@dataclass
class Job:
    data: Any  # curate.vision.data.ImageData: class names, train and val splits
    backbone: Any  # curate.vision.backbones.Backbone: the weights actually loaded (after any fallback)
    checkpoint: Path | None  # where a mode saves its progress per epoch and resumes from
    label: str  # names this training in logs: "finetune", "finetune (noisy labels)", "scratch @ 20/class"
    seed: int = 0
    progress: bool = True


def create_mode(config: Any) -> Any:
    return MODES.get(config.type)(config)


def mode_config(type_name: str, configured: list[Any]) -> Any:
    """The configured settings of mode ``type_name`` (the first entry of that type), else its defaults."""
    for config in configured:
        if config.type == type_name:
            return config
    return MODES.get(type_name).Config()


from curate.modes import finetune, linear_probe, scratch  # noqa: E402,F401  (register the modes)
