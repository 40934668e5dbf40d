"""Content-addressed image store: ``<run_dir>/images/ab/abcdef….jpg``, keyed by the sha256 of the
bytes as fetched.

Reads: raw image bytes, decoded only as JPEG, PNG, GIF, WebP, BMP or TIFF (Pillow's other plugins, EPS
through Ghostscript among them, are never reached); the store's existing files, which are re-decoded
before being trusted. Writes: one normalized JPEG per distinct sha256 (EXIF orientation applied, high-bit-depth
greyscale rescaled to 8 bits a strip of rows at a time, RGB, longest side capped), atomically
(temporary ``*.tmp`` file + ``os.replace``), so a kill mid-write leaves no half file, with the mode any
new file gets (0666 less the umask: exports hard-link these files); a second write of the same image is a
no-op unless the stored file no longer decodes, then it is rewritten. A download that already is what
normalizing would store (an RGB JPEG within the longest side, needing no rotation) is kept as it came,
less its metadata (EXIF with GPS positions, XMP, IPTC, comments, other application segments, an ICC
profile over 1 MiB) and whatever follows its end-of-image marker (a Motion Photo's video): no second lossy
encoding, no encoding cost, and it is decoded only in grey at the scale the quality checks use. Files are
not fsynced one by one (that cost more than decoding them): a kill never leaves a half file, a power cut
may, and such a file is found and rewritten by the next ``put`` of the same bytes. Opening the store
deletes the ``<root>/<2 hex>/*.tmp`` files such a kill left behind (one process per run directory: the
runner holds the run's lock). Failure: on undecodable, unsupported, too-large or too-small input (the min
side is checked after resizing) :func:`normalize` raises :class:`InvalidImage`; callers record it as the
item's error.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps

# Refuse decompression bombs outright (a 25 MB file can claim gigapixels): past this, decoding fails.
EXIF_ORIENTATION = 0x0112
MAX_PIXELS = 90_000_000

# The only Pillow decoders untrusted bytes reach. JPEG covers MPO (multi-picture JPEG from cameras).
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
_ACCEPTED_NAMES = "JPEG, PNG, GIF, WebP, BMP, TIFF"

_SHARD_DIR = re.compile(r"[0-9a-f]{2}")
_TMP_SUFFIX = ".tmp"


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
    phash: str | None = None  # 64-bit perceptual hash (hex) when quality checks ran

    def as_row(self) -> dict:
        return self.__dict__.copy()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inspect(img: Image.Image, original_size: tuple[int, int], quality: Any) -> str:
    """Quality checks of :mod:`curate.quality`; the perceptual hash, or InvalidImage naming the problem."""
    from curate.quality import measure, problems

    props = measure(img)
    found = problems(props, quality, original_size=original_size)
    if found:
        raise InvalidImage("; ".join(found))
    return props.phash


def normalize(data: bytes, max_side_px: int, min_side_px: int, with_original_size: bool = False) -> Any:
    """Decode fully, apply EXIF orientation, flatten to 8-bit RGB, cap the longest side.

    The minimum side is checked on the result, so an extreme panorama that shrinks to a sliver is refused.
    """
    rgb, original_size, _ = _normalize(data, max_side_px, min_side_px)
    return (rgb, original_size) if with_original_size else rgb


def _normalize(data: bytes, max_side_px: int, min_side_px: int) -> tuple[Image.Image, tuple[int, int], bool]:
    """:func:`normalize`, and whether the downloaded bytes already are what it would store: an RGB JPEG
    within ``max_side_px`` that needs no rotation (then the store keeps them, less their metadata)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img, original_size = _decode(data, max_side_px)
        reusable = _is_final_jpeg(img, max_side_px) and img.size == original_size
        ImageOps.exif_transpose(img, in_place=True)  # no copy: the decoded image is ours alone
        rgb = _to_rgb(img)
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"cannot decode image: {exc}") from None
    resized = max(rgb.size) > max_side_px
    if resized:
        rgb.thumbnail((max_side_px, max_side_px), Image.Resampling.LANCZOS)
    _check_min_side(rgb.size, min_side_px, max_side_px if resized else None)
    return rgb, original_size, reusable and not resized


def _is_final_jpeg(img: Image.Image, max_side_px: int) -> bool:
    """An RGB JPEG within ``max_side_px`` that needs no rotation: what normalizing would store (header only)."""
    return (img.format == "JPEG" and img.mode == "RGB" and max(img.size) <= max_side_px
            and img.getexif().get(EXIF_ORIENTATION, 1) == 1)


