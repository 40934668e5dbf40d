"""``summary.json``, the report's machine-readable counts, and ``curate report RUN_DIR``, which prints them.

Reads: the report's content when writing; ``RUN_DIR/report/summary.json`` when printing (imports no
pandas, matplotlib or torch, so the command answers at once). Writes: ``summary.json``; stdout. Printing
changes nothing in the run directory, so it is safe while a run is going on: it reads the finished report
(:func:`curate.atomic.finished`) and leaves ``report.incomplete/``, the one a noise stage may be writing, alone.
On failure: a missing run directory, a run without a report or an unreadable summary raises
:class:`ReportNotFound` (a :class:`curate.errors.CurateError`, exit 2) saying what to run. Text from the
data is printed with its control characters replaced, so a caption cannot move the cursor or recolour
the terminal.
"""

from __future__ import annotations

import json
import math
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.atomic import finished
from curate.errors import CurateError
from curate.layout import RunLayout

if TYPE_CHECKING:
    from curate.report.content import ReportContent

SUMMARY_NAME = "summary.json"
SUMMARY_VERSION = 1
TOP_IN_SUMMARY = 10
NOISIEST_PRINTED = 5


class ReportNotFound(CurateError):
    """No run there, no report in it, or a report whose summary cannot be read: bad input, exit 2."""

    exit_code = 2


def build_summary(content: ReportContent, title: str, meta: dict, table_rows: dict[str, int],
                  files: dict[str, str | None], max_cards: int = 500) -> dict[str, Any]:
    """Counts, the classes noisiest first, the worst outliers and near-duplicate groups, the decisions about
    issues by outcome, file names, and the cards per section (what a rewrite of the page needs)."""
    from curate.report.content import NEAR_DUPLICATE, OUTLIER

    outliers, duplicates = content.section(OUTLIER), content.section(NEAR_DUPLICATE)
    summary = {
        "version": SUMMARY_VERSION, "title": title, "meta": meta,
        "n_images": len(content.table), "n_classes": len(content.classes),
        "n_label_issues": len(content.flagged), "estimated_noise_rate": content.noise_rate,
        "n_outliers": outliers.n_images if outliers else 0,
        "n_near_duplicate_groups": duplicates.n_groups if duplicates else 0,
        "n_near_duplicate_images": duplicates.n_images if duplicates else 0,
        "issues_by_kind": content.issues["kind"].value_counts().to_dict(),
        "decisions": content.decision_counts,
        "dataset_checks": content.dataset_checks,
        "classes": content.classes[["label", "name", "n_given", "n_label_issues", "estimated_noise_rate"]]
        .to_dict("records"),
        "top_outliers": [{k: c[k] for k in ("sha256", "given_label", "given_name", "score", "path")}
                         for c in (outliers.cards if outliers else [])[:TOP_IN_SUMMARY]],
        "top_near_duplicate_groups": [{"group": g["group"], "size": len(g["cards"]), "classes": g["classes"],
                                       "score": g["score"]} for g in (duplicates.groups if duplicates else [])
                                      [:TOP_IN_SUMMARY]],
        "tables": {name: {"rows": n, "csv": f"{name}.csv", "parquet": f"{name}.parquet"}
                   for name, n in table_rows.items()},
        "files": files, "max_cards": max_cards,
    }
    return jsonable(summary)


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN as null, anything else unknown as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    (folder / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                                       encoding="utf-8")


# ------------------------------------------------------------------------------------------- curate report
def print_report(run_dir: Path, open_browser: bool = False) -> int:
    """Where the run's report is and what it found; ``open_browser`` opens it in the default browser."""
    layout = RunLayout(Path(run_dir))
    index = _report_index(layout)
    print(f"report: {index}")
    summary_path = index.parent / SUMMARY_NAME
    if summary_path.is_file():
        print("\n".join(summary_lines(read_summary(summary_path))))
    else:
        print("  (no summary.json: this report predates it; run the noise stage again for the summary)")
    if open_browser:
        webbrowser.open(index.as_uri())
    return 0


