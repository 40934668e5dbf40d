"""The report's tables, each twice: ``<name>.csv`` for spreadsheets, ``<name>.parquet`` for pandas.

Reads: the frames of :class:`curate.report.content.ReportContent`. Writes both files per table into the
report's staging folder. CSV cells go through :func:`curate.tables.write_csv`, so web text cannot start
a spreadsheet formula there; Parquet keeps the values exactly as they are (typed columns, no quoting).
On failure: a text column whose cells mix types (numbers and text) is stored as text in the Parquet
file rather than refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa

from curate.tables import write_csv

log = logging.getLogger(__name__)


def write_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Write every table as CSV and Parquet; returns rows per table name."""
    rows = {}
    for name, frame in tables.items():
        frame = frame.reset_index(drop=True).rename(columns=str)
        write_csv(frame, folder / f"{name}.csv")
        write_parquet(frame, folder / f"{name}.parquet")
        rows[name] = len(frame)
    return rows


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    try:
        frame.to_parquet(path, index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        log.debug("%s: mixed-type columns stored as text (%s)", path.name, exc)
        frame.assign(**{c: _as_text(frame[c]) for c in frame.columns if frame[c].dtype == object}).to_parquet(
            path, index=False)


def _as_text(column: pd.Series) -> pd.Series:
    return column.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
