"""Reason codes group the error messages of failed and rejected candidates."""

from __future__ import annotations

import pytest

from curate.reasons import reason_of


@pytest.mark.parametrize("error, reason", [
    ("HTTP 404", "http_404"),
    ("HTTP 503 (after 3 attempts)", "http_503"),
    ("HTTP 429 (2 attempts; deadline of 60 s exceeded)", "deadline"),
    ("refused: 10.0.0.1 is a private address", "private_address"),
    ("refused: 127.0.0.1 is a loopback address", "private_address"),
    ("too many redirects (max 5)", "redirects"),
    ("not an image: Content-Type text/html", "not_image"),
    ("too large: over 25000000 bytes", "too_large"),
    ("image too large: 50000x50000 px", "too_many_pixels"),
    ("image too small: 512x1 px after resizing to fit 512 px (min side 32 px)", "too_small"),
    ("unsupported image format EPS (accepted: JPEG, PNG)", "unsupported_format"),
    ("cannot decode image: truncated", "undecodable"),
    ("file:// URLs are only allowed for the local source", "file_url"),
    ("redirect to unsupported scheme 'ftp'", "bad_url"),
    ("ConnectionError: connection reset by peer (after 3 attempts)", "connection"),
    ("IncompleteRead(3 bytes read, 13 more expected)", "broken_response"),
    ("something nobody foresaw", "other"),
    (None, "other"),
])
def test_reason_codes(error, reason):
    assert reason_of(error) == reason


@pytest.mark.parametrize("error, reason", [
    ("too dark: mean brightness 0.000 (min 0.06); near-constant: contrast 0.000 (min 0.02)", "too_dark"),
    ("blurry: sharpness 3.1 (min 20)", "blurry"),
    ("extreme aspect ratio 10.0:1 (max 4)", "aspect_ratio"),
    ("placeholder image: 120x90 px, 99% one flat colour", "placeholder"),
    ("low information: entropy 1.20 bits (min 2)", "low_information"),
    ("near duplicate of 0123456789ab in the same class", "near_duplicate"),
])
def test_quality_reason_codes(error, reason):
    assert reason_of(error) == reason
