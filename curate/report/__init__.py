"""The analysts' noise report: HTML (jinja2, autoescaped), plots and CSV tables."""
