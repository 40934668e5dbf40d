"""Benchmark modes: how the ``benchmark`` stage trains a model on the export, one module each, chosen
in YAML as ``benchmark.modes`` (several may run in one pipeline).

A mode is a class with a ``name`` (its ``type``), a ``Config`` beside it and ``run(job) -> dict``
returning at least ``top1`` and ``top5`` (and, for the stage's charts, ``history``: one row per epoch);
the stage writes that dict to ``RUN_DIR/benchmark/<name>.json``. A :class:`Job` carries the data, the
benchmark's frozen backbone (a mode that trains the whole network builds its own copy from the same
name and weights), a checkpoint path for resuming, the seed and whether to show progress. Heavy
imports (torch) happen inside ``run``. The registry, :data:`MODES`, and :class:`Job` live in :mod:`.base`,
which the mode modules import; importing this package registers them all.
"""

from curate.modes import finetune, linear_probe, scratch  # noqa: F401  (register the modes)
from curate.modes.base import MODES, Job, create_mode, mode_config

__all__ = ["MODES", "Job", "create_mode", "mode_config"]
