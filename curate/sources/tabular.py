"""Tabular files people hand to sources: CSV / TSV (optionally gzipped), Parquet, JSON lines or a JSON array.

Reads: one file, by its suffix. Writes nothing. :func:`read_table` returns every column as stripped
strings (missing values as ""); an unknown suffix or an unreadable file is a ConfigError naming the file.
Used by the ``urls`` source (lists of image URLs) and the ``imagefolder`` source (path, label tables).
"""

from __future__ import annotations

from pathlib import Path

from curate.errors import ConfigError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "json"}


def file_format(path: Path) -> str | None:
    """``csv`` | ``tsv`` | ``parquet`` | ``jsonl`` | ``json`` from the suffix (``.gz`` allowed for text)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        if suffixes and suffixes[-1] == ".parquet":
            return None
    return FORMATS.get(suffixes[-1]) if suffixes else None


def read_table(path: Path, what: str = "the table") -> dict[str, list[str]]:
    """Every column of the file as stripped strings (missing values become ""); a ConfigError naming the
    file and ``what`` it was read as when it cannot be read."""
    import pandas as pd

    kind = file_format(path)
    if kind is None:
        raise ConfigError(f"{path}: unsupported file type; expected {known_suffixes()}")
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False)
        elif kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=kind == "jsonl" or not _is_json_array(path), dtype=False)
    except (OSError, ValueError, ImportError) as exc:  # pandas' parser errors and pyarrow's are ValueErrors
        raise ConfigError(f"{path}: cannot read {what} as {kind}: {_first_line(exc)}") from None
    frame = frame.astype(object).where(frame.notna(), "")  # None, NaN, NA, NaT -> ""
    return {str(name): [str(v).strip() for v in frame[name].tolist()] for name in frame.columns}


def _is_json_array(path: Path) -> bool:
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096).lstrip()
    return head.startswith("[")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def known_suffixes() -> str:
    return ".csv, .tsv (.gz), .parquet, .jsonl, .json"
