"""The run's catalog: one SQLite file holding every item's state, and the queries stages need.

Reads/writes: ``<run_dir>/catalog.sqlite`` (WAL journal, foreign keys on, schema version in
``PRAGMA user_version``). Stages write in batches inside transactions (:meth:`Catalog.transaction`),
so a crash loses at most the batch in flight and a re-run picks up pending rows. Votes are never
deleted. On a newer schema than this code knows, opening fails with a clear error.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from curate.errors import CurateError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS synsets (
    wnid TEXT PRIMARY KEY, name TEXT NOT NULL, lemmas TEXT NOT NULL, gloss TEXT NOT NULL,
    depth INTEGER NOT NULL, hypernym_wnid TEXT, lexname TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY, wnid TEXT NOT NULL REFERENCES synsets(wnid), text TEXT NOT NULL,
    lang TEXT NOT NULL DEFAULT 'en', kind TEXT NOT NULL, UNIQUE (wnid, text, lang)
);
CREATE TABLE IF NOT EXISTS searches (
    query_id INTEGER NOT NULL REFERENCES queries(id), source TEXT NOT NULL, n_results INTEGER NOT NULL,
    finished_at REAL NOT NULL, PRIMARY KEY (query_id, source)
);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY, wnid TEXT NOT NULL REFERENCES synsets(wnid), source TEXT NOT NULL,
    query_id INTEGER REFERENCES queries(id), url TEXT NOT NULL, page_url TEXT, title TEXT,
    license TEXT, creator TEXT, rank INTEGER, true_wnids TEXT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'downloaded', 'duplicate', 'failed', 'rejected')),
    error TEXT, sha256 TEXT REFERENCES images(sha256), UNIQUE (wnid, url)
);
CREATE INDEX IF NOT EXISTS candidates_status ON candidates(status);
CREATE INDEX IF NOT EXISTS candidates_sha256 ON candidates(sha256);
CREATE TABLE IF NOT EXISTS images (
    sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    nbytes INTEGER NOT NULL, mime TEXT NOT NULL, phash TEXT, dup_of TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL REFERENCES images(sha256),
    wnid TEXT NOT NULL REFERENCES synsets(wnid), backend TEXT NOT NULL, remote_id TEXT,
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'complete')),
    votes_wanted INTEGER NOT NULL, is_gold INTEGER NOT NULL DEFAULT 0, UNIQUE (sha256, wnid, backend)
);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES tasks(id), annotator TEXT NOT NULL,
    answer TEXT NOT NULL CHECK (answer IN ('yes', 'no', 'unsure')), remote_id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL, superseded_by INTEGER REFERENCES votes(id)
);
CREATE INDEX IF NOT EXISTS votes_task ON votes(task_id);
CREATE TABLE IF NOT EXISTS labels (
    sha256 TEXT NOT NULL REFERENCES images(sha256), wnid TEXT NOT NULL REFERENCES synsets(wnid),
    method TEXT NOT NULL, p_true REAL NOT NULL, accepted INTEGER NOT NULL, n_votes INTEGER NOT NULL,
    PRIMARY KEY (sha256, wnid, method)
);
CREATE TABLE IF NOT EXISTS embeddings (
    sha256 TEXT NOT NULL REFERENCES images(sha256), backbone TEXT NOT NULL, dim INTEGER NOT NULL,
    vector BLOB NOT NULL, PRIMARY KEY (sha256, backbone)
);
CREATE TABLE IF NOT EXISTS issues (
    id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL REFERENCES images(sha256), wnid TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('label', 'outlier', 'near_duplicate', 'quality', 'cross_class_duplicate')),
    score REAL, suggested_wnid TEXT, detail TEXT
);
CREATE INDEX IF NOT EXISTS issues_kind ON issues(kind, sha256);
CREATE TABLE IF NOT EXISTS stage_runs (
    id INTEGER PRIMARY KEY, stage TEXT NOT NULL, fingerprint TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL, status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'interrupted')),
    stats TEXT
);
"""


class CatalogError(CurateError):
    exit_code = 2


