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
            created = db.total_changes - before
            self._mark_gold_tasks(db)
            return created

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

    def downloaded_pairs(self) -> list[sqlite3.Row]:
        """The downloaded candidates' (image, class, URL), an (image, class) once per URL that brought it."""
        return self.query("SELECT DISTINCT sha256, wnid, url FROM candidates WHERE status = 'downloaded' "
                          "ORDER BY sha256, wnid, url")

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
                "INSERT OR IGNORE INTO votes (task_id, annotator, answer, remote_id, created_at, lead_time_s) "
                "VALUES (:task_id, :annotator, :answer, :remote_id, :created_at, :lead_time_s)",
                [{"lead_time_s": None, **row} for row in rows],
            )
            added = db.total_changes - before
            db.execute(
                "UPDATE tasks SET state = 'complete' WHERE state = 'open' AND votes_wanted <= "
                "(SELECT COUNT(*) FROM votes v WHERE v.task_id = tasks.id AND v.superseded_by IS NULL)"
            )
            return added

    def vote_table(self, complete_only: bool = True, backend: str | None = None) -> list[sqlite3.Row]:
        """Current votes with their task's image and class (and whether it is gold); by default only tasks
        with all votes in; only one backend's tasks when ``backend`` is given."""
        where = "v.superseded_by IS NULL"
        where += " AND t.state = 'complete'" if complete_only else ""
        where += " AND t.backend = ?" if backend else ""
        return self.query(
            "SELECT t.id AS task_id, t.sha256, t.wnid, t.is_gold, v.annotator, v.answer FROM tasks t "
            f"JOIN votes v ON v.task_id = t.id WHERE {where} ORDER BY t.id, v.id", (backend,) if backend else (),
        )

    def ask_more_votes(self, task_ids: list[int], cap: int) -> int:
        """One more vote wanted for each of ``task_ids`` (never past ``cap``); they are open again."""
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "UPDATE tasks SET votes_wanted = votes_wanted + 1, state = 'open' WHERE id = ? AND votes_wanted < ?",
                [(task_id, cap) for task_id in task_ids],
            )
            return db.total_changes - before

    # ------------------------------------------------------------------ gold
    def add_gold(self, rows: list[dict[str, Any]]) -> int:
        """Known answers (sha256, wnid, answer yes/no, source); an answer given before is replaced.
        Tasks of those (image, class) pairs, now or later, are gold tasks."""
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT INTO gold (sha256, wnid, answer, source) VALUES (:sha256, :wnid, :answer, :source) "
                "ON CONFLICT (sha256, wnid) DO UPDATE SET answer = excluded.answer, source = excluded.source", rows)
            added = db.total_changes - before
            self._mark_gold_tasks(db)
            return added

    @staticmethod
    def _mark_gold_tasks(db: sqlite3.Connection) -> None:
        db.execute("UPDATE tasks SET is_gold = 1 WHERE is_gold = 0 AND EXISTS "
                   "(SELECT 1 FROM gold g WHERE g.sha256 = tasks.sha256 AND g.wnid = tasks.wnid)")

    def gold_answers(self) -> dict[tuple[str, str], str]:
        return {(r["sha256"], r["wnid"]): r["answer"] for r in self.query("SELECT sha256, wnid, answer FROM gold")}

    def annotator_stats(self, backend: str | None = None) -> list[sqlite3.Row]:
        """Per annotator: votes, abstentions, gold votes answered, gold accuracy (of the yes/no answers on
        gold tasks) and the median time per task; most votes first. Only one backend's tasks when given."""
        return self.query(
            "WITH v AS (SELECT v.annotator, v.answer, v.lead_time_s, g.answer AS gold FROM votes v "
            "  JOIN tasks t ON t.id = v.task_id LEFT JOIN gold g ON g.sha256 = t.sha256 AND g.wnid = t.wnid "
            "  WHERE v.superseded_by IS NULL AND (?1 IS NULL OR t.backend = ?1)), "
            "ranked AS (SELECT annotator, lead_time_s, ROW_NUMBER() OVER (PARTITION BY annotator ORDER BY "
            "  lead_time_s) AS k, COUNT(*) OVER (PARTITION BY annotator) AS n FROM v WHERE lead_time_s IS NOT NULL) "
            "SELECT v.annotator, COUNT(*) AS votes, SUM(v.answer = 'unsure') AS unsure, "
            "  SUM(v.gold IS NOT NULL AND v.answer != 'unsure') AS gold_votes, "
            "  ROUND(AVG(CASE WHEN v.gold IS NOT NULL AND v.answer != 'unsure' THEN v.answer = v.gold END), 3) "
            "    AS gold_accuracy, "
            "  (SELECT ROUND(AVG(r.lead_time_s), 1) FROM ranked r WHERE r.annotator = v.annotator "
            "    AND r.k IN ((r.n + 1) / 2, (r.n + 2) / 2)) AS median_s_per_task "
            "FROM v GROUP BY v.annotator ORDER BY votes DESC, v.annotator", (backend,)
        )

    def vote_state(self, backend: str) -> dict[str, int]:
        """A backend's votes as a small key that changes exactly when its current votes do: how many there
        are, the newest id and how many were superseded (votes are only appended or superseded, never edited
        or deleted; an edit appends a vote and supersedes one, a withdrawal supersedes one)."""
        row = self.query(
            "SELECT COUNT(*) AS votes, COALESCE(MAX(v.id), 0) AS newest, "
            "COALESCE(SUM(v.superseded_by IS NOT NULL), 0) AS superseded "
            "FROM votes v JOIN tasks t ON t.id = v.task_id WHERE t.backend = ?", (backend,))[0]
        return {"votes": row["votes"], "newest": row["newest"], "superseded": row["superseded"]}

    def vote_totals(self) -> dict[str, int]:
        row = self.query("SELECT COUNT(*) AS votes, COUNT(DISTINCT annotator) AS annotators FROM votes")[0]
        return {"votes": row["votes"], "annotators": row["annotators"]}