def _check_min_side(size: tuple[int, int], min_side_px: int, resized_to: int | None) -> None:
    if min(size) < min_side_px:
        after = f" after resizing to fit {resized_to} px" if resized_to else ""
        raise InvalidImage(f"image too small: {size[0]}x{size[1]} px{after} (min side {min_side_px} px)")


def _kept_as_downloaded(data: bytes, max_side_px: int,
                        min_side_px: int) -> tuple[Image.Image, tuple[int, int], bytes] | None:
    """For a download that already is what normalizing would store: its luminance, decoded by libjpeg at
    the largest DCT scale that still covers the quality checks' analysis size (the whole file is decoded:
    a truncated or damaged one fails here as in a full decode), its size, and its bytes less their metadata.
    None for any other download, which takes the full path (:func:`_normalize`)."""
    from curate.quality import ANALYSIS_SIDE_PX

    try:
        img = _open_restricted(io.BytesIO(data), ("JPEG",))
        if not _is_final_jpeg(img, max_side_px) or (stripped := strip_jpeg_metadata(data)) is None:
            return None
        width, height = img.size
        _check_min_side(img.size, min_side_px, None)
        scale = min(1.0, ANALYSIS_SIDE_PX / max(width, height))
        img.draft("L", (math.ceil(width * scale), math.ceil(height * scale)))
        img.load()
    except InvalidImage as exc:
        if str(exc).startswith("image too small"):
            raise
        return None  # not a JPEG, or a header Pillow refuses: the full path says why
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"cannot decode image: {exc}") from None
    return img, (width, height), stripped


# What a stored original keeps of a JPEG: the codec's segments (frame, tables, scans) up to the first
# end-of-image marker, JFIF (APP0), Adobe's colour transform (APP14) and an ICC colour profile (APP2) of at
# most MAX_ICC_PROFILE_BYTES. Dropped: every other application segment (APP1: EXIF with GPS positions and
# XMP; APP13: IPTC; APP2's multi-picture index; vendors' notes) and comments, and all bytes after the end of
# the image (a Motion Photo's video, a second picture). A profile is dropped whole, never cut: a real display
# profile is a few kB (sRGB 3 kB, Display P3 0.5 kB), one of megabytes is a payload, and the image then reads
# as sRGB, as every re-encoded image does (the store's JPEG encoder writes no profile).
MAX_ICC_PROFILE_BYTES = 1 << 20
_APP0, _APP2, _APP14, _COM, _EOI, _SOS = 0xE0, 0xE2, 0xEE, 0xFE, 0xD9, 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_ICC_HEADER = b"ICC_PROFILE\x00"
# In entropy-coded data 0xFF is followed by 0x00 (a stuffed byte), a restart marker or another 0xFF (fill);
# anything else is the marker that ends the scan.
_SCAN_END = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


def strip_jpeg_metadata(data: bytes) -> bytes | None:
    """The JPEG's image alone, without metadata or trailing bytes (same pixels); None when its segments do
    not parse up to an end-of-image marker."""
    segments = _jpeg_segments(data)
    if segments is None:
        return None
    icc_bytes = sum(len(body) for marker, body in segments if _is_icc(marker, body))
    keep_icc = icc_bytes <= MAX_ICC_PROFILE_BYTES
    return b"".join(body for marker, body in segments if _kept_segment(marker, body, keep_icc))


def _jpeg_segments(data: bytes) -> list[tuple[int, bytes]] | None:
    """(marker, bytes) of each segment from the start-of-image to the first end-of-image marker; a scan's
    bytes include its entropy-coded data. Application segments are skipped by their length, so a thumbnail
    inside one (with its own end-of-image marker) does not end the image. None where the walk fails."""
    if data[:2] != b"\xff\xd8":
        return None
    segments, i = [(0xD8, data[:2])], 2
    while i + 2 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before a marker
            i += 1
            continue
        if marker == _EOI:
            segments.append((marker, data[i : i + 2]))
            return segments
        end = i + 2 if marker in _STANDALONE else i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if end > len(data) or (marker not in _STANDALONE and end < i + 4):
            return None
        if marker == _SOS:
            found = _SCAN_END.search(data, end)
            end = found.start() if found else len(data)
        segments.append((marker, data[i:end]))
        i = end
    return None