class Catalog:
    """A thin wrapper over one SQLite connection. Use from one thread (the driver)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open catalog {self.path}: {exc}") from None
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"catalog {self.path} has schema version {version}; this curate knows {SCHEMA_VERSION}: upgrade curate"
            )
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, tuple(params)).fetchall()

    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = self.db.execute(sql, tuple(params)).fetchone()
        return None if row is None else row[0]

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

    def count_candidates(self, wnid: str) -> int:
        return self.scalar("SELECT COUNT(*) FROM candidates WHERE wnid = ?", (wnid,))

    def pending_candidates(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM candidates WHERE status = 'pending' ORDER BY id")

    def record_downloads(self, outcomes: list[dict[str, Any]]) -> Counter[str]:
        """Outcomes: {id, status, error, sha256, image: dict|None}. Images are inserted once (by sha256).
        Returns the statuses written (a downloaded image already seen in its class becomes 'duplicate')."""
        written: Counter[str] = Counter()
        with self.transaction() as db:
            for out in outcomes:
                image = out.get("image")
                if image:
                    db.execute(
                        "INSERT OR IGNORE INTO images (sha256, path, width, height, nbytes, mime) "
                        "VALUES (:sha256, :path, :width, :height, :nbytes, :mime)",
                        image,
                    )
                status = out["status"]
                if status == "downloaded" and self._seen_in_class(db, out["sha256"], out["id"]):
                    status = "duplicate"
                db.execute(
                    "UPDATE candidates SET status = ?, error = ?, sha256 = ? WHERE id = ?",
                    (status, out.get("error"), out.get("sha256"), out["id"]),
                )
                written[status] += 1
        return written

    @staticmethod
    def _seen_in_class(db: sqlite3.Connection, sha256: str, candidate_id: int) -> bool:
        return (
            db.execute(
                "SELECT 1 FROM candidates c WHERE c.sha256 = ? AND c.status = 'downloaded' AND c.id != ? "
                "AND c.wnid = (SELECT wnid FROM candidates WHERE id = ?)",
                (sha256, candidate_id, candidate_id),
            ).fetchone()
            is not None
        )

    def image_path(self, sha256: str) -> str:
        return self.scalar("SELECT path FROM images WHERE sha256 = ?", (sha256,))

    # ------------------------------------------------------------------ tasks, votes, labels
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

    def tasks_needing_votes(self, backend: str) -> list[sqlite3.Row]:
        return self.query(
            "SELECT t.*, (SELECT COUNT(*) FROM votes v WHERE v.task_id = t.id AND v.superseded_by IS NULL) AS n_votes "
            "FROM tasks t WHERE t.backend = ? AND t.state = 'open' ORDER BY t.id",
            (backend,),
        )

    def add_votes(self, rows: list[dict[str, Any]]) -> int:
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

    def set_remote_ids(self, remote_ids: dict[int, str]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE tasks SET remote_id = ? WHERE id = ?", [(r, t) for t, r in remote_ids.items()])

    def unpublished_tasks(self, backend: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM tasks WHERE backend = ? AND remote_id IS NULL ORDER BY id", (backend,))

    def truth_table(self) -> dict[str, set[str]]:
        """sha256 -> true wnids, from the candidates whose corpus carries ground truth."""
        truth: dict[str, set[str]] = {}
        sql = "SELECT sha256, true_wnids FROM candidates WHERE sha256 IS NOT NULL AND true_wnids IS NOT NULL"
        for row in self.query(sql):
            truth.setdefault(row["sha256"], set()).update(row["true_wnids"].split())
        return truth

    def images_without_tasks(self, backend: str) -> int:
        return self.scalar(
            "SELECT COUNT(*) FROM (SELECT DISTINCT sha256, wnid FROM candidates c WHERE status = 'downloaded' "
            "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.sha256 = c.sha256 AND t.wnid = c.wnid AND t.backend = ?))",
            (backend,),
        )

    def replace_labels(self, method: str, rows: list[dict[str, Any]]) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM labels")  # the table holds the current aggregation only
            db.executemany(
                "INSERT INTO labels (sha256, wnid, method, p_true, accepted, n_votes) "
                "VALUES (:sha256, :wnid, :method, :p_true, :accepted, :n_votes)",
                rows,
            )

    def final_labels(self) -> list[sqlite3.Row]:
        """One class per accepted image, ``rank`` 1; an image the crowd accepted for several classes
        keeps the class with the highest agreement (ties: lowest wnid) and its other rows get rank > 1."""
        return self.query(
            "SELECT * FROM (SELECT l.sha256, l.wnid, l.p_true, l.n_votes, i.path, ROW_NUMBER() OVER "
            "(PARTITION BY l.sha256 ORDER BY l.p_true DESC, l.wnid) AS rank FROM labels l JOIN images i USING (sha256) "
            "WHERE l.accepted = 1) ORDER BY rank, sha256"
        )

    # ------------------------------------------------------------------ embeddings, issues
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

    # ------------------------------------------------------------------ stage runs
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
        return self.query(
            "SELECT stage, status, fingerprint, started_at, finished_at, stats FROM stage_runs "
            "WHERE id IN (SELECT MAX(id) FROM stage_runs GROUP BY stage)"
        )
