"""What the CLI prints about a run: the end-of-run summary and ``curate status``.

Reads: the run's catalog (opened read-only for status). Writes: stdout.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from curate.errors import ConfigError

PER_CLASS_SQL = """
SELECT s.wnid, substr(s.lemmas, 1, 28) AS words,
  (SELECT COUNT(*) FROM candidates c WHERE c.wnid = s.wnid) AS candidates,
  (SELECT COUNT(*) FROM candidates c WHERE c.wnid = s.wnid AND c.status = 'downloaded') AS downloaded,
  (SELECT COUNT(*) FROM candidates c WHERE c.wnid = s.wnid AND c.status = 'duplicate') AS duplicate,
  (SELECT COUNT(*) FROM candidates c WHERE c.wnid = s.wnid AND c.status IN ('failed', 'rejected')) AS failed,
  (SELECT COUNT(*) FROM votes v JOIN tasks t ON t.id = v.task_id WHERE t.wnid = s.wnid) AS votes,
  (SELECT COUNT(*) FROM labels l WHERE l.wnid = s.wnid AND l.accepted = 1) AS accepted,
  (SELECT COUNT(*) FROM issues i WHERE i.wnid = s.wnid AND i.kind = 'label') AS label_issues
FROM synsets s ORDER BY s.wnid
"""


def _table(rows: list[sqlite3.Row] | list[dict], columns: list[str]) -> str:
    cells = [[str(r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def print_run_summary(ctx, summary) -> None:
    print(f"\ncurate run finished in {summary.seconds:.1f} s: {ctx.run_dir}")
    for name, result in summary.results.items():
        if result.nothing_to_do:
            print(f"  {name:<11} nothing to do")
        else:
            stats = ", ".join(f"{k}={v}" for k, v in result.stats.items() if k != "seconds")
            print(f"  {name:<11} {stats} ({result.stats.get('seconds', 0):.1f} s)")
    outputs = {k: v for r in summary.results.values() for k, v in r.outputs.items()}
    outputs.update(_existing_outputs(ctx.run_dir))
    for label, path in outputs.items():
        print(f"  {label + ':':<11} {path}")
    print(f"  {'log:':<11} {ctx.run_dir / 'logs' / 'curate.log'}")


def _existing_outputs(run_dir: Path) -> dict[str, str]:
    found = {"report": run_dir / "report" / "index.html", "export": run_dir / "export",
             "benchmark": run_dir / "benchmark" / "linear_probe.json"}
    return {k: str(p) for k, p in found.items() if p.exists()}


def print_status(run_dir: Path) -> int:
    path = run_dir / "catalog.sqlite"
    if not path.is_file():
        raise ConfigError(f"no run found in {run_dir} (missing {path.name})")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        stages = db.execute(
            "SELECT stage, status, stats, finished_at - started_at AS seconds FROM stage_runs "
            "WHERE id IN (SELECT MAX(id) FROM stage_runs GROUP BY stage) ORDER BY id"
        ).fetchall()
        print(f"run: {run_dir}\n\nstages:")
        for row in stages:
            stats = ", ".join(f"{k}={v}" for k, v in json.loads(row["stats"] or "{}").items() if k != "seconds")
            print(f"  {row['stage']:<11} {row['status']:<11} {stats}")
        print("\nper class:")
        print(_table(db.execute(PER_CLASS_SQL).fetchall(),
                     ["wnid", "words", "candidates", "downloaded", "duplicate", "failed", "votes", "accepted",
                      "label_issues"]))
    finally:
        db.close()
    return 0