def _is_icc(marker: int, body: bytes) -> bool:
    return marker == _APP2 and body[4 : 4 + len(_ICC_HEADER)] == _ICC_HEADER


def _kept_segment(marker: int, body: bytes, keep_icc: bool) -> bool:
    if marker == _COM or 0xE0 <= marker <= 0xEF:
        return marker in (_APP0, _APP14) or (keep_icc and _is_icc(marker, body))
    return True


def _decode(data: bytes, max_side_px: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image (possibly decoded at a reduced scale, see below) and its size as downloaded."""
    img = _open_restricted(io.BytesIO(data), ACCEPTED_FORMATS)
    original_size = img.size
    if img.width * img.height > MAX_PIXELS:
        raise InvalidImage(f"image too large: {img.width}x{img.height} px")
    if max_side_px and img.format == "JPEG" and max(img.size) >= 2 * max_side_px:
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (never below the size asked for): a 12-megapixel
        # photo decodes ~4-8x faster, and the resize after it has less to do.
        scale = max_side_px / max(img.size)
        img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
    img.load()
    return img, original_size


def _open_restricted(fp: IO[bytes], formats: tuple[str, ...]) -> Image.Image:
    """``Image.open`` limited to ``formats``; bytes of another format Pillow knows raise InvalidImage naming it."""
    try:
        return Image.open(fp, formats=list(formats))
    except Image.UnidentifiedImageError:
        fp.seek(0)
        claimed = _formats_claiming(fp.read(16))
    ours = [name for name in claimed if name in formats]
    if ours:
        raise InvalidImage(f"cannot decode image: damaged {ours[0]} header")
    if claimed:
        raise InvalidImage(f"unsupported image format {claimed[0]} (accepted: {_ACCEPTED_NAMES})")
    raise InvalidImage(f"cannot decode image: unknown or unsupported image format (accepted: {_ACCEPTED_NAMES})")


def _formats_claiming(prefix: bytes) -> list[str]:
    """The Pillow formats whose signature check accepts ``prefix``; no decoder runs.

    Formats without a signature check (TGA, for one) are never named.
    """
    Image.init()
    claimed = []
    for name, (_factory, accept) in Image.OPEN.items():
        try:
            if accept is not None and accept(prefix):
                claimed.append(name)
        except Exception:  # a plugin's signature check choking on odd bytes claims nothing
            continue
    return claimed


def _to_rgb(img: Image.Image) -> Image.Image:
    """Transparent pixels become white (drawings and logos), high-bit-depth greyscale becomes 8-bit,
    everything else plain RGB."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")  # convert() would copy an RGBA image
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I", "F") or img.mode.startswith("I;"):
        return _greyscale_to_8bit(img).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")  # a decoded JPEG is RGB already: no copy


# Rows of a high-bit-depth image converted at a time: about a million pixels, 8 MB as float64. A whole-image
# float64 conversion took ~33 bytes per pixel (1.2 GB for a 6000x6000 16-bit PNG of 200 kB); in strips the
# cost is the decoded image and its 8-bit result.
_STRIP_PIXELS = 1 << 20


def _greyscale_to_8bit(img: Image.Image) -> Image.Image:
    """Rescale a 16/32-bit integer or 32-bit float greyscale image to mode ``L``, a strip of rows at a time.

    Pillow's own ``convert`` clips these to 255, so every 16-bit photograph would come out white.
    Integers (``I;16*`` and ``I``) are taken as 16-bit samples when they fit 0..65535 and divided by
    257 (65535 -> 255); otherwise, and for floats outside 0..1, the range is stretched min..max to
    0..255 (a constant image becomes black). Floats within 0..1 are taken as normalised and scaled by
    255. Non-finite floats count as 0.
    """
    low, high = _value_range(img)
    if img.mode == "F" and 0.0 <= low and high <= 1.0:
        offset, factor = 0.0, 255.0
    elif img.mode != "F" and 0.0 <= low and high <= 65535.0:
        offset, factor = 0.0, 1 / 257
    else:
        offset, factor = low, (255.0 / (high - low) if high > low else 0.0)
    out = Image.new("L", img.size)
    for top, values in _strips(img):
        scaled = np.clip(np.rint((values - offset) * factor), 0, 255).astype(np.uint8)
        out.paste(Image.fromarray(scaled), (0, top))
    return out


