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

Losing the server (a restart, a failover to a promoted replica) does not need a restart
of the central: a transaction that finds its connection gone *before* any of its
statements ran (the usual case: the connection died while idle) reconnects and begins
again, a few times within :data:`RECONNECT_BUDGET_S`; nothing of it had reached the
server, so that is safe for every call. A connection lost *during* a transaction
raises :class:`~central.errors.Unavailable` (HTTP 503; the server rolled the transaction
back, the client may send the request again), and one lost *during its COMMIT* raises it
with ``outcome="unknown"``: it is never retried here, because only the caller knows if
doing it twice is harmless (a device's upload is: idempotent by ``(device_id, seq)``).
The next transaction reconnects. While the server stays down every call answers 503
at once, after one connection attempt (docs/deploying-central.md, "Failover").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..errors import Unavailable
from ..settings import redact_url
from .db import Connection, Cursor, Database, Step
from .schema import POSTGRES_STEPS

__all__ = ["RECONNECT_BUDGET_S", "PostgresDatabase"]

log = logging.getLogger(__name__)

#: The rules lock's advisory key (any constant: "portier" in ASCII; the one global lock's key
#: before). Centrals from before the per-row locks lock no device row: do not run them on one
#: database beside these (stop them all, then start the new ones).
_RULES_LOCK = 0x706F7274696572
#: How long a transaction may spend reconnecting before it answers 503 instead.
RECONNECT_BUDGET_S = 3.0
#: libpq's connect_timeout when the URL sets none (an unreachable host answers no RST).
_CONNECT_TIMEOUT_S = 3
#: What a client is told to wait before it tries again while the database is away.
_RETRY_AFTER_S = 2
#: Errors that mean "this connection is no use any more": lost, or (after a failover
#: to a URL that lists several hosts) landed on a standby that refuses writes.
_LOST = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction)


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
        self._closed = False
        self._local = threading.local()
        self._guard = threading.Lock()
        self._opened: list[psycopg.Connection[dict[str, Any]]] = []
        #: The connection of the thread that opened the database (tests run SQL on it);
        #: each thread that uses the database has its own (:meth:`_open`).
        self.conn: psycopg.Connection[dict[str, Any]] | None = None
        try:
            self.conn = self._local.conn = self._connect()
        except psycopg.OperationalError as exc:
            raise ConnectionError(self._unreachable(exc)) from None

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        extra: dict[str, Any] = {}
        if "connect_timeout" not in self._url:
            extra["connect_timeout"] = _CONNECT_TIMEOUT_S
        conn = psycopg.connect(self._url, autocommit=True, row_factory=dict_row, **extra)
        with self._guard:
            self._opened.append(conn)
        return conn

    def _unreachable(self, exc: BaseException) -> str:
        reason = " ".join(str(exc).split())
        return f"cannot connect to PostgreSQL at {redact_url(self._url)}: {reason}"

    def _drop(self) -> None:
        """Forget this thread's connection (lost or unusable); its next use reconnects."""
        conn: psycopg.Connection[dict[str, Any]] | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is None:
            return
        with self._guard:
            if conn in self._opened:
                self._opened.remove(conn)
        if conn is self.conn:
            self.conn = None
        with contextlib.suppress(Exception):  # already broken: nothing to close cleanly
            conn.close()

    def _open(self) -> psycopg.Connection[dict[str, Any]]:
        """Return this thread's connection, connecting on its first use or after a loss."""
        if self._closed:
            raise RuntimeError("CentralStore is closed")
        conn: psycopg.Connection[dict[str, Any]] | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.closed or conn.broken):
            self._drop()
            conn = None
        if conn is None:
            try:
                conn = self._local.conn = self._connect()
            except psycopg.OperationalError as exc:
                message = self._unreachable(exc)
                log.warning("%s", message)
                raise Unavailable(
                    "the central's database is unreachable; try again shortly",
                    retry_after_s=_RETRY_AFTER_S,
                ) from exc
            if self.conn is None:
                self.conn = conn
            log.info("reconnected to PostgreSQL at %s", redact_url(self._url))
        return conn

    def _begin(self, begin: str, *, rules_lock: bool) -> psycopg.Connection[dict[str, Any]]:
        """Return this thread's connection inside a new transaction (*begin*), holding the
        rules lock if *rules_lock*.

        A connection found lost here had run nothing of this transaction: reconnect and
        begin again, within :data:`RECONNECT_BUDGET_S`.
        """
        deadline = time.monotonic() + RECONNECT_BUDGET_S
        delay = 0.05
        while True:
            conn = self._open()
            try:
                conn.execute(begin)
                if rules_lock:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_RULES_LOCK,))
                return conn
            except _LOST as exc:
                self._drop()
                if time.monotonic() + delay > deadline:
                    log.warning("PostgreSQL connection lost, not back in time: %s", exc)
                    raise Unavailable(
                        "the central's database is unreachable; try again shortly",
                        retry_after_s=_RETRY_AFTER_S,
                    ) from exc
                log.info("PostgreSQL connection lost (%s); reconnecting", exc)
                time.sleep(delay)
                delay = min(delay * 4, 1.0)

    @contextmanager
    def transaction(self, *, rules_lock: bool = True) -> Iterator[Connection]:
        conn = self._begin("BEGIN", rules_lock=rules_lock)
        try:
            yield _PgConnection(conn, rules_locked=rules_lock)
        except _LOST as exc:
            # The server rolls back what a lost session had not committed.
            self._drop()
            log.warning("PostgreSQL connection lost during a transaction: %s", exc)
            raise Unavailable(
                "the central lost its database during the request (nothing was stored); "
                "try again shortly",
                retry_after_s=_RETRY_AFTER_S,
            ) from exc
        except BaseException:
            self._rollback(conn)
            raise
        try:
            conn.execute("COMMIT")
        except _LOST as exc:
            self._drop()
            log.error("PostgreSQL connection lost during COMMIT (outcome unknown): %s", exc)
            raise Unavailable(
                "the central lost its database while committing: the change may or may "
                "not be stored; check before doing it again (device uploads are safe to "
                "send again)",
                retry_after_s=_RETRY_AFTER_S,
                outcome="unknown",
            ) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        conn = self._begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", rules_lock=False)
        try:
            yield _PgConnection(conn, rules_locked=False)
        except _LOST as exc:
            self._drop()
            raise Unavailable(
                "the central lost its database during the request; try again shortly",
                retry_after_s=_RETRY_AFTER_S,
            ) from exc
        except BaseException:
            self._rollback(conn)
            raise
        try:
            conn.execute("COMMIT")
        except _LOST as exc:  # a read: nothing to be unsure about, but no answer either
            self._drop()
            raise Unavailable(
                "the central lost its database during the request; try again shortly",
                retry_after_s=_RETRY_AFTER_S,
            ) from exc

    def _rollback(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        try:
            conn.execute("ROLLBACK")
        except _LOST:
            self._drop()

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
        self._closed = True
        self.conn = None
        self._local.conn = None
        with self._guard:
            opened, self._opened = self._opened, []
        for conn in opened:
            with contextlib.suppress(psycopg.Error):
                conn.close()
