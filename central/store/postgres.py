"""PostgreSQL behind the :class:`~central.store.db.Database` seam (psycopg 3): a first cut.

What it does: one connection (the store is single-threaded), rows as dicts, the domain
SQL's ``?`` placeholders rewritten to psycopg's ``%s``, the schema version in a
one-row table, and the schema of :data:`central.store.schema.POSTGRES_STEPS`.

Writers are serialised as SQLite's ``BEGIN IMMEDIATE`` serialises them: every
transaction first takes one transaction-level advisory lock
(``pg_advisory_xact_lock``), so the store's read-then-write rules hold even with several
central processes on one database (docs/central-store.md, "Concurrency"). That is
correct, and as slow as one writer; finer locks are issue #13's next step.

``portier-central serve --db postgresql://...`` opens it
(:func:`central.store.store.open_database`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..settings import redact_url
from .db import Connection, Cursor, Database, Step
from .schema import POSTGRES_STEPS

__all__ = ["PostgresDatabase"]

#: The advisory lock every transaction takes first (any constant: "portier" in ASCII).
_WRITE_LOCK = 0x706F7274696572


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """Rewrite ``?`` placeholders to ``%s`` (the domain SQL holds no ``%`` or ``?`` literal)."""
    if "%" in sql:
        raise ValueError(f"SQL for the store must not contain '%': {sql!r}")
    return sql.replace("?", "%s")


class _PgConnection:
    """The :class:`~central.store.db.Connection` the domain code sees, over psycopg."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._conn = conn

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

    def __init__(self, url: str) -> None:
        try:
            self.conn: psycopg.Connection[dict[str, Any]] | None = psycopg.connect(
                url, autocommit=True, row_factory=dict_row
            )
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise ConnectionError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {reason}"
            ) from None

    def _open(self) -> psycopg.Connection[dict[str, Any]]:
        if self.conn is None:
            raise RuntimeError("CentralStore is closed")
        return self.conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        conn = self._open()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            yield _PgConnection(conn)

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
        """Close the connection; idempotent."""
        if self.conn is None:
            return
        try:
            self.conn.close()
        finally:
            self.conn = None
