"""Benchmark modes: how the ``benchmark`` stage trains a model on the export, one module each, chosen
in YAML as ``benchmark.modes`` (several may run in one pipeline).

A mode is a class with a ``name`` (its ``type``), a ``Config`` beside it and
``run(train_dir, val_dir, backbone, ctx) -> dict`` returning at least ``top1`` and ``top5``; the stage
writes that dict to ``RUN_DIR/benchmark/<name>.json``. Heavy imports (torch) happen inside ``run``.
"""

from typing import Any

from curate.registry import Registry

MODES: Registry[Any] = Registry("benchmark mode")


def create_mode(config: Any) -> Any:
    return MODES.get(config.type)(config)


from curate.modes import linear_probe  # noqa: E402,F401  (registers 'linear_probe')
