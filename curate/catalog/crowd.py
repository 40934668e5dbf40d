"""Catalog nouns of the crowd: tasks (one yes/no question about one image and one class) and votes
(never deleted, unique by the backend's remote id, so pulling again never stores a vote twice)."""

from __future__ import annotations

import sqlite3
from typing import Any

from curate.catalog.db import Database

_OPEN_TASKS = (
    "SELECT t.*, (SELECT COUNT(*) FROM votes v WHERE v.task_id = t.id AND v.superseded_by IS NULL) AS n_votes "
    "FROM tasks t WHERE t.backend = ? AND t.state = 'open' ORDER BY t.id"
)


class CrowdTables(Database):
    def create_missing_tasks(self, backend: str, votes_wanted: int) -> int:
        """One verification task per distinct (image, class) among downloaded candidates."""
        with self.transaction() as db:
            before = db.total_changes
            db.execute(
                "INSERT OR IGNORE INTO tasks (sha256, wnid, backend, votes_wanted) "
                "SELECT DISTINCT sha256, wnid, ?, ? FROM candidates WHERE status = 'downloaded' ORDER BY sha256, wnid",
                (backend, votes_wanted),
            )
            return db.total_changes - before

    def raise_votes_wanted(self, backend: str, votes_wanted: int) -> int:
        """Tasks that want fewer votes now want ``votes_wanted`` and are open again; returns how many.
        (Lowering the count never discards votes already paid for.)"""
        with self.transaction() as db:
            before = db.total_changes
            db.execute(
                "UPDATE tasks SET votes_wanted = ?, state = 'open' WHERE backend = ? AND votes_wanted < ?",
                (votes_wanted, backend, votes_wanted),
            )
            return db.total_changes - before

    def images_without_tasks(self, backend: str) -> int:
        return self.scalar(
            "SELECT COUNT(*) FROM (SELECT DISTINCT sha256, wnid FROM candidates c WHERE status = 'downloaded' "
            "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.sha256 = c.sha256 AND t.wnid = c.wnid AND t.backend = ?))",
            (backend,),
        )

    def unpublished_tasks(self, backend: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM tasks WHERE backend = ? AND remote_id IS NULL ORDER BY id", (backend,))

    def set_remote_ids(self, remote_ids: dict[int, str]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE tasks SET remote_id = ? WHERE id = ?", [(r, t) for t, r in remote_ids.items()])

    def open_tasks(self, backend: str) -> list[sqlite3.Row]:
        """Tasks still wanting votes, each with ``n_votes`` (current votes) beside ``votes_wanted``."""
        return self.query(_OPEN_TASKS, (backend,))

    def missing_votes(self, backend: str) -> int:
        """Votes the crowd still owes: the sum over open tasks of wanted minus current."""
        return sum(max(0, t["votes_wanted"] - t["n_votes"]) for t in self.open_tasks(backend))

    def add_votes(self, rows: list[dict[str, Any]]) -> int:
        """Store votes (a remote id seen before is ignored) and close tasks that have all theirs."""
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO votes (task_id, annotator, answer, remote_id, created_at) "
                "VALUES (:task_id, :annotator, :answer, :remote_id, :created_at)",
                rows,
            )
            added = db.total_changes - before
            db.execute(
                "UPDATE tasks SET state = 'complete' WHERE state = 'open' AND votes_wanted <= "
                "(SELECT COUNT(*) FROM votes v WHERE v.task_id = tasks.id AND v.superseded_by IS NULL)"
            )
            return added

    def vote_table(self, complete_only: bool = True) -> list[sqlite3.Row]:
        """Current votes with their task's image and class; by default only tasks with all votes in."""
        state = "AND t.state = 'complete' " if complete_only else ""
        return self.query(
            "SELECT t.id AS task_id, t.sha256, t.wnid, v.annotator, v.answer FROM tasks t "
            f"JOIN votes v ON v.task_id = t.id WHERE v.superseded_by IS NULL {state}ORDER BY t.id, v.id"
        )

    def vote_totals(self) -> dict[str, int]:
        row = self.query("SELECT COUNT(*) AS votes, COUNT(DISTINCT annotator) AS annotators FROM votes")[0]
        return {"votes": row["votes"], "annotators": row["annotators"]}
