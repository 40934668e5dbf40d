"""``index.html`` of the noise report: one page, its CSS and script inline, a strict Content-Security-Policy.

Reads: the report's content and the names of the files written beside the page. Returns the HTML text.
Every value from the data (captions, sources, class names, paths) goes through jinja2's autoescape, in
text and in attributes alike; the data reaches the script only through ``data-*`` attributes. The
policy allows exactly the page's own script and style (by their SHA-256), images from the report
folder and ``data:`` URLs, and nothing else: no other script, no network, no forms, no plug-ins.
On failure: a value the template needs but the content lacks raises ``jinja2.UndefinedError``.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import jinja2
from markupsafe import Markup

from curate.report.content import LABEL, NEAR_DUPLICATE, OUTLIER, ReportContent

TEMPLATE = "noise_report.html.j2"
STYLE_TEMPLATE = "noise_report.css.j2"
SCRIPT_TEMPLATE = "noise_report.js.j2"
KIND_TITLES = {LABEL: "Label issues", OUTLIER: "Outliers", NEAR_DUPLICATE: "Near-duplicates"}
TABLE_NOTES = {
    "label_issues": "the flagged images, most likely wrong first",
    "all_labels": "every image: given and suggested class, label score",
    "class_summary": "per class: images, flagged, other issues, estimated noise rate",
    "issues": "outliers, near-duplicates (group) and other Datalab issues, most severe first",
    "annotators": "per annotator: votes, gold accuracy, time per task",
    "confident_joint": "images by given class (rows) and suggested class (columns)",
}


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("curate.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(script: str, style: str) -> str:
    return (f"default-src 'none'; script-src {csp_hash(script)}; style-src {csp_hash(style)}; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; object-src 'none'")


def render_page(content: ReportContent, title: str, meta: dict, files: dict[str, Any], thumbs: set[str],
                thumb_px: int, max_cards: int) -> str:
    """``files``: names of the files beside the page (charts may be None); ``thumbs``: ids with a thumbnail."""
    env = environment()
    style = env.get_template(STYLE_TEMPLATE).render(thumb_px=thumb_px)
    script = env.get_template(SCRIPT_TEMPLATE).render()
    meta = {**meta}
    meta.setdefault("generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    return env.get_template(TEMPLATE).render(
        title=title, meta=meta, c=content, files=files, thumbs=thumbs, max_cards=max_cards,
        classes=content.classes.to_dict("records"), filter_classes=_filter_classes(content),
        kinds=_filter_kinds(content), kind_titles=KIND_TITLES, table_notes=TABLE_NOTES,
        style=Markup(style), script=Markup(script), csp=content_security_policy(script, style),
    )


def _filter_kinds(content: ReportContent) -> list[dict]:
    """The issue types the filter offers, with how many images each has."""
    kinds = [{"kind": LABEL, "title": KIND_TITLES[LABEL], "n": len(content.flagged)}]
    return kinds + [{"kind": s.kind, "title": KIND_TITLES.get(s.kind, s.kind), "n": s.n_images}
                    for s in content.sections]


def _filter_classes(content: ReportContent) -> list[dict]:
    """Every class a card can have, as the class summary names it, then any class only the issues know."""
    classes = [{"label": str(r["label"]), "name": str(r["name"])} for r in content.classes.to_dict("records")]
    known = {c["label"] for c in classes}
    extra = sorted({str(w) for w in content.issues["given_label"]} - known)
    return classes + [{"label": w, "name": w} for w in extra]
