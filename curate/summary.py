"""What the CLI prints about a run: the end-of-run summary and ``curate status``.

Reads: the run's catalog (opened read-only for status, so it works while a run is going on and changes nothing
in the run directory; a catalog without stage runs, even without tables, is "no stage has run yet").
Writes: stdout. What came from the web or a crowd (words, reasons, annotator names, stats) is printed with its
control characters replaced, so it cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from curate.errors import ConfigError
from curate.layout import RunLayout
from curate.report.summary import plain


def _table(rows: list[Any], columns: list[str]) -> str:
    cells = [["-" if r[c] is None else plain(r[c]) for c in columns] for r in rows]  # web text: no escapes
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def stats_text(stats: dict[str, Any]) -> str:
    """A stage's stats as a line: ``skipped (why)`` where the stage skipped its work, else key=value pairs
    (a ``warning`` goes on a line of its own, :func:`warning_line`)."""
    if "skipped" in stats:
        return f"skipped ({plain(stats['skipped'])})"
    return ", ".join(f"{plain(k)}={plain(v)}" for k, v in stats.items() if k not in ("seconds", "warning"))


def warning_line(stats: dict[str, Any], indent: int) -> str:
    """The stage's ``warning`` stat under its line, or nothing."""
    return f"\n{' ' * indent}warning: {plain(stats['warning'])}" if stats.get("warning") else ""


def print_run_summary(summary: Any, resume_command: str) -> None:
    layout: RunLayout = summary.layout
    print(f"\ncurate run finished in {summary.seconds:.1f} s: {layout.root}")
    for name, result in summary.results.items():
        if result.nothing_to_do:
            print(f"  {name:<11} nothing to do")
        else:
            print(f"  {name:<11} {stats_text(result.stats)} ({result.stats.get('seconds', 0):.1f} s)"
                  + warning_line(result.stats, 14))
    for name in summary.not_run:
        print(f"  {name:<11} not run: waiting for {', '.join(summary.waiting)}")
    for label, path in _outputs(summary).items():
        print(f"  {label + ':':<11} {path}")
    print(f"  {'log:':<11} {layout.log_file}")
    for name, waiting in summary.waiting.items():
        print(f"\n{name}: {waiting}")
        if summary.not_run:
            print(f"  then resume with: {resume_command}\n"
                  f"  (or continue now on the labels complete so far: {resume_command} --allow-partial)")


def _outputs(summary: Any) -> dict[str, str]:
    """What this run produced or confirmed up to date (a stage with nothing to do), in stage order; never
    what an earlier run left on disk (a waiting stage holds the later ones back, and their old outputs)."""
    return {k: v for r in summary.results.values() for k, v in r.outputs.items()}


def reasons_table(catalog: Any) -> list[dict[str, Any]]:
    """Failed and rejected candidates per source and reason code, most frequent first."""
    from curate.reasons import reason_of

    counts: dict[tuple[str, str, str], int] = {}
    for row in catalog.candidate_errors():
        key = (row["source"], row["status"], reason_of(row["error"]))
        counts[key] = counts.get(key, 0) + row["n"]
    ordered = sorted(counts.items(), key=lambda item: (item[0][0], -item[1], item[0][2]))
    return [{"source": s, "status": st, "reason": r, "candidates": n} for (s, st, r), n in ordered]


ANNOTATOR_COLUMNS = ["annotator", "votes", "unsure", "gold_votes", "gold_accuracy", "median_s_per_task"]


def print_status(run_dir: Path) -> int:
    from curate.catalog import Catalog

    layout = RunLayout(Path(run_dir))
    if not layout.exists():
        raise ConfigError(f"no run found in {run_dir} (missing {layout.catalog.name})")
    catalog = Catalog(layout.catalog, readonly=True)
    try:
        print(f"run: {layout.root}\n")
        stages = catalog.stage_summary() if catalog.version else []  # version 0: created, no table written yet
        if not stages:
            pipeline = shlex.quote(str(layout.config)) if layout.config.is_file() else "PIPELINE"
            print(f"no stage has run yet: the catalog is empty (curate run {pipeline} starts the run)")
            return 0
        _print_stages(stages)
        _print_tables(catalog)
    finally:
        catalog.close()
    return 0


def _print_stages(stages: list[Any]) -> None:
    print("stages:")
    for row in stages:
        stats = json.loads(row["stats"] or "{}")
        print(f"  {row['stage']:<11} {row['status']:<11} {stats_text(stats)}" + warning_line(stats, 26))


def _print_tables(catalog: Any) -> None:
    """Per source, failure reasons, per class, annotators and decisions (each where it has rows)."""
    from curate.catalog import PER_CLASS_COLUMNS, PER_SOURCE_COLUMNS

    sources = catalog.per_source_status()
    if sources:
        print("\nper source (kept: accepted by the crowd):")
        print(_table(sources, PER_SOURCE_COLUMNS))
    reasons = reasons_table(catalog)
    if reasons:
        print("\nfailed and rejected, by reason:")
        print(_table(reasons, ["source", "status", "reason", "candidates"]))
    print("\nper class:")
    print(_table(catalog.per_class_status(), PER_CLASS_COLUMNS))
    annotators = catalog.annotator_stats() if catalog.version >= 3 else []  # (an older catalog has no gold)
    if annotators:
        print("\nannotators (gold accuracy: yes/no answers on gold tasks that match the known answer):")
        print(_table(annotators, ANNOTATOR_COLUMNS))
    decisions = catalog.decision_counts() if catalog.version >= 4 else []  # (an older catalog has none)
    if decisions:
        print("\ndecisions about issues (source: policy, or the crowd's review; action review: answers pending):")
        print(_table(decisions, ["kind", "action", "source", "n"]))
