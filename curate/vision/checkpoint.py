"""Training checkpoints, so that an interrupted benchmark resumes at the epoch it had finished.

Reads/writes: one file per training run (``benchmark/checkpoints/<name>.pt`` in a run directory),
holding the model, optimizer, LR scheduler and AMP grad-scaler states, the number of finished epochs,
the per-epoch history and a fingerprint of everything the training depends on (settings, data,
backbone). Written whole or not at all (a temporary sibling, then ``os.replace``), so a SIGKILL
leaves either the previous epoch's checkpoint or the new one. No RNG state is stored: every epoch
reseeds from (seed, epoch), so a resumed epoch draws the same order and augmentations as it would have
uninterrupted.
On failure: a checkpoint of another fingerprint is ignored (logged; training starts afresh and
overwrites it); an unreadable or truncated one is logged and ignored likewise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    fingerprint: str
    epoch: int  # finished epochs
    history: list[dict] = field(default_factory=list)
    states: dict[str, Any] = field(default_factory=dict)  # model, optimizer, scheduler, scaler state_dicts


def training_fingerprint(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"fingerprint": checkpoint.fingerprint, "epoch": checkpoint.epoch, "history": checkpoint.history,
                **checkpoint.states}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path | None, fingerprint: str) -> Checkpoint | None:
    """The checkpoint at ``path`` when it exists, is readable and has ``fingerprint``; else None."""
    if path is None or not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for damaged files
        log.warning("checkpoint %s is unreadable (%s); training starts from epoch 0", path, exc)
        return None
    if saved.get("fingerprint") != fingerprint:
        log.info("checkpoint %s belongs to other settings or data; training starts from epoch 0", path)
        return None
    meta = {key: saved.pop(key) for key in ("fingerprint", "epoch", "history")}
    return Checkpoint(meta["fingerprint"], int(meta["epoch"]), list(meta["history"]), saved)


def remove_checkpoint(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
