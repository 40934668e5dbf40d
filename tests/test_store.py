from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curate.store import ImageStore, InvalidImage, normalize, sha256_bytes, strip_jpeg_metadata


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


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\nshowpage\n%%EOF\n"


def test_eps_is_refused_before_any_decoder_runs(monkeypatch: pytest.MonkeyPatch):
    from PIL import EpsImagePlugin

    def ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript reached")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    with pytest.raises(InvalidImage, match="unsupported image format EPS"):
        normalize(EPS, max_side_px=512, min_side_px=8)


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA"])
def test_formats_outside_the_allowlist_are_refused(fmt: str):
    data = encode(Image.new("RGB", (64, 64), "red"), fmt)
    message = f"unsupported image format {fmt}" if fmt != "TGA" else "unsupported image format"  # TGA has no magic
    with pytest.raises(InvalidImage, match=message):
        normalize(data, max_side_px=512, min_side_px=8)


@pytest.mark.parametrize("fmt, kwargs", [
    ("JPEG", {}), ("PNG", {}), ("GIF", {}), ("WEBP", {}), ("BMP", {}), ("TIFF", {}),
    ("JPEG", {"save_all": True, "append_images": [Image.new("RGB", (64, 64), "blue")]}),  # MPO, as cameras write
])
def test_allowed_formats_are_decoded(fmt: str, kwargs: dict):
    data = encode(Image.new("RGB", (64, 64), "red"), "MPO" if kwargs else fmt, **kwargs)
    assert normalize(data, max_side_px=512, min_side_px=8).size == (64, 64)


def test_damaged_header_of_an_allowed_format_is_undecodable_not_unsupported():
    with pytest.raises(InvalidImage, match="cannot decode image: damaged PNG"):
        normalize(b"\x89PNG\r\n\x1a\n this is not a png", max_side_px=512, min_side_px=8)


GRADIENT_16 = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (40, 1))


@pytest.mark.parametrize("fmt, array", [
    ("PNG", GRADIENT_16),
    ("TIFF", GRADIENT_16),  # little-endian, mode I;16
    ("TIFF", GRADIENT_16.astype(">u2")),  # mode I;16B
    ("TIFF", GRADIENT_16.astype(np.int32)),  # mode I
    ("TIFF", GRADIENT_16.astype(np.float32) / 65535),  # mode F, normalised
    ("TIFF", GRADIENT_16.astype(np.float32) * 4 - 1000),  # mode F, arbitrary range: stretched
])
def test_high_bit_depth_greyscale_keeps_its_tones(fmt: str, array: np.ndarray):
    out = normalize(encode(Image.fromarray(array), fmt), max_side_px=512, min_side_px=8)
    row = np.asarray(out.convert("L"))[20].astype(int)
    assert out.mode == "RGB" and out.size == (256, 40)
    assert row[0] < 20 and row[-1] > 235
    assert (np.diff(row) >= 0).all() and len(set(row)) > 200  # a smooth ramp, not a few bands


def test_sixteen_bit_scaling_is_exact():
    out = normalize(encode(Image.fromarray(GRADIENT_16), "PNG"), max_side_px=512, min_side_px=8)
    row = np.asarray(out.convert("L"))[20].astype(int)
    assert abs(row - np.rint(GRADIENT_16[20] / 257)).max() <= 1


def test_min_side_is_checked_after_resizing(tmp_path: Path):
    data = encode(Image.new("RGB", (20000, 40), "red"))
    with pytest.raises(InvalidImage, match=r"too small: 512x1 px after resizing"):
        normalize(data, max_side_px=512, min_side_px=32)
    with pytest.raises(InvalidImage, match="too small"):
        ImageStore(tmp_path / "images").put(data, max_side_px=512, min_side_px=32)
    assert not list((tmp_path / "images").rglob("*.jpg"))


