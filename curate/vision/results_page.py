"""The benchmark's page: ``benchmark/index.html`` with every mode's numbers and charts, the noisy vs
cleaned comparison and the learning curve, beside the JSON and PNG files it shows.

Reads: the result dicts the benchmark stage wrote (``benchmark/<mode>.json``), the learning curve's
(``learning_curve.json``) and the warnings about what the numbers are worth (an untrained backbone, a top-1
no better than chance), shown first; PNGs are linked by file name, relative to the page. Writes: one HTML file
(jinja2, autoescaped, inline CSS, no external assets), whole or not at all (:func:`curate.atomic.write_text`).
On failure: a missing key in a result raises ``jinja2.UndefinedError`` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from curate.atomic import write_text

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 70em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.3em 0 1em; }
.meta { color: #666; font-size: 0.9em; }
.warning { background: #fff4ce; border: 1px solid #e5c764; border-radius: 6px; padding: 0.6em 1em; }
</style></head><body>
<h1>{{ title }}</h1>
{% for warning in warnings %}<p class="warning"><strong>Warning:</strong> {{ warning }}</p>{% endfor %}
<p class="meta">{% for key, value in meta.items() %}{{ key }}: {{ value }}{% if not loop.last %} · {% endif %}
{% endfor %}</p>
<h2>Modes</h2>
<table><tr><th>mode</th><th>top-1</th><th>top-k</th><th>k</th><th>train</th><th>val</th><th>epochs</th>
<th>seconds</th><th>device</th><th>resumed from epoch</th><th>result</th></tr>
{% for row in modes %}<tr><td>{{ row.mode }}</td><td>{{ pct(row.top1) }}</td><td>{{ pct(row.top5) }}</td>
<td>{{ row.k_top5 }}</td><td>{{ row.n_train }}</td><td>{{ row.n_val }}</td><td>{{ row.epochs }}</td>
<td>{{ row.seconds }}</td><td>{{ row.device }}</td><td>{{ row.resumed_from_epoch or "" }}</td>
<td><a href="{{ row.mode }}.json">{{ row.mode }}.json</a></td></tr>
{% endfor %}</table>
{% if comparisons %}<h2>What curation bought: noisy vs cleaned labels</h2>
<p>The same mode trained on the export's images with the labels before the noise stage's decisions
(flagged images included with their given labels) and after them (flagged images left out), both
evaluated on the same validation split.</p>
<table><tr><th>mode</th><th>labels</th><th>train images</th><th>top-1</th><th>top-k</th></tr>
{% for c in comparisons %}{% for labels in ("noisy", "cleaned") %}<tr><td>{{ c.mode }}</td><td>{{ labels }}</td>
<td>{{ c[labels].n_train }}</td><td>{{ pct(c[labels].top1) }}</td><td>{{ pct(c[labels].top5) }}</td></tr>
{% endfor %}{% endfor %}</table>{% endif %}
{% if curve %}<h2>Learning curve</h2>
<p>Validation top-1 against training images per class (subsets of the export's training split).</p>
<img src="{{ curve.plot }}" alt="learning curve">
<table><tr><th>mode</th>{% for n in curve.samples_per_class %}<th>{{ n }} / class</th>{% endfor %}</tr>
{% for mode, points in curve.modes.items() %}<tr><td>{{ mode }}</td>
{% for p in points %}<td>{{ pct(p.top1) }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endif %}
<h2>Training per epoch</h2>
{% for plot in plots %}<img src="{{ plot }}" alt="{{ plot }}">
{% endfor %}
</body></html>
"""


def write_results_page(path: Path, title: str, meta: Mapping, modes: Sequence[Mapping],
                       comparisons: Sequence[Mapping] = (), curve: Mapping | None = None,
                       plots: Sequence[str] = (), warnings: Sequence[str] = ()) -> Path:
    """``modes``: result dicts with ``mode``; ``comparisons``: {mode, noisy, cleaned} result dicts;
    ``curve``: the learning curve's JSON with ``plot`` (a file name); ``plots``: PNG names to show;
    ``warnings``: sentences shown above everything."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    meta = {**meta, "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    html = env.from_string(TEMPLATE).render(title=title, meta=meta, modes=modes, comparisons=comparisons,
                                            curve=curve, plots=plots, warnings=warnings, pct=_percent)
    write_text(path, html)
    return path


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f} %"
