"""Catalog nouns of collection: synsets, queries, searches, candidates and images."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from typing import Any

from curate.catalog.db import Database


class CollectionTables(Database):
    # ------------------------------------------------------------------ synsets, queries
    def upsert_synsets(self, rows: list[dict[str, Any]]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO synsets (wnid, name, lemmas, gloss, depth, hypernym_wnid, lexname) "
                "VALUES (:wnid, :name, :lemmas, :gloss, :depth, :hypernym_wnid, :lexname) "
                "ON CONFLICT(wnid) DO UPDATE SET name=excluded.name, lemmas=excluded.lemmas, gloss=excluded.gloss, "
                "depth=excluded.depth, hypernym_wnid=excluded.hypernym_wnid, lexname=excluded.lexname",
                rows,
            )

    def add_queries(self, rows: list[dict[str, Any]]) -> int:
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO queries (wnid, text, lang, kind) VALUES (:wnid, :text, :lang, :kind)", rows
            )
            return db.total_changes - before

    def synsets(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM synsets ORDER BY wnid")

    def synset_words(self) -> dict[str, str]:
        """wnid -> first lemma (the class's human name)."""
        return {r["wnid"]: r["lemmas"].split(", ")[0] for r in self.synsets()}

    def pending_searches(self, source: str) -> list[sqlite3.Row]:
        return self.query(
            "SELECT q.* FROM queries q WHERE NOT EXISTS "
            "(SELECT 1 FROM searches s WHERE s.query_id = q.id AND s.source = ?) ORDER BY q.wnid, q.id",
            (source,),
        )

    # ------------------------------------------------------------------ candidates, images
    def add_search_results(self, query_id: int, source: str, rows: list[dict[str, Any]]) -> int:
        """Store one query's results and mark the search done, atomically (resume never repeats it)."""
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO candidates (wnid, source, query_id, url, page_url, title, license, creator, "
                "rank, true_wnids) VALUES (:wnid, :source, :query_id, :url, :page_url, :title, :license, :creator, "
                ":rank, :true_wnids)",
                rows,
            )
            added = db.total_changes - before
            db.execute(
                "INSERT OR REPLACE INTO searches (query_id, source, n_results, finished_at) VALUES (?, ?, ?, ?)",
                (query_id, source, len(rows), time.time()),
            )
            return added

    def count_candidates(self, wnid: str, source: str | None = None) -> int:
        if source is None:
            return self.scalar("SELECT COUNT(*) FROM candidates WHERE wnid = ?", (wnid,))
        return self.scalar("SELECT COUNT(*) FROM candidates WHERE wnid = ? AND source = ?", (wnid, source))

    def pending_candidates(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM candidates WHERE status = 'pending' ORDER BY id")

    def has_pending_candidates(self) -> bool:
        return self.scalar("SELECT EXISTS (SELECT 1 FROM candidates WHERE status = 'pending')") == 1

    def record_downloads(self, outcomes: list[dict[str, Any]]) -> Counter[str]:
        """Outcomes: {id, status, error, sha256, image: dict|None}. Images are inserted once (by sha256).
        Of the candidates that fetched the same bytes for one class, the lowest id is 'downloaded' and the
        others 'duplicate', whatever order they arrive in: a candidate already recorded as 'downloaded' becomes
        'duplicate' when one with a lower id brings its bytes (provenance, licence and creator come from the
        'downloaded' one, and identical runs must agree). Returns the statuses this batch changed, net.
        One transaction and a few set-wise statements per batch: the driver writes while workers download."""
        if not outcomes:
            return Counter()
        with self.transaction() as db:
            images = [{"phash": None, **o["image"]} for o in outcomes if o.get("image")]
            db.executemany(
                "INSERT INTO images (sha256, path, width, height, nbytes, mime, phash) "
                "VALUES (:sha256, :path, :width, :height, :nbytes, :mime, :phash) "
                "ON CONFLICT(sha256) DO UPDATE SET phash = COALESCE(images.phash, excluded.phash)",
                images,
            )
            statuses, demoted = self._statuses(db, outcomes)
            db.executemany("UPDATE candidates SET status = 'duplicate' WHERE id = ?", [(i,) for i in demoted])
            db.executemany(
                "UPDATE candidates SET status = ?, error = ?, sha256 = ? WHERE id = ?",
                [(statuses[o["id"]], o.get("error"), o.get("sha256"), o["id"]) for o in outcomes],
            )
        return Counter(statuses.values()) + Counter(duplicate=len(demoted)) - Counter(downloaded=len(demoted))

    @staticmethod
    def _statuses(db: sqlite3.Connection, outcomes: list[dict[str, Any]]) -> tuple[dict[int, str], list[int]]:
        """Each outcome's status, a download of bytes its class already has turned into 'duplicate' unless its
        id is lower than the recorded one's; and the recorded candidates that thus become 'duplicate'."""
        ids = [o["id"] for o in outcomes]
        shas = sorted({o["sha256"] for o in outcomes if o["status"] == "downloaded"})
        wnid_of = dict(_in(db, "SELECT id, wnid FROM candidates WHERE id IN ({})", ids))
        holder = {(wnid, sha): candidate_id for candidate_id, wnid, sha in _in(
            db, "SELECT id, wnid, sha256 FROM candidates WHERE status = 'downloaded' AND sha256 IN ({})", shas)}
        statuses, demoted = {}, []
        for out in sorted(outcomes, key=lambda o: o["id"]):  # within a batch the lowest id comes first
            status, key = out["status"], (wnid_of.get(out["id"]), out.get("sha256"))
            if status == "downloaded" and key in holder and holder[key] < out["id"]:
                status = "duplicate"
            elif status == "downloaded":
                if holder.get(key, out["id"]) != out["id"]:
                    demoted.append(holder[key])
                holder[key] = out["id"]
            statuses[out["id"]] = status
        return statuses, demoted

    def image_path(self, sha256: str) -> str:
        return self.scalar("SELECT path FROM images WHERE sha256 = ?", (sha256,))

    def truth_table(self) -> dict[str, set[str]]:
        """sha256 -> true wnids, from the candidates whose corpus carries ground truth."""
        truth: dict[str, set[str]] = {}
        sql = "SELECT sha256, true_wnids FROM candidates WHERE sha256 IS NOT NULL AND true_wnids IS NOT NULL"
        for row in self.query(sql):
            truth.setdefault(row["sha256"], set()).update(row["true_wnids"].split())
        return truth

    def provenance(self) -> list[sqlite3.Row]:
        """The first candidate (by id) that brought each (image, class): source, URL, licence, creator."""
        return self.query(
            "SELECT sha256, wnid, source, url, page_url, title, license, creator FROM candidates "
            "WHERE id IN (SELECT MIN(id) FROM candidates WHERE status = 'downloaded' GROUP BY sha256, wnid)"
        )

    def collection_order(self) -> dict[str, int]:
        """sha256 -> the id of the first candidate that downloaded it (the order images were collected in)."""
        return {r[0]: r[1] for r in self.query(
            "SELECT sha256, MIN(id) FROM candidates WHERE status = 'downloaded' GROUP BY sha256")}

    def candidate_status_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.query("SELECT status, COUNT(*) FROM candidates GROUP BY status")}

    def add_images(self, rows: list[dict[str, Any]]) -> None:
        """Images stored by other means than a download (audits of existing datasets, tests)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO images (sha256, path, width, height, nbytes, mime) "
                "VALUES (:sha256, :path, :width, :height, :nbytes, :mime)",
                rows,
            )

    def all_candidates(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM candidates ORDER BY id")

    def image_phashes(self) -> dict[str, str]:
        """sha256 -> perceptual hash of the images some candidate downloaded, in sha256 order."""
        return {r[0]: r[1] for r in self.query(
            "SELECT DISTINCT i.sha256, i.phash FROM images i JOIN candidates c ON c.sha256 = i.sha256 "
            "WHERE c.status = 'downloaded' AND i.phash IS NOT NULL ORDER BY i.sha256"
        )}

    def mark_near_duplicates(self, representative: dict[str, str]) -> int:
        """Apply near-duplicate groups (sha256 -> its group's first sha256, for the members of groups only):
        ``images.dup_of`` ties the pictures together, and within one class every downloaded candidate but
        the first (lowest id) of a group becomes ``duplicate``. Returns the candidates marked now."""
        with self.transaction() as db:
            db.execute("UPDATE images SET dup_of = NULL WHERE dup_of IS NOT NULL")
            db.executemany("UPDATE images SET dup_of = ? WHERE sha256 = ?",
                           [(rep, sha) for sha, rep in representative.items() if rep != sha])
            rows = _in(db, "SELECT id, wnid, sha256 FROM candidates WHERE status = 'downloaded' AND sha256 IN ({}) "
                           "ORDER BY id", sorted(representative))
            first: dict[tuple[str, str], str] = {}
            marks = []
            for candidate_id, wnid, sha in rows:
                kept = first.setdefault((wnid, representative[sha]), sha)
                if kept != sha:
                    marks.append((f"near duplicate of {kept[:12]} in the same class", candidate_id))
            db.executemany("UPDATE candidates SET status = 'duplicate', error = ? WHERE id = ?", marks)
            return len(marks)

    def count_near_duplicates(self) -> int:
        """Candidates set aside as near duplicates of another picture of their class (all runs together)."""
        return self.scalar("SELECT COUNT(*) FROM candidates "
                           "WHERE status = 'duplicate' AND error LIKE 'near duplicate of %'")


def _in(db: sqlite3.Connection, sql: str, values: list[Any], chunk: int = 500) -> list[tuple]:
    """Rows of ``sql`` whose ``IN ({})`` takes ``values``, asked in chunks under SQLite's variable limit."""
    rows: list[tuple] = []
    for start in range(0, len(values), chunk):
        part = values[start : start + chunk]
        rows += [tuple(r) for r in db.execute(sql.format(",".join("?" * len(part))), part)]
    return rows
