"""The seam between the central's rules and a database engine.

The domain modules of :mod:`central.store` (devices, events, claims, credentials, keys,
deltas, audit) hold the rules and the SQL; this module says what they may expect of the
engine, so that a second backend (PostgreSQL, issue #13) is one new :class:`Database`
subclass and its schema steps, not a change to the rules. SQLite's is
:class:`central.store.sqlite.SqliteDatabase`.

What the domain code relies on, and every backend must give:

* **One transaction per public call**, of one of three kinds, each yielding a
  :class:`Connection` that commits on a normal exit and rolls back on an exception:

  - :meth:`Database.transaction` (the default): read-write under **the rules lock**,
    which serialises these transactions with each other (SQLite: ``BEGIN IMMEDIATE``,
    one writer at a time; PostgreSQL: one transaction-level advisory lock). The rules
    that read, decide, then write count on it: a token's first use, a door's settings
    version, the active signing key, the operator journal's chain, and the ``changes``
    log whose row number is the deltas cursor (a cursor must never pass a change that
    commits later). Every append to ``changes`` is made under it.
  - ``transaction(rules_lock=False)``: read-write without it, for device traffic (an
    upload without claims, a heartbeat, a self-test report). Such a transaction locks
    the rows it reads and then writes itself (``SELECT ... `` + :attr:`Database.for_update`:
    the device row orders a device's batches), and appends nothing to ``changes`` or the
    operator journal. SQLite still serialises it (``BEGIN IMMEDIATE``).
  - :meth:`Database.read`: read-only, one snapshot, no lock at all (a delta poll, a
    credential check). A write in it is an error on both engines.

  Lock order, so two transactions never wait on each other in a cycle: the rules lock
  first, then rows (a device row). docs/central-store.md, "Concurrency".
* **SQL in the subset both engines share**, with ``?`` placeholders (DB-API
  ``qmark``): ``INSERT ... ON CONFLICT (...) DO UPDATE SET x = excluded.x``,
  ``DELETE ... RETURNING``, ``coalesce``, ``max``, ``LIMIT``. A backend whose driver
  wants another style rewrites ``?`` (the domain SQL holds no ``?`` or ``%`` inside
  string literals). A list of placeholders comes from :meth:`Database.marks`.
* **Rows read by column name** (``row["kid"]``), never by position, so ``sqlite3.Row``
  and psycopg's ``dict_row`` both fit; an aggregate gets a name (``AS head``).
* **Values**: text, 64-bit integers, bytes (``BLOB`` / ``bytea``) and NULL. Booleans
  are stored as the integers 0 and 1 (``int(flag)`` in, ``bool(row[...])`` out).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["Connection", "Cursor", "Database", "Row", "Step", "rules_locked"]


class Row(Protocol):
    """A result row, read by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


class Cursor(Protocol):
    """What ``Connection.execute`` returns: rows to fetch or iterate, and ``rowcount``."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The connection a transaction yields (``sqlite3.Connection`` is one as it is)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


def rules_locked(conn: Connection) -> bool:
    """False if *conn* belongs to a transaction opened without the rules lock (a backend's
    connection says so with ``rules_locked = False``), else True."""
    return getattr(conn, "rules_locked", True) is not False


#: One statement of a schema step: SQL, or a function run on the migration's connection.
Step = str | Callable[[Connection], None]


class Database(abc.ABC):
    """A database engine as the store uses it: transactions, schema version, close.

    Subclasses set the three class attributes and implement the abstract methods;
    :func:`central.store.schema.migrate` brings the schema up to date through them.
    """

    #: The engine's name, for messages: ``"sqlite"``, ``"postgresql"``.
    dialect: str
    #: The driver's constraint-violation errors (unique, foreign key, check), for code
    #: that must tell "someone else wrote it first" from a failure.
    integrity_errors: tuple[type[Exception], ...]
    #: The schema, as steps: version -> the statements that bring the version before
    #: it to this one (:mod:`central.store.schema`).
    migrations: Mapping[int, Sequence[Step]]
    #: What ends a ``SELECT`` that locks the rows it reads until the transaction ends
    #: (``" FOR UPDATE"``; empty where writers are serialised anyway, SQLite).
    for_update: str = ""

    @abc.abstractmethod
    def transaction(self, *, rules_lock: bool = True) -> AbstractContextManager[Connection]:
        """Return one read-write transaction (commit on exit, rollback on error).

        *rules_lock*: serialised with every other transaction that takes it (the
        default); False for device traffic that locks its own rows (module docstring).

        Raises:
            RuntimeError: the database is closed.
        """

    @abc.abstractmethod
    def read(self) -> AbstractContextManager[Connection]:
        """Return one read-only transaction on one snapshot, taking no lock.

        Raises:
            RuntimeError: the database is closed.
        """

    @abc.abstractmethod
    def schema_version(self) -> int:
        """Return the schema version of the database (0: a new, empty database)."""

    @abc.abstractmethod
    def set_schema_version(self, conn: Connection, version: int) -> None:
        """Record *version* as the schema version, inside the migration's transaction."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and close; idempotent."""

    def marks(self, count: int) -> str:
        """Return *count* placeholders for an ``IN (...)`` list."""
        return ",".join("?" * count)
