"""PostgreSQL behind the :class:`~central.store.db.Database` seam (psycopg 3): a first cut.

What it does: one connection per thread that uses it (the server runs the store on two
worker threads, one for uploads; a thread's calls are serialised), rows as dicts, the domain
SQL's ``?`` placeholders rewritten to psycopg's ``%s``, the schema version in a
one-row table, and the schema of :data:`central.store.schema.POSTGRES_STEPS`.

Locks (docs/central-store.md, "Concurrency"), so the store's read-then-write rules hold
with several central processes on one database at ``READ COMMITTED``:

* a default :meth:`~PostgresDatabase.transaction` first takes **the rules lock**, one
  transaction-level advisory lock (``pg_advisory_xact_lock``): admin changes, enrollment,
  key rotation, the operator journal's chain, and every append to ``changes`` (the deltas
  cursor) are serialised as SQLite's ``BEGIN IMMEDIATE`` serialises them;
* ``transaction(rules_lock=False)`` takes none: device traffic (an upload without
  claims, a heartbeat) locks the device row with ``SELECT ... FOR UPDATE``; the
  connection it yields refuses an append to ``changes`` (:func:`~central.store.db.rules_locked`);
* :meth:`~PostgresDatabase.read` is ``REPEATABLE READ READ ONLY``: one snapshot, no lock.

``portier-central serve --db postgresql://...`` opens it
(:func:`central.store.store.open_database`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..settings import redact_url
from .db import Connection, Cursor, Database, Step
from .schema import POSTGRES_STEPS

__all__ = ["PostgresDatabase"]

#: The rules lock's advisory key (any constant: "portier" in ASCII; the one global lock's key
#: before). Centrals from before the per-row locks lock no device row: do not run them on one
#: database beside these (stop them all, then start the new ones).
_RULES_LOCK = 0x706F7274696572


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """Rewrite ``?`` placeholders to ``%s`` (the domain SQL holds no ``%`` or ``?`` literal)."""
    if "%" in sql:
        raise ValueError(f"SQL for the store must not contain '%': {sql!r}")
    return sql.replace("?", "%s")


class _PgConnection:
    """The :class:`~central.store.db.Connection` the domain code sees, over psycopg."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]], *, rules_locked: bool) -> None:
        self._conn = conn
        #: Whether the transaction holds the rules lock (:func:`.db.rules_locked`).
        self.rules_locked = rules_locked

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self._conn.execute(_pg_sql(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self._conn.cursor()
        rows = [tuple(row) for row in parameters]
        if rows:
            cursor.executemany(_pg_sql(sql), rows)
        return cursor


class PostgresDatabase(Database):
    """The central's PostgreSQL database at *url* (``postgresql://...``, a libpq URL).

    Raises:
        ConnectionError: the server cannot be reached or refuses the login (one line,
            the URL without its password).
    """

    dialect = "postgresql"
    integrity_errors: tuple[type[Exception], ...] = (psycopg.IntegrityError,)
    migrations: Mapping[int, Sequence[Step]] = POSTGRES_STEPS
    for_update = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        self._url = url
        self._local = threading.local()
        self._guard = threading.Lock()
        self._opened: list[psycopg.Connection[dict[str, Any]]] = []
        #: The connection of the thread that opened the database (tests run SQL on it).
        self.conn: psycopg.Connection[dict[str, Any]] | None = self._connect()
        self._local.conn = self.conn

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        try:
            conn = psycopg.connect(self._url, autocommit=True, row_factory=dict_row)
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise ConnectionError(
                f"cannot connect to PostgreSQL at {redact_url(self._url)}: {reason}"
            ) from None
        with self._guard:
            self._opened.append(conn)
        return conn

    def _open(self) -> psycopg.Connection[dict[str, Any]]:
        """Return this thread's connection, connecting on its first use."""
        if self.conn is None:
            raise RuntimeError("CentralStore is closed")
        conn: psycopg.Connection[dict[str, Any]] | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def transaction(self, *, rules_lock: bool = True) -> Iterator[Connection]:
        conn = self._open()
        with conn.transaction():
            if rules_lock:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_RULES_LOCK,))
            yield _PgConnection(conn, rules_locked=rules_lock)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        conn = self._open()
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield _PgConnection(conn, rules_locked=False)
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def schema_version(self) -> int:
        conn = self._open()
        # A scan of pg_tables, not to_regclass(): a name lookup may answer from this
        # backend's catalog cache, which does not yet see a table another process
        # created and committed while this one waited for the migration's lock.
        found = conn.execute(
            "SELECT 1 AS t FROM pg_catalog.pg_tables "
            "WHERE schemaname = current_schema() AND tablename = 'schema_version'"
        ).fetchone()
        if found is None:
            return 0
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        return 0 if row is None else int(row["version"])

    def set_schema_version(self, conn: Connection, version: int) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (int(version),))

    def close(self) -> None:
        """Close every thread's connection (none may be in use); idempotent."""
        if self.conn is None:
            return
        self.conn = None
        with self._guard:
            opened, self._opened = self._opened, []
        for conn in opened:
            with contextlib.suppress(psycopg.Error):
                conn.close()
