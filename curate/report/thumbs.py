"""Thumbnails of the images the report's cards show: ``thumbs/<sha256>.jpg``.

Reads: each image through ``image_path(sha256)``. Writes small JPEGs (EXIF-rotated, RGB, longest side
``thumb_px``). On failure: an image that cannot be read, or an id that is not a safe file name, gets no
thumbnail (a logged warning; the page shows a placeholder).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image, ImageOps
from tqdm.auto import tqdm

log = logging.getLogger(__name__)
THUMBS_DIR = "thumbs"
SAFE_NAME = re.compile(r"[0-9A-Za-z_-]{1,128}")  # sha256 hex; never a path of its own


def write_thumbs(folder: Path, shas: Iterable[str], image_path: Callable[[str], Path], thumb_px: int) -> set[str]:
    """Write one thumbnail per distinct id; returns the ids written."""
    folder.mkdir(exist_ok=True)
    unique = list(dict.fromkeys(shas))
    written: set[str] = set()
    for sha256 in tqdm(unique, desc="thumbnails", unit="img", disable=len(unique) < 100):
        if not SAFE_NAME.fullmatch(sha256):
            log.warning("no thumbnail for %r: not a sha256", sha256)
        elif _write_one(folder / f"{sha256}.jpg", sha256, image_path, thumb_px):
            written.add(sha256)
    return written


def _write_one(target: Path, sha256: str, image_path: Callable[[str], Path], thumb_px: int) -> bool:
    try:
        with Image.open(image_path(sha256)) as image:
            thumb = ImageOps.exif_transpose(image).convert("RGB")
            thumb.thumbnail((thumb_px, thumb_px))
            thumb.save(target, quality=85)
        return True
    except (OSError, ValueError, KeyError) as exc:
        log.warning("no thumbnail for %s: %s", sha256, exc)
        return False
