"""Helpers shared by stages that are not a stage's own business (no stage calls another)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
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


def cached_embeddings(ctx: Any, backbone: Backbone, shas: list[str], chunk: int = 256) -> np.ndarray:
    """Embeddings of the stored images ``shas`` (one row each, in order), computed where the catalog has
    none for this backbone and saved per chunk, so an interrupted run keeps what it computed and every
    stage that embeds with the same backbone shares them."""
    from curate.vision.embed import embed_images

    cached = ctx.catalog.embeddings(backbone.key, shas)
    missing = [s for s in dict.fromkeys(shas) if s not in cached]
    log.info("%d embeddings cached, %d to compute with %s on %s", len(cached), len(missing), backbone.key,
             backbone.device)
    for start in ctx.progress(range(0, len(missing), chunk), desc="embed", unit="chunk"):
        part = missing[start : start + chunk]
        vectors = embed_images([ctx.store.path(s) for s in part], backbone, batch_size=ctx.config.noise.batch_size,
                               num_workers=ctx.config.noise.num_workers, progress=ctx.progress_enabled)
        blobs = {s: v.astype(np.float32).tobytes() for s, v in zip(part, vectors, strict=True)}
        ctx.catalog.add_embeddings(backbone.key, backbone.feature_dim, blobs)
        cached.update(blobs)
    return np.stack([np.frombuffer(cached[s], dtype=np.float32) for s in shas])
