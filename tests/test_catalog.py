"""The catalog: upgrading older catalogs in place, refusing newer or foreign files, and the crowd-task queries."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from conftest import CAT, DOG, pipeline_dict, write_pipeline

from curate.catalog import SCHEMA_VERSION, Catalog, CatalogError
from curate.catalog.schema import MIGRATIONS
from curate.cli import main

BACKEND = "simulated"


def connect(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(path))


def user_version(path: Path) -> int:
    with connect(path) as con:
        return con.execute("PRAGMA user_version").fetchone()[0]


def write_v1_catalog(path: Path) -> None:
    """A catalog as the first released curate left it: schema V1 with a synset, a finished stage and a candidate."""
    version, script = MIGRATIONS[0]
    assert version == 1
    con = sqlite3.connect(path)
    con.executescript(script)
    con.execute("PRAGMA user_version=1")
    con.execute("INSERT INTO synsets (wnid, name, lemmas, gloss, depth, hypernym_wnid, lexname) "
                "VALUES (?, 'dog.n.01', 'dog, domestic dog', 'a member of the genus Canis', 13, NULL, 'noun.animal')",
                (DOG,))
    con.execute("INSERT INTO stage_runs (stage, fingerprint, started_at, finished_at, status, stats) "
                "VALUES ('synsets', 'fp-synsets', 1.0, 2.0, 'ok', '{\"synsets\": 1}')")
    con.execute("INSERT INTO candidates (wnid, source, url, title) VALUES (?, 'local', 'file:///a.jpg', 'a dog')",
                (DOG,))
    con.commit()
    con.close()


@pytest.fixture
def newer_catalog(tmp_path: Path) -> Path:
    """A run directory whose catalog was written by a curate one schema version ahead."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    catalog = Catalog(run_dir / "catalog.sqlite")
    catalog.db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    catalog.close()
    return run_dir


# ---------------------------------------------------------------- versions
def test_new_catalog_gets_the_current_schema(tmp_path: Path):
    path = tmp_path / "catalog.sqlite"
    catalog = Catalog(path)
    assert catalog.version == SCHEMA_VERSION
    catalog.close()
    assert user_version(path) == SCHEMA_VERSION
    assert not list(tmp_path.glob("*.bak"))  # nothing to back up for a fresh catalog


def test_v1_catalog_is_upgraded_in_place_keeping_its_rows(tmp_path: Path):
    path = tmp_path / "catalog.sqlite"
    write_v1_catalog(path)
    with pytest.raises(sqlite3.IntegrityError), connect(path) as con:  # V1 cannot record a waiting stage
        con.execute("INSERT INTO stage_runs (stage, fingerprint, started_at, status) VALUES ('x', 'f', 0, 'waiting')")

    catalog = Catalog(path)
    try:
        assert catalog.version == SCHEMA_VERSION
        assert [r["wnid"] for r in catalog.synsets()] == [DOG]
        assert catalog.synset_words() == {DOG: "dog"}
        assert catalog.count_candidates(DOG) == 1 and catalog.pending_candidates()[0]["url"] == "file:///a.jpg"
        assert catalog.last_ok_fingerprint("synsets") == "fp-synsets"
        assert catalog.stage_stats() == {"synsets": {"synsets": 1}}

        run_id = catalog.start_stage("annotate", "fp-annotate")
        catalog.finish_stage(run_id, "waiting", {})
        summary = {r["stage"]: r["status"] for r in catalog.stage_summary()}
        assert summary == {"synsets": "ok", "annotate": "waiting"}
    finally:
        catalog.close()
    assert user_version(path) == SCHEMA_VERSION

    backup = tmp_path / "catalog.sqlite.v1.bak"
    assert backup.is_file()
    with connect(backup) as con:  # the backup is the catalog as it was before the upgrade
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
        assert con.execute("SELECT wnid FROM synsets").fetchall() == [(DOG,)]
        assert con.execute("SELECT stage, status FROM stage_runs").fetchall() == [("synsets", "ok")]


def test_upgraded_catalog_is_not_upgraded_again(tmp_path: Path):
    path = tmp_path / "catalog.sqlite"
    write_v1_catalog(path)
    Catalog(path).close()
    backup = tmp_path / "catalog.sqlite.v1.bak"
    backup.unlink()
    catalog = Catalog(path)
    catalog.close()
    assert not backup.exists() and catalog.version == SCHEMA_VERSION


def test_readonly_open_does_not_upgrade(tmp_path: Path):
    path = tmp_path / "catalog.sqlite"
    write_v1_catalog(path)
    catalog = Catalog(path, readonly=True)
    try:
        assert catalog.version == 1
        assert [r["wnid"] for r in catalog.synsets()] == [DOG]
    finally:
        catalog.close()
    assert user_version(path) == 1 and not (tmp_path / "catalog.sqlite.v1.bak").exists()


