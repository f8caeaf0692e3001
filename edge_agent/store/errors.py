"""Typed errors raised by :mod:`edge_agent.store`.

Like :mod:`hardware.errors`, each error also subclasses the builtin that a
caller without Portier-specific handling would naturally catch: a full disk is
an :class:`OSError`, a bad event is a :class:`ValueError`.
"""

from __future__ import annotations

import errno
import sqlite3

# The base class and the bad-event error are shared with the central (the encoding raises
# InvalidEvent): they live in portier_common and are the same classes here, re-exported.
from portier_common.errors import InvalidEvent, StoreError  # noqa: F401


class StoreClosed(StoreError, RuntimeError):
    """The store was used after :meth:`Store.close`."""


class StoreReadOnly(StoreError, PermissionError):
    """A write was attempted on a store opened with ``read_only=True``."""


class StoreLocked(StoreError, BlockingIOError):
    """Another process already has the store open for writing.

    Only one process (the edge agent) may write a journal: the hash chain and
    the sequence numbers are kept by that single writer. Readers (the CLI's
    ``journal verify``) open the store with ``read_only=True`` instead.
    """


class StoreFull(StoreError, OSError):
    """The disk (or the configured ``max_db_bytes``) is full.

    Raised by a write that could not be made durable even after media were
    evicted, the reserve file released and acknowledged events trimmed.
    Nothing was written: for :meth:`Journal.append` the event does **not**
    exist and the door must not act on it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)


class MediaRefused(StoreFull):
    """A photo was not stored because the media quota or the free-space floor
    would be crossed. Access events are unaffected; the caller carries on
    without the photo."""


class StoreIOError(StoreError, OSError):
    """SQLite reported an I/O error (failed write or fsync, device gone).

    The state of the last write is unknown to the process: the agent should
    stop and restart (systemd does) so that SQLite recovers from its WAL.
    """


class StoreCorrupt(StoreError):
    """The database file is damaged or is not a Portier store."""


class SchemaError(StoreError):
    """The schema version is newer than this code, or a migration failed
    (the failed migration was rolled back; the file is at its previous
    version)."""


class CursorMismatch(StoreError):
    """A downlink delta was built on another cursor than the cache's current
    one; nothing was applied."""

    def __init__(self, expected: str | None, actual: str | None) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"delta expects cursor {expected!r} but the cache is at {actual!r}")


# SQLite primary result codes (the low byte of an extended code).
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26


def primary_code(exc: sqlite3.Error) -> int | None:
    """Return the primary SQLite result code carried by ``exc``, or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def translate(exc: sqlite3.Error, what: str) -> StoreError:
    """Return the typed store error for a :mod:`sqlite3` exception.

    ``what`` names the operation for the message (``"journal append"``).
    Errors with no specific class become a plain :class:`StoreError`.
    """
    code = primary_code(exc)
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    message = f"{what}: {exc} ({name})"
    if code == SQLITE_FULL:
        return StoreFull(message)
    if code == SQLITE_IOERR:
        return StoreIOError(errno.EIO, message)
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return StoreCorrupt(message)
    if code == SQLITE_READONLY:
        return StoreReadOnly(message)
    return StoreError(message)
