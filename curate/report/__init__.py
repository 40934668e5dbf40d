"""The analysts' noise report: HTML (jinja2, autoescaped, strict CSP), charts, CSV and Parquet tables, a summary.

``write_noise_report`` is imported on first use, so that ``curate report`` (which only reads
``summary.json``) starts without pandas or matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_noise_report"]


def __getattr__(name: str) -> Any:
    if name == "write_noise_report":
        from curate.report.noise_report import write_noise_report

        return write_noise_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
