"""The noise report of a run whose noise stage looked for no issue (no trained backbone): a page that says
why and how to fix it, instead of flags that would mean nothing.

Reads: the reason, the run's meta and the classes with their image counts. Writes into ``out_dir``
``index.html`` (autoescaped, the report's own style, a Content-Security-Policy that allows no script) and
``summary.json`` with ``skipped`` (the reason) for ``curate report``; published whole
(:func:`curate.atomic.replace_dir`), replacing the report of an earlier run. On failure: a class without
``label``, ``name`` or ``n_given`` raises ``jinja2.UndefinedError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup

from curate.atomic import replace_dir
from curate.report.page import STYLE_TEMPLATE, csp_hash, environment
from curate.report.summary import SUMMARY_VERSION, jsonable, write_summary

INDEX_NAME = "index.html"
TEMPLATE = "skipped.html.j2"


def write_skipped_report(out_dir: Path, title: str, meta: dict[str, Any], reason: str,
                         classes: list[dict[str, Any]]) -> Path:
    """``classes``: ``label``, ``name`` and ``n_given`` per class. Returns the path of ``index.html``."""
    env = environment()
    style = env.get_template(STYLE_TEMPLATE).render(thumb_px=0)
    csp = (f"default-src 'none'; script-src 'none'; style-src {csp_hash(style)}; base-uri 'none'; "
           "form-action 'none'; object-src 'none'")
    n_images = sum(c["n_given"] for c in classes)
    html = env.get_template(TEMPLATE).render(title=title, meta=meta, reason=reason, classes=classes,
                                             n_images=n_images, style=Markup(style), csp=csp)
    summary = {"version": SUMMARY_VERSION, "title": title, "meta": meta, "skipped": reason, "n_images": n_images,
               "n_classes": len(classes), "classes": classes, "files": {"index": INDEX_NAME}}
    with replace_dir(Path(out_dir)) as staging:
        write_summary(staging, jsonable(summary))
        (staging / INDEX_NAME).write_text(html, encoding="utf-8")
    return Path(out_dir) / INDEX_NAME
