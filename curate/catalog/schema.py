"""The catalog's schema as ordered migrations: version N is reached by applying steps 1..N in order.

A new catalog runs every step; one written by an older curate runs only the steps it lacks, in place
(after a backup copy), and one written by a newer curate is refused. Never edit a released step: add
a new one at the end and bump nothing else (``SCHEMA_VERSION`` is the last step's number).
"""

from __future__ import annotations

# Version 1: the first released schema.
V1 = """
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

# Version 2: a stage can end 'waiting' (a crowd still owes votes); open tasks are looked up by backend.
# SQLite cannot alter a CHECK constraint, so stage_runs is rebuilt with its rows.
V2 = """
CREATE TABLE stage_runs_v2 (
    id INTEGER PRIMARY KEY, stage TEXT NOT NULL, fingerprint TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'waiting', 'failed', 'interrupted')),
    stats TEXT
);
INSERT INTO stage_runs_v2 (id, stage, fingerprint, started_at, finished_at, status, stats)
    SELECT id, stage, fingerprint, started_at, finished_at, status, stats FROM stage_runs;
DROP TABLE stage_runs;
ALTER TABLE stage_runs_v2 RENAME TO stage_runs;
CREATE INDEX IF NOT EXISTS tasks_backend_state ON tasks(backend, state);
"""

# Version 3: gold answers (known positives and negatives that score annotators) and each vote's time on task.
V3 = """
CREATE TABLE IF NOT EXISTS gold (
    sha256 TEXT NOT NULL REFERENCES images(sha256), wnid TEXT NOT NULL REFERENCES synsets(wnid),
    answer TEXT NOT NULL CHECK (answer IN ('yes', 'no')), source TEXT NOT NULL, PRIMARY KEY (sha256, wnid)
);
ALTER TABLE votes ADD COLUMN lead_time_s REAL;
"""

# Version 4: what was decided about each issue (policy or review) and why; export applies it. Review-round
# tasks live in ``tasks`` beside the first rounds, under their own queue name ("<backend>/review", see
# :func:`curate.catalog.decisions.review_queue`), so their votes never mix with the first rounds'.
V4 = """
CREATE TABLE IF NOT EXISTS decisions (
    sha256 TEXT NOT NULL REFERENCES images(sha256), wnid TEXT NOT NULL REFERENCES synsets(wnid),
    kind TEXT NOT NULL, action TEXT NOT NULL CHECK (action IN ('keep', 'drop', 'relabel', 'review')),
    new_wnid TEXT REFERENCES synsets(wnid), reason TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('policy', 'review')), decided_at REAL NOT NULL,
    PRIMARY KEY (sha256, wnid), CHECK ((action = 'relabel') = (new_wnid IS NOT NULL))
);
"""

MIGRATIONS: list[tuple[int, str]] = [(1, V1), (2, V2), (3, V3), (4, V4)]
SCHEMA_VERSION = MIGRATIONS[-1][0]
