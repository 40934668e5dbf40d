"""The catalog's connection: SQLite with WAL, foreign keys, batched transactions and migrations.

Reads/writes: one SQLite file. Opening applies the missing migrations of :mod:`.schema` in order
(after copying the file to ``<name>.v<old>.bak``); a catalog from a newer curate, or a file that is
not a catalog, raises :class:`CatalogError` (exit 2) with what to do. Opened read-only, it writes nothing
and creates no file beside the catalog.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from curate.catalog.schema import MIGRATIONS, SCHEMA_VERSION
from curate.errors import CurateError

log = logging.getLogger(__name__)


class CatalogError(CurateError):
    exit_code = 2


class Database:
    """One SQLite connection, used from one thread (the driver)."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.db = self._connect()
        self.version = self._user_version()
        if self.version > SCHEMA_VERSION:
            self.db.close()
            raise CatalogError(
                f"catalog {self.path} has schema version {self.version}, newer than this curate knows "
                f"({SCHEMA_VERSION}): it was written by a newer curate; upgrade curate to use it"
            )
        if not readonly:
            self._migrate()

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                db = sqlite3.connect(self._readonly_uri(), uri=True, isolation_level=None, timeout=30)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open catalog {self.path}: {exc}") from None
        try:
            db.execute("PRAGMA user_version").fetchone()  # reads the header: fails on a file that is not SQLite
            if not self.readonly:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise CatalogError(f"{self.path} is not a curate catalog: {exc}") from None
        db.row_factory = sqlite3.Row
        return db

    def _readonly_uri(self) -> str:
        """``mode=ro``; where no ``-wal`` file lies beside the catalog (no connection has it open: no run is going
        on) also ``immutable=1``, as a read-only connection would otherwise create ``-wal`` and ``-shm`` files
        and leave them in a run directory it was only meant to read."""
        wal = self.path.with_name(f"{self.path.name}-wal")
        return self.path.resolve().as_uri() + ("?mode=ro" if wal.exists() else "?mode=ro&immutable=1")

    def _user_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        pending = [(v, sql) for v, sql in MIGRATIONS if v > self.version]
        if pending and self.version > 0:
            self._backup(self.path.with_name(f"{self.path.name}.v{self.version}.bak"))
        for version, sql in pending:
            try:
                self.db.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={version};\nCOMMIT;")
            except sqlite3.Error as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise CatalogError(f"cannot upgrade catalog {self.path} to schema {version}: {exc}") from None
        if pending and self.version > 0:
            log.info("catalog %s upgraded from schema %d to %d", self.path, self.version, SCHEMA_VERSION)
        self.version = SCHEMA_VERSION if pending else self.version

    def _backup(self, target: Path) -> None:
        with sqlite3.connect(target) as copy:
            self.db.backup(copy)
        copy.close()

    def close(self) -> None:
        self.db.close()

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
