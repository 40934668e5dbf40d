"""The benchmark modes' registry and contract: :data:`MODES`, which every mode module registers itself in (the
package's ``__init__`` imports them all), the :class:`Job` a mode is handed, :func:`create_mode` and
:func:`mode_config`.

Reads and writes nothing. Failure: an unknown ``type`` raises ``KeyError`` naming the known modes
(the pipeline model refuses it earlier, as a ConfigError).
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