def test_newer_catalog_is_refused(newer_catalog: Path):
    path = newer_catalog / "catalog.sqlite"
    for readonly in (False, True):
        with pytest.raises(CatalogError, match="newer curate; upgrade curate") as excinfo:
            Catalog(path, readonly=readonly)
        assert excinfo.value.exit_code == 2
        assert f"schema version {SCHEMA_VERSION + 1}" in str(excinfo.value)
    assert user_version(path) == SCHEMA_VERSION + 1  # left as it was


def test_cli_status_refuses_newer_catalog(newer_catalog: Path, capsys):
    assert main(["status", str(newer_catalog)]) == 2
    err = capsys.readouterr().err
    assert "newer curate" in err and "upgrade curate" in err
    assert "Traceback" not in err


def test_cli_run_refuses_newer_catalog(newer_catalog: Path, corpus: Path, tmp_path: Path, capsys):
    pipeline = write_pipeline(tmp_path / "pipeline.yaml", pipeline_dict(corpus, newer_catalog))
    assert main(["run", str(pipeline), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "newer curate" in err and "upgrade curate" in err and str(newer_catalog / "catalog.sqlite") in err
    assert "Traceback" not in err
    assert user_version(newer_catalog / "catalog.sqlite") == SCHEMA_VERSION + 1
    with connect(newer_catalog / "catalog.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM stage_runs").fetchone()[0] == 0  # no stage ran


def test_file_that_is_not_sqlite_is_refused(tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    junk = b"these are not the bytes of an SQLite database\n" * 200
    (run_dir / "catalog.sqlite").write_bytes(junk)
    for readonly in (False, True):
        with pytest.raises(CatalogError, match="not a (curate catalog|database)") as excinfo:
            Catalog(run_dir / "catalog.sqlite", readonly=readonly)
        assert excinfo.value.exit_code == 2 and "catalog.sqlite" in str(excinfo.value)
    assert main(["status", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "not a curate catalog" in err and "Traceback" not in err
    assert (run_dir / "catalog.sqlite").read_bytes() == junk  # the refusal leaves the file untouched


# ---------------------------------------------------------------- crowd tasks, as the annotate stage uses them
def sha(n: int) -> str:
    return f"{n:064x}"


def image(n: int) -> dict:
    return {"sha256": sha(n), "path": f"images/{sha(n)[:2]}/{sha(n)}.jpg", "width": 64, "height": 48, "nbytes": 900,
            "mime": "image/jpeg"}


@pytest.fixture
def downloaded(tmp_path: Path) -> Iterator[Catalog]:
    """Three images downloaded for DOG (one of them found twice), one for CAT, one failed download."""
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.upsert_synsets([
        {"wnid": wnid, "name": name, "lemmas": name.split(".")[0], "gloss": "", "depth": 1, "hypernym_wnid": None,
         "lexname": "noun.animal"} for wnid, name in ((DOG, "dog.n.01"), (CAT, "cat.n.01"))
    ])
    assert catalog.add_queries([{"wnid": DOG, "text": "dog", "lang": "en", "kind": "lemma"},
                                {"wnid": CAT, "text": "cat", "lang": "en", "kind": "lemma"}]) == 2
    query = {r["wnid"]: r["id"] for r in catalog.pending_searches("local")}
    hits = {DOG: [f"file:///dog{i}.jpg" for i in range(5)], CAT: ["file:///cat0.jpg"]}
    for wnid, urls in hits.items():
        rows = [{"wnid": wnid, "source": "local", "query_id": query[wnid], "url": url, "page_url": None, "title": url,
                 "license": None, "creator": None, "rank": rank, "true_wnids": wnid} for rank, url in enumerate(urls)]
        assert catalog.add_search_results(query[wnid], "local", rows) == len(urls)
    ids = {r["url"]: r["id"] for r in catalog.pending_candidates()}
    outcomes = [
        {"id": ids["file:///dog0.jpg"], "status": "downloaded", "error": None, "sha256": sha(1), "image": image(1)},
        {"id": ids["file:///dog1.jpg"], "status": "downloaded", "error": None, "sha256": sha(2), "image": image(2)},
        {"id": ids["file:///dog2.jpg"], "status": "downloaded", "error": None, "sha256": sha(3), "image": image(3)},
        {"id": ids["file:///dog3.jpg"], "status": "downloaded", "error": None, "sha256": sha(1), "image": image(1)},
        {"id": ids["file:///dog4.jpg"], "status": "failed", "error": "HTTP 404", "sha256": None, "image": None},
        {"id": ids["file:///cat0.jpg"], "status": "downloaded", "error": None, "sha256": sha(1), "image": image(1)},
    ]
    written = catalog.record_downloads(outcomes)
    assert written == {"downloaded": 4, "duplicate": 1, "failed": 1}
    yield catalog
    catalog.close()


def vote(task_id: int, n: int, answer: str = "yes") -> dict:
    return {"task_id": task_id, "annotator": f"w{n}", "answer": answer, "remote_id": f"{task_id}-{n}",
            "created_at": float(n)}


def test_create_missing_tasks_one_per_image_and_class(downloaded: Catalog):
    assert downloaded.images_without_tasks(BACKEND) == 4
    assert downloaded.create_missing_tasks(BACKEND, 3) == 4  # (1, DOG), (2, DOG), (3, DOG), (1, CAT)
    tasks = downloaded.open_tasks(BACKEND)
    assert sorted((t["sha256"], t["wnid"]) for t in tasks) == sorted(
        [(sha(1), DOG), (sha(2), DOG), (sha(3), DOG), (sha(1), CAT)])
    assert {t["votes_wanted"] for t in tasks} == {3} and {t["n_votes"] for t in tasks} == {0}
    assert downloaded.create_missing_tasks(BACKEND, 3) == 0  # idempotent
    assert downloaded.images_without_tasks(BACKEND) == 0
    assert downloaded.create_missing_tasks("other", 1) == 4  # tasks are per backend
    assert len(downloaded.open_tasks(BACKEND)) == 4


def test_missing_votes_and_open_tasks_count_current_votes(downloaded: Catalog):
    downloaded.create_missing_tasks(BACKEND, 3)
    assert downloaded.missing_votes(BACKEND) == 12
    first, second = downloaded.open_tasks(BACKEND)[:2]
    assert downloaded.add_votes([vote(first["id"], 1), vote(first["id"], 2), vote(second["id"], 1)]) == 3
    assert downloaded.add_votes([vote(first["id"], 1)]) == 0  # a remote id seen before is not stored twice
    n_votes = {t["id"]: t["n_votes"] for t in downloaded.open_tasks(BACKEND)}
    assert n_votes[first["id"]] == 2 and n_votes[second["id"]] == 1
    assert downloaded.missing_votes(BACKEND) == 12 - 3

    downloaded.add_votes([vote(first["id"], 3, "no")])  # the third vote completes the task
    assert first["id"] not in {t["id"] for t in downloaded.open_tasks(BACKEND)}
    assert downloaded.missing_votes(BACKEND) == 12 - 4
    assert downloaded.missing_votes("other") == 0


def test_raise_votes_wanted_reopens_only_tasks_wanting_fewer(downloaded: Catalog):
    downloaded.create_missing_tasks(BACKEND, 3)
    tasks = downloaded.open_tasks(BACKEND)
    complete = tasks[0]["id"]
    downloaded.add_votes([vote(complete, n) for n in range(3)])
    assert len(downloaded.open_tasks(BACKEND)) == 3

    assert downloaded.raise_votes_wanted(BACKEND, 3) == 0  # same count: nothing changes
    assert downloaded.raise_votes_wanted(BACKEND, 2) == 0  # lowering never happens
    assert complete not in {t["id"] for t in downloaded.open_tasks(BACKEND)}
    assert {t["votes_wanted"] for t in downloaded.open_tasks(BACKEND)} == {3}

    assert downloaded.raise_votes_wanted(BACKEND, 5) == 4
    reopened = {t["id"]: t for t in downloaded.open_tasks(BACKEND)}
    assert complete in reopened and reopened[complete]["n_votes"] == 3  # the paid votes are kept
    assert {t["votes_wanted"] for t in reopened.values()} == {5}
    assert downloaded.missing_votes(BACKEND) == 4 * 5 - 3

    downloaded.create_missing_tasks("other", 1)
    assert downloaded.raise_votes_wanted("other", 2) == 4
    assert {t["votes_wanted"] for t in downloaded.open_tasks(BACKEND)} == {5}  # another backend's tasks untouched


def test_record_downloads_marks_in_class_duplicates(downloaded: Catalog):
    assert downloaded.candidate_status_counts() == {"downloaded": 4, "duplicate": 1, "failed": 1}
    assert downloaded.image_path(sha(1)) == image(1)["path"]
    assert downloaded.scalar("SELECT COUNT(*) FROM images") == 3  # the image seen three times is stored once
    assert not downloaded.has_pending_candidates()
    assert downloaded.pending_searches("local") == []
