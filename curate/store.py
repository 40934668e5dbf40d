"""Content-addressed image store: ``<run_dir>/images/ab/abcdef….jpg``, keyed by the sha256 of the
bytes as fetched.

Reads: raw image bytes. Writes: one normalized JPEG per distinct sha256 (EXIF orientation applied,
RGB, longest side capped), atomically (temporary file + ``os.replace``), so a kill mid-write leaves
no half file and a second write of the same image is a no-op. On undecodable or too-small input
:func:`normalize` raises :class:`InvalidImage`; callers record it as the item's error.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

# Refuse decompression bombs outright (a 25 MB file can claim gigapixels): past this, decoding fails.
MAX_PIXELS = 90_000_000


class InvalidImage(ValueError):
    """The bytes are not an image we keep; the message says why."""


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    path: str  # relative to the store root's parent (the run directory)
    width: int
    height: int
    nbytes: int
    mime: str

    def as_row(self) -> dict:
        return self.__dict__.copy()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def normalize(data: bytes, max_side_px: int, min_side_px: int) -> Image.Image:
    """Decode fully, apply EXIF orientation, flatten to RGB, cap the longest side."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _decode(data)
        rgb = _to_rgb(ImageOps.exif_transpose(img))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"cannot decode image: {exc}") from None
    if min(rgb.size) < min_side_px:
        raise InvalidImage(f"image too small: {rgb.size[0]}x{rgb.size[1]} px (min side {min_side_px} px)")
    if max(rgb.size) > max_side_px:
        rgb.thumbnail((max_side_px, max_side_px), Image.Resampling.LANCZOS)
    return rgb


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    if img.width * img.height > MAX_PIXELS:
        raise InvalidImage(f"image too large: {img.width}x{img.height} px")
    img.load()
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Transparent pixels become white (drawings and logos), everything else plain RGB."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


class ImageStore:
    def __init__(self, root: Path, jpeg_quality: int = 90):
        self.root = Path(root)
        self.jpeg_quality = jpeg_quality
        self.root.mkdir(parents=True, exist_ok=True)

    def relpath(self, sha256: str) -> str:
        return f"{self.root.name}/{sha256[:2]}/{sha256}.jpg"

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def put(self, data: bytes, max_side_px: int = 512, min_side_px: int = 32) -> StoredImage:
        """Store ``data`` once; return its record. Raises InvalidImage."""
        sha = sha256_bytes(data)
        target = self.path(sha)
        if target.exists():
            with Image.open(target) as img:
                width, height = img.size
        else:
            img = normalize(data, max_side_px, min_side_px)
            width, height = img.size
            self._write_atomic(target, img)
        return StoredImage(sha, self.relpath(sha), width, height, len(data), "image/jpeg")

    def _write_atomic(self, target: Path, img: Image.Image) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                img.save(fh, format="JPEG", quality=self.jpeg_quality, optimize=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
