"""Catalog nouns of the outcome: labels (the aggregate of the votes), embeddings and issues."""

from __future__ import annotations

import sqlite3
from typing import Any

from curate.catalog.db import Database


class LabelTables(Database):
    def replace_labels(self, method: str, rows: list[dict[str, Any]]) -> int:
        """The current aggregation (the table holds no other); returns how many (image, class) labels
        changed: accepted or rejected otherwise than before, new, or gone."""
        with self.transaction() as db:
            before = {(r[0], r[1]): r[2] for r in db.execute("SELECT sha256, wnid, accepted FROM labels")}
            db.execute("DELETE FROM labels")
            db.executemany(
                "INSERT INTO labels (sha256, wnid, method, p_true, accepted, n_votes) "
                "VALUES (:sha256, :wnid, :method, :p_true, :accepted, :n_votes)",
                rows,
            )
        after = {(r["sha256"], r["wnid"]): int(r["accepted"]) for r in rows}
        return sum(before.get(key) != accepted for key, accepted in after.items()) + len(before.keys() - after)

    def final_labels(self) -> list[sqlite3.Row]:
        """One class per accepted picture, ``rank`` 1; a picture (an image, or near-identical images tied by
        ``images.dup_of``) the crowd accepted for several classes keeps the class with the highest agreement
        (ties: lowest wnid) and its other rows get rank > 1."""
        return self.query(
            "SELECT * FROM (SELECT l.sha256, l.wnid, l.p_true, l.n_votes, i.path, ROW_NUMBER() OVER "
            "(PARTITION BY COALESCE(i.dup_of, l.sha256) ORDER BY l.p_true DESC, l.wnid, l.sha256) AS rank "
            "FROM labels l JOIN images i USING (sha256) WHERE l.accepted = 1) ORDER BY rank, sha256"
        )

    # ------------------------------------------------------------------ embeddings
    def embeddings(self, backbone: str, sha256s: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(sha256s), 500):
            chunk = sha256s[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.query(
                f"SELECT sha256, vector FROM embeddings WHERE backbone = ? AND sha256 IN ({marks})", [backbone, *chunk]
            ):
                found[row["sha256"]] = row["vector"]
        return found

    def add_embeddings(self, backbone: str, dim: int, vectors: dict[str, bytes]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO embeddings (sha256, backbone, dim, vector) VALUES (?, ?, ?, ?)",
                [(sha, backbone, dim, blob) for sha, blob in vectors.items()],
            )

    # ------------------------------------------------------------------ issues
    def replace_issues(self, kinds: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        with self.transaction() as db:
            db.execute(f"DELETE FROM issues WHERE kind IN ({','.join('?' * len(kinds))})", kinds)
            db.executemany(
                "INSERT INTO issues (sha256, wnid, kind, score, suggested_wnid, detail) "
                "VALUES (:sha256, :wnid, :kind, :score, :suggested_wnid, :detail)",
                rows,
            )

    def issue_shas(self, kind: str) -> set[str]:
        return {r[0] for r in self.query("SELECT sha256 FROM issues WHERE kind = ?", (kind,))}

    def count_issues(self, kind: str) -> int:
        return self.scalar("SELECT COUNT(*) FROM issues WHERE kind = ?", (kind,))
