"""Catalog noun of the runner: stage runs (fingerprint, status, stats), and the per-class status table."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from curate.catalog.db import Database

PER_CLASS_SQL = """
SELECT s.wnid, substr(s.lemmas, 1, 28) AS words,
  (SELECT COUNT(*) FROM candidates c WHERE c.wnid = s.wnid) AS candidates,
  (SELECT COUNT(*) FROM candidates c WHERE c.wnid = s.wnid AND c.status = 'downloaded') AS downloaded,
  (SELECT COUNT(*) FROM candidates c WHERE c.wnid = s.wnid AND c.status = 'duplicate') AS duplicate,
  (SELECT COUNT(*) FROM candidates c WHERE c.wnid = s.wnid AND c.status = 'failed') AS failed,
  (SELECT COUNT(*) FROM candidates c WHERE c.wnid = s.wnid AND c.status = 'rejected') AS rejected,
  (SELECT COUNT(*) FROM votes v JOIN tasks t ON t.id = v.task_id WHERE t.wnid = s.wnid) AS votes,
  (SELECT COUNT(*) FROM labels l WHERE l.wnid = s.wnid AND l.accepted = 1) AS accepted,
  (SELECT COUNT(*) FROM issues i WHERE i.wnid = s.wnid AND i.kind = 'label') AS label_issues
FROM synsets s ORDER BY s.wnid
"""
PER_CLASS_COLUMNS = ["wnid", "words", "candidates", "downloaded", "duplicate", "failed", "rejected", "votes",
                     "accepted", "label_issues"]

# "kept": downloaded candidates whose image the crowd accepted for the candidate's class.
PER_SOURCE_SQL = """
SELECT c.source,
  COUNT(*) AS candidates,
  SUM(c.status = 'pending') AS pending,
  SUM(c.status = 'downloaded') AS downloaded,
  SUM(c.status = 'duplicate') AS duplicate,
  SUM(c.status = 'failed') AS failed,
  SUM(c.status = 'rejected') AS rejected,
  SUM(EXISTS (SELECT 1 FROM labels l WHERE l.sha256 = c.sha256 AND l.wnid = c.wnid AND l.accepted = 1
              AND c.status = 'downloaded')) AS kept
FROM candidates c GROUP BY c.source ORDER BY c.source
"""
PER_SOURCE_COLUMNS = ["source", "candidates", "pending", "downloaded", "duplicate", "failed", "rejected", "kept"]


class RunTables(Database):
    def start_stage(self, stage: str, fingerprint: str) -> int:
        cur = self.db.execute(
            "INSERT INTO stage_runs (stage, fingerprint, started_at, status) VALUES (?, ?, ?, 'running')",
            (stage, fingerprint, time.time()),
        )
        return int(cur.lastrowid)

    def finish_stage(self, run_id: int, status: str, stats: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE stage_runs SET finished_at = ?, status = ?, stats = ? WHERE id = ?",
            (time.time(), status, json.dumps(stats, default=str), run_id),
        )

    def last_ok_fingerprint(self, stage: str) -> str | None:
        return self.scalar(
            "SELECT fingerprint FROM stage_runs WHERE stage = ? AND status = 'ok' ORDER BY id DESC LIMIT 1", (stage,)
        )

    def stage_stats(self) -> dict[str, dict[str, Any]]:
        """stage -> the stats of its latest run."""
        return {r["stage"]: json.loads(r["stats"] or "{}") for r in self.stage_summary()}

    def stage_summary(self) -> list[sqlite3.Row]:
        """The latest run of every stage, in the order they last ran."""
        return self.query(
            "SELECT stage, status, fingerprint, started_at, finished_at, finished_at - started_at AS seconds, stats "
            "FROM stage_runs WHERE id IN (SELECT MAX(id) FROM stage_runs GROUP BY stage) ORDER BY id"
        )

    def per_class_status(self) -> list[sqlite3.Row]:
        return self.query(PER_CLASS_SQL)

    def per_source_status(self) -> list[sqlite3.Row]:
        return self.query(PER_SOURCE_SQL)

    def candidate_errors(self) -> list[sqlite3.Row]:
        """(source, status, error, n) for failed and rejected candidates, grouped by identical message."""
        return self.query(
            "SELECT source, status, error, COUNT(*) AS n FROM candidates WHERE status IN ('failed', 'rejected') "
            "GROUP BY source, status, error"
        )
