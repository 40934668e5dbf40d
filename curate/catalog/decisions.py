"""Catalog nouns of the review: decisions about issues, and the review round's crowd tasks.

A decision is one row per (image, class): ``action`` (keep, drop, relabel to ``new_wnid``, or review: asked
of the crowd, no answer yet), the ``kind`` of issue it settles, a ``reason`` people can read, its
``source`` (``policy``: the configured rule; ``review``: the crowd's answers) and when it was made.
A re-run replaces the policy's decisions; a review decision is replaced only by a newer review decision,
never by the policy (people looked at the image), and review votes, like all votes, are never deleted.

Review tasks are ordinary ``tasks`` rows whose ``backend`` is the review queue of the crowd that answers
them (:func:`review_queue`): the first rounds' queries (``open_tasks(backend)``, ``vote_table(backend=…)``)
never see them, and the review's own queries see only them.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from curate.catalog.db import Database

REVIEW_SUFFIX = "/review"


def review_queue(backend: str) -> str:
    """The ``tasks.backend`` value of the review round answered by ``backend``."""
    return f"{backend}{REVIEW_SUFFIX}"


class DecisionTables(Database):
    def replace_policy_decisions(self, rows: list[dict[str, Any]]) -> int:
        """The policy's decisions now (sha256, wnid, kind, action, new_wnid, reason): the previous policy
        rows go; a pair with a review decision keeps it. Returns how many policy rows were written."""
        return self._write_decisions(rows, "policy", "IGNORE", clear_source_first=True)

    def record_review_decisions(self, rows: list[dict[str, Any]]) -> int:
        """Decisions from the crowd's review answers; they replace any earlier decision of the pair."""
        return self._write_decisions(rows, "review", "REPLACE")

    def _write_decisions(self, rows: list[dict[str, Any]], source: str, on_conflict: str,
                         clear_source_first: bool = False) -> int:
        """Insert ``rows`` from ``source``; on a pair already decided, ``IGNORE`` keeps the old decision and
        ``REPLACE`` overwrites it. Returns how many rows were written."""
        now = time.time()
        with self.transaction() as db:
            if clear_source_first:
                db.execute("DELETE FROM decisions WHERE source = ?", (source,))
            before = db.total_changes
            db.executemany(
                f"INSERT OR {on_conflict} INTO decisions (sha256, wnid, kind, action, new_wnid, reason, source, "
                "decided_at) VALUES (:sha256, :wnid, :kind, :action, :new_wnid, :reason, :source, :decided_at)",
                [{**row, "source": source, "decided_at": now} for row in rows],
            )
            return db.total_changes - before

    def decisions(self) -> list[sqlite3.Row]:
        return self.query("SELECT sha256, wnid, kind, action, new_wnid, reason, source, decided_at FROM decisions "
                          "ORDER BY sha256, wnid")

    def decision_counts(self) -> list[sqlite3.Row]:
        """(kind, action, source, n), most frequent first."""
        return self.query("SELECT kind, action, source, COUNT(*) AS n FROM decisions GROUP BY kind, action, source "
                          "ORDER BY n DESC, kind, action, source")

    def issues_of(self, kinds: tuple[str, ...]) -> list[sqlite3.Row]:
        """Issues of these kinds (sha256, wnid, kind, score, suggested_wnid, detail), in a stable order."""
        return self.query(
            f"SELECT sha256, wnid, kind, score, suggested_wnid, detail FROM issues "
            f"WHERE kind IN ({','.join('?' * len(kinds))}) ORDER BY sha256, wnid, kind, id", kinds,
        )

    # ------------------------------------------------------------------ the review round's tasks
    def create_review_tasks(self, queue: str, pairs: list[tuple[str, str]], votes_wanted: int) -> int:
        """One task per (sha256, wnid) question in the review ``queue``; a question asked before is not
        asked again. Returns how many were created."""
        with self.transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO tasks (sha256, wnid, backend, votes_wanted) VALUES (?, ?, ?, ?)",
                           [(sha, wnid, queue, votes_wanted) for sha, wnid in pairs])
            return db.total_changes - before

    def review_answers(self, queue: str) -> dict[tuple[str, str], sqlite3.Row]:
        """(sha256, wnid) -> the review task's id, state, votes_wanted and current yes / no / unsure counts."""
        rows = self.query(
            "SELECT t.id, t.sha256, t.wnid, t.state, t.votes_wanted, t.remote_id, "
            "COALESCE(SUM(v.answer = 'yes'), 0) AS yes, COALESCE(SUM(v.answer = 'no'), 0) AS no, "
            "COALESCE(SUM(v.answer = 'unsure'), 0) AS unsure, COUNT(v.id) AS n_votes "
            "FROM tasks t LEFT JOIN votes v ON v.task_id = t.id AND v.superseded_by IS NULL "
            "WHERE t.backend = ? GROUP BY t.id ORDER BY t.id", (queue,),
        )
        return {(r["sha256"], r["wnid"]): r for r in rows}
