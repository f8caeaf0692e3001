""":class:`CentralStore`: the reference central's database and every rule of the contract.

It is the domain mixins of this package over one :class:`~central.store.db.Database`:

=================  ================================================================
``devices``        enroll tokens, enrollment, credentials, heartbeats, self-tests
``events``         event upload, placement at each device's cursor, the hash chain
``claims``         claims events carry, shared with the site's doors
``credentials``    invitations, badges, revocations, schedules, door settings
``keys``           invitation signing keys (rotation), the delta signing key
``deltas``         the ``changes`` log and ``GET /v1/deltas``
``audit``          the received view, stored events, chain re-walks, admin info
``operators``      operator accounts, API tokens, sessions, lock-out, operator journal
``retention``      the purge of visitors' personal data after the retention period
``console``        the web console's reads (invitations with their status, a summary)
``monitor``        live events, alarms and acknowledgements, devices, the technical log
``doormodes``      door and zone modes set from the security office (who, why)
``screening``      the deny list, approvals, invitation tokens (PDF) and e-mails
``stats``          the console's statistics (counts, availability) and who is on site
``visits``         groups, recurring visitors, extensions, the console's CSV drafts
=================  ================================================================

It is synchronous: the server runs its calls on one worker thread (so they are
serialised and off the event loop), and on PostgreSQL the uploads on a second one (each
thread has its own connection; the database's locks order them, central-store.md
"Concurrency"); tests may call it directly. SQLite's one connection takes one thread.
Each public method is one transaction, committed before the method returns, so an ack
the server sends is never ahead of what is on disk.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

from ..settings import CentralSettings
from .access import AccessMixin
from .audit import AuditMixin
from .base import wall_ms
from .console import ConsoleMixin
from .credentials import CredentialsMixin
from .db import Database
from .deltas import DeltasMixin
from .devices import DevicesMixin
from .doormodes import DoorModesMixin
from .eventpacks import EventPacksMixin
from .events import EventsMixin
from .groups import GroupsMixin
from .issuance import IssuanceMixin
from .keys import KeysMixin
from .monitor import MonitorMixin
from .operators import OperatorsMixin
from .retention import RetentionMixin
from .schema import migrate
from .screening import ScreeningMixin
from .sqlite import SqliteDatabase
from .stats import StatsMixin
from .visits import VisitsMixin

__all__ = ["CentralStore", "open_database"]


def open_database(settings: CentralSettings) -> Database:
    """Open (creating if needed) the central's database, as ``settings.db`` says:
    SQLite at ``settings.db_path`` (by default ``data_dir/central.db``; its directory is
    created ``0700``), or PostgreSQL (``postgresql://...``).

    Raises:
        sqlite3.Error: the SQLite database cannot be opened or created.
        ConnectionError: the PostgreSQL server cannot be reached or refuses the login.
        RuntimeError: PostgreSQL is asked for but psycopg is not installed.
    """
    database = settings.database
    if database.dialect == "postgresql":
        assert database.url is not None
        try:
            from .postgres import PostgresDatabase
        except ImportError:
            raise RuntimeError(
                "db: PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'"
            ) from None
        return PostgresDatabase(database.url)
    assert database.path is not None
    database.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SqliteDatabase(database.path)


class CentralStore(
    DevicesMixin,
    EventPacksMixin,  # before EventsMixin: it extends it (the merge places events)
    EventsMixin,
    CredentialsMixin,
    IssuanceMixin,
    KeysMixin,
    DeltasMixin,
    AuditMixin,
    OperatorsMixin,
    RetentionMixin,
    ConsoleMixin,
    MonitorMixin,
    DoorModesMixin,
    ScreeningMixin,
    VisitsMixin,
    GroupsMixin,
    StatsMixin,
    AccessMixin,
):
    """The reference central's database and rules.

    Args:
        settings: where the database lives (``settings.db_path``) and the limits.
        clock: returns Unix milliseconds; injectable so tests can move time.
        database: an open database to use instead of :func:`open_database` (a
            :class:`~central.store.postgres.PostgresDatabase`); the store closes it.

    Raises:
        sqlite3.Error: the database cannot be opened or created.
    """

    def __init__(
        self,
        settings: CentralSettings,
        *,
        clock: Callable[[], int] = wall_ms,
        database: Database | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._outer_by_thread = threading.local()
        self._db = open_database(settings) if database is None else database
        migrate(self._db)
        self._ensure_signing_key()
        self._delta_key = self._ensure_delta_key()
        self._sun = settings.sun_verifier()

    def close(self) -> None:
        """Flush and close the database; idempotent."""
        self._db.close()

    def __enter__(self) -> CentralStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _conn(self) -> sqlite3.Connection:
        """The raw SQLite connection (tests that rewrite the schema use it)."""
        assert isinstance(self._db, SqliteDatabase) and self._db.conn is not None
        return self._db.conn
