"""Why a candidate failed or was rejected, as a short reason code for tables and progress bars.

Reads: a candidate's ``error`` string (written by :mod:`curate.http`, :mod:`curate.store`, the
executor's crash policy and the candidates stage). Writes nothing. The full message stays in the
catalog; the code groups them (``http_404``, ``deadline``, ``private_address``, ``not_image``,
``too_small``, ``worker_crash``, ...).
"""

from __future__ import annotations

import re

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"deadline"), "deadline"),
    (re.compile(r"^refused: .* is an? "), "private_address"),
    (re.compile(r"too many redirects"), "redirects"),
    (re.compile(r"X-Robots-Tag"), "noai"),
    (re.compile(r"\bHTTP (\d{3})\b"), "http_{0}"),
    (re.compile(r"^not an image"), "not_image"),
    (re.compile(r"^(file )?too large"), "too_large"),
    (re.compile(r"^image too large"), "too_many_pixels"),
    (re.compile(r"^image too small"), "too_small"),
    (re.compile(r"^worker process died"), "worker_crash"),
    (re.compile(r"^near duplicate"), "near_duplicate"),
    (re.compile(r"^placeholder"), "placeholder"),
    (re.compile(r"^extreme aspect ratio"), "aspect_ratio"),
    (re.compile(r"^too dark"), "too_dark"),
    (re.compile(r"^too light"), "too_light"),
    (re.compile(r"^near-constant"), "near_constant"),
    (re.compile(r"^low information"), "low_information"),
    (re.compile(r"^blurry"), "blurry"),
    (re.compile(r"unsupported image format"), "unsupported_format"),
    (re.compile(r"^cannot decode"), "undecodable"),
    (re.compile(r"file:// URLs|outside the source root|bad file URL|cannot read"), "file_url"),
    (re.compile(r"bad URL|unsupported URL scheme|redirect to unsupported scheme"), "bad_url"),
    (re.compile(r"unreachable|Connection|Timeout|timed out|Name or service|reset", re.IGNORECASE), "connection"),
    (re.compile(r"IncompleteRead|truncated|ChunkedEncoding|ProtocolError|Content-Length", re.IGNORECASE),
     "broken_response"),
]


def reason_of(error: str | None) -> str:
    """The reason code of an error message; ``other`` when no rule knows it."""
    if not error:
        return "other"
    for pattern, code in _RULES:
        match = pattern.search(error)
        if match:
            return code.format(*match.groups())
    return "other"
