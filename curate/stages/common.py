"""Helpers shared by stages that are not a stage's own business (no stage calls another)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from curate.vision.backbones import Backbone, WeightsUnavailable, load_backbone

if TYPE_CHECKING:
    import pandas as pd

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


def embedding_key(backbone: Backbone, hflip: bool, regions: bool = False) -> str:
    """The catalog's key for one way of embedding: backbone, weights (``backbone.key``), augmentation and
    region views."""
    return f"{backbone.key}{'+hflip' if hflip else ''}{'+regions' if regions else ''}"


def cached_embeddings(ctx: Any, backbone: Backbone, shas: list[str], chunk: int = 256,
                      all_views: bool = False) -> np.ndarray:
    """Embeddings of the stored images ``shas`` (one row each, in order), computed where the catalog has
    none for this backbone, weights, ``noise.test_time_flip`` and ``noise.region_views``, and saved per
    chunk, so an interrupted run keeps what it computed, a rerun embeds only new images, and every stage
    that embeds with the same settings shares them. (N, D), the ordinary embedding; with ``all_views``
    and region views on, (N, 5, D) (:mod:`curate.vision.views`)."""
    from curate.vision.embed import embed_images
    from curate.vision.views import NUM_VIEWS, supports_region_views

    hflip = ctx.config.noise.test_time_flip
    regions = ctx.config.noise.region_views and supports_region_views(backbone)
    key = embedding_key(backbone, hflip, regions)
    cached = ctx.catalog.embeddings(key, shas)
    missing = [s for s in dict.fromkeys(shas) if s not in cached]
    log.info("%d embeddings cached, %d to compute with %s on %s", len(cached), len(missing), key,
             backbone.device)
    for start in ctx.progress(range(0, len(missing), chunk), desc="embed", unit="chunk"):
        part = missing[start : start + chunk]
        vectors = embed_images([ctx.store.path(s) for s in part], backbone, batch_size=ctx.config.noise.batch_size,
                               num_workers=ctx.config.noise.num_workers, progress=ctx.progress_enabled,
                               hflip=hflip, regions=regions)
        blobs = {s: v.astype(np.float32).tobytes() for s, v in zip(part, vectors, strict=True)}
        ctx.catalog.add_embeddings(key, backbone.feature_dim * (NUM_VIEWS if regions else 1), blobs)
        cached.update(blobs)
    features = np.stack([np.frombuffer(cached[s], dtype=np.float32) for s in shas]) if shas else \
        np.zeros((0, backbone.feature_dim * (NUM_VIEWS if regions else 1)), dtype=np.float32)
    if not regions:
        return features
    views = features.reshape(len(shas), NUM_VIEWS, backbone.feature_dim)
    return views if all_views else views[:, 0]


def provenance(ctx: Any) -> pd.DataFrame:
    """The first candidate (by id) that brought each (image, class): source, URL, licence, creator.
    URLs are shown as their source shows them (local corpora: relative to the corpus root)."""
    import pandas as pd

    from curate.sources import create_sources

    display = {s.instance: s.display_url for s in create_sources(ctx.config.candidates.sources)}
    rows = [dict(r) for r in ctx.catalog.provenance()]
    for row in rows:
        row["url"] = display.get(row["source"], _basename_if_file)(row["url"])
    columns = ["sha256", "wnid", "source", "url", "page_url", "title", "license", "creator"]
    return pd.DataFrame(rows, columns=columns)


def _basename_if_file(url: str) -> str:
    """A ``file://`` URL of a source no longer configured: its file name only, never the curator's path."""
    return url.rsplit("/", 1)[-1] if url.startswith("file://") else url