def test_truncated_stored_file_is_rewritten(tmp_path: Path):
    store = ImageStore(tmp_path / "images")
    data = encode(Image.effect_noise((300, 200), 60).convert("RGB"))
    stored = store.put(data)
    path = store.path(stored.sha256)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again = store.put(data)
    assert again == stored
    with Image.open(path) as img:
        img.load()
        assert img.size == (300, 200)


@pytest.mark.parametrize("damage", [b"", b"garbage, not a jpeg"])
def test_empty_or_foreign_stored_file_is_rewritten(tmp_path: Path, damage: bytes):
    store = ImageStore(tmp_path / "images")
    data = encode(Image.new("RGB", (100, 60), "red"))
    stored = store.put(data)
    store.path(stored.sha256).write_bytes(damage)
    assert store.put(data) == stored
    with Image.open(store.path(stored.sha256)) as img:
        assert img.format == "JPEG" and img.size == (100, 60)


def test_opening_the_store_removes_its_leftover_temporaries(tmp_path: Path):
    root = tmp_path / "images"
    ImageStore(root).put(encode(Image.new("RGB", (100, 60), "red")))
    shard = next(p for p in root.iterdir() if p.is_dir())
    fd, leftover = tempfile.mkstemp(dir=shard, suffix=".tmp")  # as _write_atomic does, killed before os.replace
    os.close(fd)
    (root / "ff").mkdir(exist_ok=True)
    other_leftover = root / "ff" / "tmpabc.tmp"
    other_leftover.write_bytes(b"half a jpeg")
    unrelated = [root / "notes.tmp", root / "cache" / "x.tmp", shard / "keep.txt"]
    for path in unrelated:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not the store's")
    ImageStore(root)
    assert not Path(leftover).exists() and not other_leftover.exists()
    assert all(path.exists() for path in unrelated)
    assert len(list(root.rglob("*.jpg"))) == 1


def jpeg_with_metadata() -> bytes:
    img = Image.effect_noise((240, 160), 50).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)  # a GPS latitude
    return encode(img, "JPEG", quality=88, exif=exif.tobytes(), comment=b"secret note")


def test_a_small_rgb_jpeg_is_kept_as_downloaded_without_its_metadata(tmp_path: Path):
    data = jpeg_with_metadata()
    stored = ImageStore(tmp_path / "images").put(data, max_side_px=512)
    kept = (tmp_path / stored.path).read_bytes()
    assert stored.sha256 == sha256_bytes(data) and (stored.width, stored.height) == (240, 160)
    assert b"Exif" not in kept and b"secret note" not in kept and b"CameraMaker" not in kept
    with Image.open(io.BytesIO(data)) as original, Image.open(io.BytesIO(kept)) as again:
        assert original.tobytes() == again.tobytes()  # the same pixels: no second encoding


def test_a_jpeg_that_needs_work_is_normalized(tmp_path: Path):
    store = ImageStore(tmp_path / "images")
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = store.put(encode(Image.new("RGB", (80, 40), "green"), "JPEG", exif=exif.tobytes()), min_side_px=8)
    big = store.put(encode(Image.effect_noise((900, 600), 40).convert("RGB"), "JPEG"), max_side_px=300)
    grey = store.put(encode(Image.effect_noise((100, 100), 40), "JPEG"))
    assert (rotated.width, rotated.height) == (40, 80) and (big.width, big.height) == (300, 200)
    with Image.open(tmp_path / grey.path) as img:
        assert img.mode == "RGB"


