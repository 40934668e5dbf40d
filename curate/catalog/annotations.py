"""Catalog nouns of a remote annotation tool: answers that change after they were pulled, and what the
tool shows beside a question (image paths, example images of a class).

A vote is never deleted or edited. When an annotator changes an answer, the new answer is stored as a new
vote (its own remote id) and the old one points to it through ``superseded_by``; when an annotation is
deleted, its vote is *withdrawn*: ``superseded_by`` points to the vote itself. Only votes with
``superseded_by IS NULL`` count, so a withdrawal can reopen a complete task.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from curate.catalog.db import Database

_CURRENT = "superseded_by IS NULL"


def _chunks(values: list[Any], size: int = 500) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class AnnotationTables(Database):
    def current_votes(self, task_ids: list[int]) -> list[sqlite3.Row]:
        """The votes that count (not superseded, not withdrawn) of these tasks."""
        rows: list[sqlite3.Row] = []
        for chunk in _chunks(list(task_ids)):
            rows += self.query(
                f"SELECT id, task_id, annotator, answer, remote_id, created_at FROM votes "
                f"WHERE {_CURRENT} AND task_id IN ({','.join('?' * len(chunk))}) ORDER BY id",
                chunk,
            )
        return rows

    def tasks_of(self, backend: str, state: str | None = None) -> list[sqlite3.Row]:
        """A backend's published tasks (optionally in one state) with their current vote count."""
        where = "AND t.state = ? " if state else ""
        return self.query(
            f"SELECT t.*, (SELECT COUNT(*) FROM votes v WHERE v.task_id = t.id AND v.{_CURRENT}) AS n_votes "
            f"FROM tasks t WHERE t.backend = ? AND t.remote_id IS NOT NULL {where}ORDER BY t.id",
            (backend, state) if state else (backend,),
        )

    def revise_votes(self, revisions: list[tuple[str, dict[str, Any]]], withdrawn: list[str]) -> tuple[int, int]:
        """Store changed answers and withdraw deleted ones, in one transaction; then reopen tasks that lack
        votes now and close those that have them all. ``revisions`` pairs the remote id of the vote that
        counts now with the row of its replacement (a new remote id); returns (revised, withdrawn)."""
        revised = removed = 0
        with self.transaction() as db:
            for old_remote, row in revisions:
                old = db.execute(f"SELECT id FROM votes WHERE remote_id = ? AND {_CURRENT}", (old_remote,)).fetchone()
                cursor = db.execute(
                    "INSERT OR IGNORE INTO votes (task_id, annotator, answer, remote_id, created_at) "
                    "VALUES (:task_id, :annotator, :answer, :remote_id, :created_at)",
                    row,
                )
                if old is None or not cursor.rowcount:
                    continue
                db.execute("UPDATE votes SET superseded_by = ? WHERE id = ?", (cursor.lastrowid, old["id"]))
                revised += 1
            for remote_id in withdrawn:
                removed += db.execute(
                    f"UPDATE votes SET superseded_by = id WHERE remote_id = ? AND {_CURRENT}", (remote_id,)
                ).rowcount
            count = f"(SELECT COUNT(*) FROM votes v WHERE v.task_id = tasks.id AND v.{_CURRENT})"
            db.execute(f"UPDATE tasks SET state = 'open' WHERE state = 'complete' AND votes_wanted > {count}")
            db.execute(f"UPDATE tasks SET state = 'complete' WHERE state = 'open' AND votes_wanted <= {count}")
        return revised, removed

    def image_paths(self, sha256s: list[str]) -> dict[str, str]:
        """sha256 -> the stored image's path (relative to the run directory)."""
        paths: dict[str, str] = {}
        for chunk in _chunks(sorted(set(sha256s))):
            for row in self.query(f"SELECT sha256, path FROM images WHERE sha256 IN ({','.join('?' * len(chunk))})",
                                  chunk):
                paths[row["sha256"]] = row["path"]
        return paths

    def class_examples(self, wnid: str, n: int, min_p_true: float, min_votes: int) -> list[tuple[str, str]]:
        """Up to ``n`` (sha256, path) images known to show the class, never a mere candidate: a gold "yes"
        first, then images the crowd accepted with high agreement (``p_true >= min_p_true`` from at least
        ``min_votes`` votes), highest agreement first. An image with a gold "no", or whose decision is not
        keep (dropped, relabelled, or waiting for review), is never one."""
        if n <= 0:
            return []
        rows = self.query(
            "SELECT sha256, path FROM ("
            "  SELECT g.sha256, 0 AS tier, 0.0 AS score FROM gold g WHERE g.wnid = ?1 AND g.answer = 'yes'"
            "  UNION ALL"
            "  SELECT l.sha256, 1 AS tier, -l.p_true AS score FROM labels l WHERE l.wnid = ?1"
            "  AND l.accepted = 1 AND l.p_true >= ?2 AND l.n_votes >= ?3"
            ") e JOIN images i USING (sha256)"
            " WHERE NOT EXISTS (SELECT 1 FROM gold g WHERE g.sha256 = e.sha256 AND g.wnid = ?1 AND g.answer = 'no')"
            " AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.sha256 = e.sha256 AND d.wnid = ?1"
            "   AND d.action != 'keep')"
            " ORDER BY tier, score, sha256",
            (wnid, min_p_true, min_votes),
        )
        seen: dict[str, str] = {}
        for row in rows:
            seen.setdefault(row["sha256"], row["path"])
            if len(seen) >= n:
                break
        return list(seen.items())
