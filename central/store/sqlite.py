"""SQLite behind the :class:`~central.store.db.Database` seam: the embedded default.

One file (``settings.db_path``), WAL mode, ``synchronous=FULL``, foreign keys on; each
transaction is ``BEGIN IMMEDIATE`` ... ``COMMIT``, so writers are serialised by SQLite's
one write lock, and the commit is on disk before the method that made it returns (an
ack the server sends is never ahead of what is on disk). A read is ``BEGIN`` (deferred:
one WAL snapshot, no write lock, so it waits for no writer) with ``PRAGMA query_only``
on, so a write in it fails. The schema version is
``PRAGMA user_version``. Everything SQLite-specific in the central is here and in
:data:`central.store.schema.SQLITE_STEPS`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from .db import Connection, Database, Step
from .schema import SQLITE_STEPS

__all__ = ["SqliteDatabase"]


class SqliteDatabase(Database):
    """The central's SQLite database at *path* (created if missing).

    Raises:
        sqlite3.Error: the database cannot be opened or created.
    """

    dialect = "sqlite"
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
    migrations: Mapping[int, Sequence[Step]] = SQLITE_STEPS

    def __init__(self, path: Path) -> None:
        self.conn: sqlite3.Connection | None = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode = WAL")
        # FULL: an ack is sent only after the commit, so the commit must
        # survive a power cut, not only a crash of this process.
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA foreign_keys = ON")

    def transaction(self, *, rules_lock: bool = True) -> _Transaction:
        # SQLite has one writer at a time: every write transaction holds "the rules lock".
        if self.conn is None:
            raise RuntimeError("CentralStore is closed")
        return _Transaction(self.conn)

    def read(self) -> _ReadTransaction:
        if self.conn is None:
            raise RuntimeError("CentralStore is closed")
        return _ReadTransaction(self.conn)

    def schema_version(self) -> int:
        if self.conn is None:
            raise RuntimeError("CentralStore is closed")
        version: int = self.conn.execute("PRAGMA user_version").fetchone()[0]
        return version

    def set_schema_version(self, conn: Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def close(self) -> None:
        """Checkpoint and close the database; idempotent."""
        if self.conn is None:
            return
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.conn.close()
            self.conn = None


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on any exception)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")


class _ReadTransaction:
    """``BEGIN`` (deferred) ... ``COMMIT`` with ``PRAGMA query_only`` on: one snapshot, no
    write lock, and a write in it fails (``sqlite3.OperationalError``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("PRAGMA query_only = ON")
        try:
            self._conn.execute("BEGIN")
        except BaseException:
            self._conn.execute("PRAGMA query_only = OFF")
            raise
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._conn.execute("PRAGMA query_only = OFF")