@pytest.mark.parametrize("data", [b"", b"not a jpeg", b"\xff\xd8\xff\xe1\x00"])
def test_strip_metadata_refuses_what_it_cannot_parse(data: bytes):
    assert strip_jpeg_metadata(data) is None


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def with_segments(jpeg: bytes, *segments: bytes) -> bytes:
    """``jpeg`` with ``segments`` inserted right after its start-of-image marker."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def kept_bytes(tmp_path: Path, data: bytes) -> bytes:
    stored = ImageStore(tmp_path / "images").put(data, max_side_px=512)
    return (tmp_path / stored.path).read_bytes()


# A Motion Photo: the video (here a stand-in with a location in it) follows the picture's end-of-image marker.
MOTION_VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x20moov GPS +48.8584+002.2945/" * 50


@pytest.mark.parametrize("progressive", [False, True])
def test_bytes_after_the_end_of_the_image_are_not_kept(tmp_path: Path, progressive: bool):
    picture = encode(Image.effect_noise((240, 160), 50).convert("RGB"), "JPEG", quality=88, progressive=progressive)
    kept = kept_bytes(tmp_path, picture + MOTION_VIDEO)
    assert kept == picture and kept.endswith(b"\xff\xd9") and b"GPS" not in kept


def test_a_thumbnail_inside_the_metadata_does_not_end_the_image(tmp_path: Path):
    thumbnail = encode(Image.new("RGB", (16, 16), "blue"), "JPEG")  # its own start and end-of-image markers
    picture = encode(Image.effect_noise((240, 160), 50).convert("RGB"), "JPEG", quality=88)
    data = with_segments(picture, segment(0xE1, b"Exif\x00\x00" + thumbnail)) + MOTION_VIDEO
    kept = kept_bytes(tmp_path, data)
    assert kept == picture
    with Image.open(io.BytesIO(kept)) as again, Image.open(io.BytesIO(picture)) as original:
        assert again.tobytes() == original.tobytes()


def test_an_oversized_colour_profile_is_dropped_a_normal_one_kept(tmp_path: Path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    huge = b"ICC!" + bytes(range(256)) * (2 * 1024 * 1024 // 256)  # 2 MB in 33 APP2 segments
    pixels = Image.effect_noise((240, 160), 50).convert("RGB")
    small_kept = kept_bytes(tmp_path / "small", encode(pixels, "JPEG", icc_profile=srgb))
    huge_kept = kept_bytes(tmp_path / "huge", encode(pixels, "JPEG", icc_profile=huge))
    with Image.open(io.BytesIO(small_kept)) as small, Image.open(io.BytesIO(huge_kept)) as dropped:
        assert small.info.get("icc_profile") == srgb
        assert "icc_profile" not in dropped.info and b"ICC_PROFILE" not in huge_kept
        assert small.tobytes() == dropped.tobytes() == pixels_of(encode(pixels, "JPEG"))
    assert len(huge_kept) < 100_000


def pixels_of(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        return img.tobytes()


@pytest.mark.filterwarnings("ignore:Image appears to be a malformed MPO file")
def test_application_segments_other_than_jfif_icc_and_adobe_are_dropped(tmp_path: Path):
    picture = encode(Image.effect_noise((240, 160), 50).convert("RGB"), "JPEG", quality=88)
    adobe = segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")  # colour transform: YCbCr, needed to decode
    others = [segment(0xE3, b"META camera serial 1234"), segment(0xEC, b"Ducky\x00 note"),
              segment(0xE2, b"MPF\x00 index of a second picture"), segment(0xEF, b"vendor secret")]
    kept = kept_bytes(tmp_path, with_segments(picture, adobe, *others))
    assert kept == with_segments(picture, adobe)
    for text in (b"serial", b"Ducky", b"MPF", b"secret"):
        assert text not in kept


@pytest.mark.parametrize("cut", [-2, -40])
def test_strip_metadata_needs_the_end_of_the_image(cut: int):
    picture = encode(Image.effect_noise((240, 160), 50).convert("RGB"), "JPEG")
    assert strip_jpeg_metadata(picture) == picture
    assert strip_jpeg_metadata(picture[:cut]) is None


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_stored_files_get_the_mode_the_umask_gives(tmp_path: Path, umask: int, mode: int):
    previous = os.umask(umask)
    try:
        store = ImageStore(tmp_path / "images")
        normalized = store.put(encode(Image.new("RGB", (100, 60), "red")))
        kept = store.put(jpeg_with_metadata())
    finally:
        os.umask(previous)
    for stored in (normalized, kept):
        assert (tmp_path / stored.path).stat().st_mode & 0o777 == mode
