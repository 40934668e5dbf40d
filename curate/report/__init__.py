"""The analysts' noise report: HTML (jinja2, autoescaped), plots and CSV tables."""

from curate.report.noise_report import write_noise_report

__all__ = ["write_noise_report"]
