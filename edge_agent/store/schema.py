"""Versioned schema of the store, applied with ``PRAGMA user_version``.

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with
the version bump, so a failure leaves the file at the previous version.
Migrations are append-only: never edit a released one, add the next.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_agent.store.errors import SchemaError, StoreError, translate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One step from ``version - 1`` to ``version``.

    ``steps`` are SQL statements (run one by one: ``executescript`` would
    commit the open transaction) or callables taking the connection, for data
    migrations.
    """

    version: int
    description: str
    steps: Sequence[str | Callable[[sqlite3.Connection], None]]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "journal: events with hash chain and sync state, key/value meta",
        (
            """CREATE TABLE meta (
                key TEXT PRIMARY KEY,
                value ANY
            ) STRICT, WITHOUT ROWID""",
            # seq is the rowid: appends go to the right edge of the table and
            # reads by range are cheap. The UNIQUE id is the idempotency key
            # the central de-duplicates on.
            """CREATE TABLE events (
                seq INTEGER PRIMARY KEY,
                id BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
                wall_ms INTEGER NOT NULL,
                mono_ns INTEGER NOT NULL,
                type TEXT NOT NULL,
                payload TEXT NOT NULL,
                prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
                hash BLOB NOT NULL CHECK (length(hash) = 32),
                status INTEGER NOT NULL DEFAULT 0 CHECK (status BETWEEN 0 AND 3),
                attempts INTEGER NOT NULL DEFAULT 0,
                dead_reason TEXT
            ) STRICT""",
            # Only rows that left the "ready" state are indexed, so an append
            # (always ready) does not touch this index: one page less to
            # write and fsync per event.
            "CREATE INDEX events_sync ON events(status, seq) WHERE status <> 0",
        ),
    ),
    Migration(
        2,
        "credential cache (badges, invitations, revocations, signing keys, schedules) "
        "and replay ledger",
        (
            """CREATE TABLE badges (
                uid BLOB PRIMARY KEY,
                kind TEXT NOT NULL,
                holder TEXT NOT NULL,
                doors TEXT,
                not_before INTEGER,
                not_after INTEGER,
                data TEXT
            ) STRICT, WITHOUT ROWID""",
            """CREATE TABLE invitations (
                id TEXT PRIMARY KEY,
                visitor TEXT NOT NULL,
                search_name TEXT NOT NULL,
                host TEXT,
                doors TEXT,
                not_before INTEGER,
                not_after INTEGER,
                single_use INTEGER NOT NULL,
                data TEXT
            ) STRICT, WITHOUT ROWID""",
            "CREATE INDEX invitations_name ON invitations(search_name)",
            """CREATE TABLE revocations (
                kind TEXT NOT NULL,
                id TEXT NOT NULL,
                revoked_at INTEGER,
                expires_at INTEGER,
                PRIMARY KEY (kind, id)
            ) STRICT, WITHOUT ROWID""",
            """CREATE TABLE signing_keys (
                kid TEXT PRIMARY KEY,
                alg TEXT NOT NULL,
                public_key BLOB NOT NULL,
                not_before INTEGER,
                not_after INTEGER,
                data TEXT
            ) STRICT, WITHOUT ROWID""",
            """CREATE TABLE schedules (
                id TEXT PRIMARY KEY,
                data TEXT NOT NULL
            ) STRICT, WITHOUT ROWID""",
            """CREATE TABLE used_invitations (
                id TEXT PRIMARY KEY,
                used_at_ms INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            ) STRICT, WITHOUT ROWID""",
            "CREATE INDEX used_invitations_expiry ON used_invitations(expires_at)",
            """CREATE TABLE badge_counters (
                uid BLOB PRIMARY KEY,
                counter INTEGER NOT NULL,
                updated_at_ms INTEGER NOT NULL
            ) STRICT, WITHOUT ROWID""",
        ),
    ),
    Migration(
        3,
        "media (photos) index; the files live in the media directory",
        (
            """CREATE TABLE media (
                id TEXT PRIMARY KEY,
                event_id TEXT,
                content_type TEXT NOT NULL,
                size INTEGER NOT NULL,
                sha256 BLOB NOT NULL,
                created_ms INTEGER NOT NULL,
                state INTEGER NOT NULL DEFAULT 0 CHECK (state BETWEEN 0 AND 2),
                evicted_reason TEXT
            ) STRICT, WITHOUT ROWID""",
            "CREATE INDEX media_state ON media(state, created_ms)",
        ),
    ),
    Migration(
        4,
        "guard login failures and lockouts, per normalised identity (durable lockout)",
        (
            """CREATE TABLE guard_lockouts (
                ident TEXT PRIMARY KEY,
                failures INTEGER NOT NULL,
                locked_until_ms INTEGER,
                updated_ms INTEGER NOT NULL
            ) STRICT, WITHOUT ROWID""",
            "CREATE INDEX guard_lockouts_age ON guard_lockouts(updated_ms)",
        ),
    ),
)

#: The schema version this code reads and writes.
SCHEMA_VERSION = MIGRATIONS[-1].version


def current_version(conn: sqlite3.Connection) -> int:
    """Return the file's ``PRAGMA user_version`` (0 for a new file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection,
    target: int = SCHEMA_VERSION,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> int:
    """Bring the database on ``conn`` up to ``target``; return the new version.

    ``conn`` must be in autocommit mode (``isolation_level=None``) with no open
    transaction. Each pending migration runs in one ``BEGIN IMMEDIATE``
    transaction that also sets ``user_version``.

    Raises :class:`SchemaError` when the file is newer than ``target`` or a
    migration fails (that migration is rolled back, earlier ones stay).
    """
    version = current_version(conn)
    if version > target:
        raise SchemaError(
            f"database schema version {version} is newer than this software "
            f"understands ({target}); upgrade Portier or restore a matching backup"
        )
    for migration in migrations:
        if migration.version <= version or migration.version > target:
            continue
        if migration.version != version + 1:
            raise SchemaError(f"migration {migration.version} does not follow version {version}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Re-read inside the write lock: another process may have migrated.
            if current_version(conn) != version:
                conn.execute("ROLLBACK")
                return migrate(conn, target, migrations)
            for step in migration.steps:
                if callable(step):
                    step(conn)
                else:
                    conn.execute(step)
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            conn.execute("COMMIT")
        except (sqlite3.Error, StoreError) as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            detail = str(translate(exc, "migration")) if isinstance(exc, sqlite3.Error) else exc
            raise SchemaError(
                f"migration {migration.version} ({migration.description}) failed and was "
                f"rolled back: {detail}"
            ) from exc
        log.info(
            "store schema migrated to version %d: %s", migration.version, migration.description
        )
        version = migration.version
    return version
