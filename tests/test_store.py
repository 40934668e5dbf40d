from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from curate.store import ImageStore, InvalidImage, normalize, sha256_bytes


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_put_is_content_addressed_and_idempotent(tmp_path: Path):
    store = ImageStore(tmp_path / "images")
    data = encode(Image.new("RGB", (100, 60), "red"))
    first, second = store.put(data), store.put(data)
    assert first == second and first.sha256 == sha256_bytes(data)
    assert first.path == f"images/{first.sha256[:2]}/{first.sha256}.jpg"
    assert len(list((tmp_path / "images").rglob("*.jpg"))) == 1
    assert not list((tmp_path / "images").rglob("*.tmp"))


def test_longest_side_is_capped_and_aspect_kept(tmp_path: Path):
    stored = ImageStore(tmp_path / "images").put(encode(Image.new("RGB", (800, 400), "blue")), max_side_px=200)
    assert (stored.width, stored.height) == (200, 100)


def test_transparency_is_flattened_on_white():
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    out = normalize(encode(img), max_side_px=512, min_side_px=8)
    assert out.mode == "RGB" and out.getpixel((10, 10)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (80, 40), "green")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = normalize(encode(img, "JPEG", exif=exif.tobytes()), max_side_px=512, min_side_px=8)
    assert out.size == (40, 80)


@pytest.mark.parametrize("data, message", [
    (b"not an image at all", "cannot decode"),
    (encode(Image.effect_noise((100, 100), 60))[:2000], "cannot decode"),  # truncated
    (encode(Image.new("RGB", (10, 10))), "too small"),
])
def test_invalid_images_are_refused(data: bytes, message: str):
    with pytest.raises(InvalidImage, match=message):
        normalize(data, max_side_px=512, min_side_px=32)