def _report_index(layout: RunLayout) -> Path:
    """The finished report's page, found without changing the run (a noise stage may be writing a new one)."""
    if not layout.root.is_dir():
        raise ReportNotFound(f"no run directory at {layout.root}")
    folder = finished(layout.report)
    index = None if folder is None else folder / layout.report_index.name
    if index is None or not index.is_file():
        hint = f"curate run {layout.config}" if layout.config.is_file() else "curate run PIPELINE"
        raise ReportNotFound(f"{layout.root} has no noise report yet: the noise stage writes it "
                             f"(curate status {layout.root} shows the stages; {hint} runs them)")
    return index.resolve()


def read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportNotFound(f"cannot read {path}: {exc}") from exc
    if not isinstance(summary, dict):
        raise ReportNotFound(f"cannot read {path}: not a JSON object")
    return summary


def plain(value: Any) -> str:
    """Text safe for a terminal: control characters (escape sequences, newlines) become ``?``."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(value))


def summary_lines(summary: dict[str, Any]) -> list[str]:
    n_images, flagged = summary.get("n_images", 0), summary.get("n_label_issues", 0)
    lines = [f"  {plain(summary['title'])}"] if summary.get("title") else []
    if summary.get("skipped"):  # the noise stage looked for no issue (curate.report.skipped)
        return lines + [f"  warning: noise check skipped ({plain(summary['skipped'])}): no issue was looked for",
                        f"  {n_images} images in {summary.get('n_classes', 0)} classes"]
    if isinstance(summary.get("meta"), dict) and summary["meta"].get("warning"):
        lines.append(f"  warning: {plain(summary['meta']['warning'])}")
    lines += [f"  {n_images} images in {summary.get('n_classes', 0)} classes; {flagged} flagged label issues "
             f"({_percent(flagged / n_images if n_images else 0)}); estimated noise rate "
             f"{_percent(summary.get('estimated_noise_rate'))}",
             f"  outliers: {summary.get('n_outliers', 0)}; near-duplicate groups: "
             f"{summary.get('n_near_duplicate_groups', 0)} ({summary.get('n_near_duplicate_images', 0)} images)"]
    other = {k: n for k, n in summary.get("issues_by_kind", {}).items() if k not in ("outlier", "near_duplicate")}
    if other:
        lines.append("  other issues: " + ", ".join(f"{plain(k)} {n}" for k, n in other.items()))
    if summary.get("decisions"):
        decided = summary["decisions"].items()
        lines.append("  decisions about the flagged images: " + ", ".join(f"{plain(k)} {n}" for k, n in decided))
    for name, check in summary.get("dataset_checks", {}).items():
        lines.append(f"  check {plain(name)}: score {_number(check.get('score'))}: {plain(check.get('summary', ''))}")
    lines += _noisiest(summary.get("classes", []))
    lines += _worst_outliers(summary.get("top_outliers", []))
    return lines


def _noisiest(classes: list[dict]) -> list[str]:
    if not classes:
        return []
    rows = sorted(classes, key=lambda c: -(c.get("estimated_noise_rate") or 0))[:NOISIEST_PRINTED]
    lines = [f"  {len(rows)} noisiest classes (estimated noise rate, flagged of given):"]
    for c in rows:
        name = plain(c.get("name") or c.get("label"))
        lines.append(f"    {_percent(c.get('estimated_noise_rate')):>7}  {name} ({plain(c.get('label'))})  "
                     f"{c.get('n_label_issues', 0)} of {c.get('n_given', 0)}")
    return lines


def _worst_outliers(outliers: list[dict]) -> list[str]:
    if not outliers:
        return []
    lines = ["  most severe outliers (score: lower is stranger):"]
    for o in outliers[:3]:
        where = plain(o.get("path") or str(o.get("sha256", ""))[:16])
        lines.append(f"    {_number(o.get('score'))}  {plain(o.get('given_name'))} ({plain(o.get('given_label'))})"
                     f"  {where}")
    return lines


def _percent(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, int | float) else "-"


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"
