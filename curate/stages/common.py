"""Helpers shared by stages that are not a stage's own business (no stage calls another)."""

from __future__ import annotations

import logging

import torch

from curate.vision.backbones import Backbone, WeightsUnavailable, load_backbone

log = logging.getLogger(__name__)


def load_backbone_with_fallback(name: str, weights: str, fallback: str | None, device: str, seed: int) -> Backbone:
    """Load ``name`` with ``weights``; when ImageNet weights cannot be had and a fallback is configured,
    warn loudly and use the fallback. Seeded, so ``weights: none`` gives the same network every run."""
    torch.manual_seed(seed)
    try:
        return load_backbone(name, weights, device)
    except WeightsUnavailable as exc:
        if fallback is None:
            raise
        log.warning(
            "%s\n*** FALLING BACK to weights: %s. Results from an untrained backbone are unreliable; set the "
            "weights to a local state_dict file (or place the checkpoint in the torch hub cache) to avoid this.",
            exc, fallback,
        )
        torch.manual_seed(seed)
        return load_backbone(name, fallback, device)