def _value_range(img: Image.Image) -> tuple[float, float]:
    """The lowest and highest value of a greyscale image (non-finite ones as 0); (0, 0) when it is empty."""
    low, high = math.inf, -math.inf
    for _, values in _strips(img):
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    return (low, high) if low <= high else (0.0, 0.0)


def _strips(img: Image.Image) -> Iterator[tuple[int, np.ndarray]]:
    """(top row, the rows as float64 with non-finite values as 0) for consecutive strips of ``img``."""
    rows = max(1, _STRIP_PIXELS // max(1, img.width))
    for top in range(0, img.height if img.width else 0, rows):
        values = np.asarray(img.crop((0, top, img.width, min(img.height, top + rows))), dtype=np.float64)
        values[~np.isfinite(values)] = 0.0
        yield top, values


def _stored_size(path: Path) -> tuple[int, int] | None:
    """Size of the stored JPEG at ``path`` if it decodes to a non-empty image, else ``None``."""
    try:
        with path.open("rb") as fh, Image.open(fh, formats=["JPEG"]) as img:
            img.load()
            width, height = img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return (width, height) if width > 0 and height > 0 else None


class ImageStore:
    def __init__(self, root: Path, jpeg_quality: int = 90, remove_temporaries: bool = True):
        """``remove_temporaries``: the run's owner cleans up after a kill; decoder processes that write
        into the same store beside it must not (they would delete each other's files in flight)."""
        self.root = Path(root)
        self.jpeg_quality = jpeg_quality
        self.root.mkdir(parents=True, exist_ok=True)
        self._shards: set[str] = set()
        if remove_temporaries:
            self._remove_stale_temporaries()

    def relpath(self, sha256: str) -> str:
        return f"{self.root.name}/{sha256[:2]}/{sha256}.jpg"

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def put(self, data: bytes, max_side_px: int = 512, min_side_px: int = 32, quality: Any = None) -> StoredImage:
        """Store ``data`` once; return its record. A stored file that no longer decodes is rewritten.

        ``quality`` (a :class:`curate.quality.QualityConfig`): the normalized image is measured, refused
        when a check fails (nothing is written) and its perceptual hash returned. Raises InvalidImage.
        """
        sha = sha256_bytes(data)
        target = self.path(sha)
        size = _stored_size(target) if target.exists() else None
        phash = None
        if size is None:
            kept = _kept_as_downloaded(data, max_side_px, min_side_px)
            if kept is not None:  # decoded in grey only: the checks need no colour, and nothing is re-encoded
                grey, size, stripped = kept
                phash = _inspect(grey, size, quality) if quality is not None else None
                self._write_atomic(target, stripped)
            else:
                img, original_size, _ = _normalize(data, max_side_px, min_side_px)
                phash = _inspect(img, original_size, quality) if quality is not None else None
                size = img.size
                self._write_atomic(target, img)
        width, height = size
        return StoredImage(sha, self.relpath(sha), width, height, len(data), "image/jpeg", phash)

    def _remove_stale_temporaries(self) -> None:
        """Delete the ``<root>/<2 hex>/*.tmp`` files a kill mid-write left behind; nothing else."""
        for shard in self.root.iterdir():
            if not (_SHARD_DIR.fullmatch(shard.name) and shard.is_dir()):
                continue
            for tmp in shard.glob(f"*{_TMP_SUFFIX}"):
                if tmp.is_file():
                    tmp.unlink(missing_ok=True)

    def _write_atomic(self, target: Path, img: Image.Image | bytes) -> None:
        """Write ``img`` (encoded as JPEG, or JPEG bytes as they are) to ``target`` whole or not at all."""
        if target.parent.name not in self._shards:  # 256 shard folders: create each once, not per image
            target.parent.mkdir(parents=True, exist_ok=True)
            self._shards.add(target.parent.name)
        fd, tmp = _create_temporary(target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:  # no optimize pass and no fsync per file: both cost more than the
                if isinstance(img, bytes):  # decode; a kill still leaves no half file
                    fh.write(img)
                else:
                    img.save(fh, format="JPEG", quality=self.jpeg_quality)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _create_temporary(folder: Path) -> tuple[int, Path]:
    """A new ``<random>.tmp`` file in ``folder``, open for writing, with the mode any new file gets (0666 less
    the umask, applied by the system: nothing reads or changes the process-wide umask). ``mkstemp`` would
    make it 0600: the store, and every export hard-linked to it, readable by its owner alone."""
    while True:
        tmp = folder / f"{secrets.token_hex(8)}{_TMP_SUFFIX}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
