"""SQLite plumbing: connections, the single-writer lock, transactions.

One database file in WAL mode. One process writes (guarded by an exclusive
``flock`` on ``<db>.lock``); inside it, one connection writes, serialised by a
Python lock so that threads queue on that lock -- which wakes them at once --
rather than on SQLite's busy handler, which polls with sleeps. Reads use a
small pool of read-only connections, so lookups never wait for a write
(WAL readers see the last committed state).

On a full disk SQLite cannot open a WAL database the usual way: the first
connection truncates and re-grows the shared-memory wal-index (``-shm``,
32 KiB per 4096 WAL frames), which fails with ``SQLITE_IOERR_SHMSIZE``. The
writer then opens in *heap mode* instead (``locking_mode=EXCLUSIVE`` set
before WAL mode: the wal-index lives in the process's memory, no ``-shm``
is needed, see https://sqlite.org/wal.html#noshm), reads go through the
writer connection, and :meth:`Database.reopen_shared` returns to the normal
mode once there is room again. While in heap mode no other process can read
the file (``edge-agent journal verify`` says the store is busy).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge_agent.store.errors import (
    SchemaError,
    StoreClosed,
    StoreError,
    StoreLocked,
    StoreReadOnly,
    primary_code,
    translate,
)
from edge_agent.store.settings import StoreSettings

log = logging.getLogger(__name__)

#: Oldest SQLite this store runs on: STRICT tables need 3.37 (Debian
#: bookworm, hence Raspberry Pi OS 12, ships 3.40).
MIN_SQLITE = (3, 37, 0)


def _connect(uri: str, settings: StoreSettings) -> sqlite3.Connection:
    conn = sqlite3.connect(
        uri,
        uri=True,
        isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
        check_same_thread=False,  # shared between threads, always under a lock
        timeout=settings.busy_timeout_s,
        cached_statements=256,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout_s * 1000)}")
    return conn


#: SQLite errors that opening the writer meets on a full disk (the wal-index or
#: the WAL cannot grow): the cue to open it in heap mode.
_NO_ROOM_NAMES = frozenset({"SQLITE_FULL", "SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_SHMOPEN"})
_SQLITE_FULL = 13


def _no_room(exc: sqlite3.Error) -> bool:
    """True if ``exc`` says the disk had no room for SQLite's files."""
    name = getattr(exc, "sqlite_errorname", None)
    return name in _NO_ROOM_NAMES or primary_code(exc) == _SQLITE_FULL


def _uri(path: Path, mode: str) -> str:
    quoted = str(path.resolve()).replace("?", "%3f").replace("#", "%23")
    return f"file:{quoted}?mode={mode}"


class Database:
    """The open database: writer connection, reader pool, write lock.

    Not public API: :class:`edge_agent.store.Store` owns one.
    """

    def __init__(self, settings: StoreSettings, *, read_only: bool = False) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old; the store needs "
                f"{'.'.join(map(str, MIN_SQLITE))} or later"
            )
        self.settings = settings
        self.read_only = read_only
        self.path = settings.path
        # Re-entrant: in heap mode a read made while the write lock is held (by
        # the same thread) goes through the writer connection too.
        self.write_lock = threading.RLock()
        #: True while the writer runs in heap mode (see the module docstring).
        self.heap_mode = False
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._lock_fd: int | None = None
        self._closed = False
        self.writer: sqlite3.Connection | None = None
        try:
            if read_only:
                if not self.path.exists():
                    raise StoreError(f"{self.path}: no such store")
                # One throwaway connection checks the file is readable now.
                self._release(self._new_reader())
            else:
                self._open_writer()
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------

    def _open_writer(self) -> None:
        settings = self.settings
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(settings.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreLocked(
                f"{self.path} is already open for writing by another process "
                "(open it with read_only=True to inspect it)"
            ) from None
        if not self.path.exists():
            # The cache holds credentials: create the file private; SQLite
            # gives its -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        try:
            self._connect_writer(heap=False)
        except sqlite3.Error as exc:
            if not _no_room(exc):
                raise translate(exc, f"opening {self.path}") from exc
            log.warning(
                "store: no room to open %s with its shared wal-index (%s): "
                "opening in heap mode, readers go through the writer",
                self.path,
                getattr(exc, "sqlite_errorname", exc),
            )
            try:
                self._connect_writer(heap=True)
            except sqlite3.Error as again:
                raise translate(again, f"opening {self.path}") from again

    def _connect_writer(self, *, heap: bool) -> None:
        """Open and configure the writer connection (``heap``: wal-index in memory)."""
        settings = self.settings
        conn = _connect(_uri(self.path, "rwc"), settings)
        try:
            if heap:
                # Before the first access in WAL mode: the wal-index then lives on
                # the heap and SQLite never touches the -shm file.
                conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            # Only takes effect on a new, empty file (before WAL mode is set).
            conn.execute(f"PRAGMA page_size = {settings.page_size}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if heap:
                # Take the lock (and build the wal-index) now, not at the first read.
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            raise
        self.writer = conn
        self.heap_mode = heap
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: could not switch to WAL mode (got {mode!r})")
        # FULL: the WAL is fsynced at every commit, so a returned append
        # survives power loss, not only a process crash (NORMAL would not).
        conn.execute("PRAGMA synchronous = FULL")
        # Checkpoint inside the commit that crosses the threshold, so the WAL
        # is fully copied back before the next write and SQLite restarts it
        # from the beginning: later commits overwrite allocated blocks, and an
        # fdatasync that need not also flush a file-size change is cheaper.
        # (A background checkpointer cannot promise that under a steady
        # stream of appends: the WAL then only grows.)
        conn.execute(f"PRAGMA wal_autocheckpoint = {settings.checkpoint_pages}")
        # Truncate the WAL back to this size after a checkpoint following a
        # large burst, so one burst does not hold disk space forever.
        conn.execute(f"PRAGMA journal_size_limit = {64 * 1024 * 1024}")
        if settings.max_db_bytes is not None:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {settings.max_db_bytes // page_size}")

    def _new_reader(self) -> sqlite3.Connection:
        mode = "ro" if self.read_only else "rw"
        try:
            conn = _connect(_uri(self.path, mode), self.settings)
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise translate(exc, f"opening {self.path} for reading") from exc
        with self._pool_lock:
            self._all.append(conn)
        return conn

    def _release(self, conn: sqlite3.Connection) -> None:
        with self._pool_lock:
            if self._closed:
                conn.close()
            else:
                self._idle.append(conn)

    # -- use -------------------------------------------------------------------

    def check_open(self) -> None:
        """Raise :class:`StoreClosed` if :meth:`close` was called."""
        if self._closed:
            raise StoreClosed(f"{self.path}: the store is closed")

    def check_writable(self) -> sqlite3.Connection:
        """Return the writer connection, or raise if closed or read-only."""
        if self._closed:
            raise StoreClosed(f"{self.path}: the store is closed")
        if self.writer is None:
            raise StoreReadOnly(f"{self.path}: the store was opened read-only")
        return self.writer

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """Yield an idle read-only connection (autocommit) for a few queries."""
        if self._closed:
            raise StoreClosed(f"{self.path}: the store is closed")
        if self.heap_mode:
            with self._heap_reader() as heap_conn:
                yield heap_conn
            return
        with self._pool_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._new_reader()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._release(conn)

    @contextlib.contextmanager
    def _heap_reader(self) -> Iterator[sqlite3.Connection]:
        """In heap mode, the writer connection serves reads, under the write lock.

        A read inside the same thread's write transaction sees that transaction
        (and is not rolled back here); otherwise a read transaction it opened ends.
        """
        with self.write_lock:
            conn = self.check_writable()
            outer = conn.in_transaction
            try:
                yield conn
            finally:
                if not outer and conn.in_transaction:
                    rollback(conn)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Yield a read connection inside one read transaction (a consistent
        view across several queries)."""
        with self.reader() as conn:
            if conn.in_transaction:  # heap mode, inside this thread's write
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    @contextlib.contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """Take the write lock and yield the writer inside ``BEGIN IMMEDIATE``.

        Commits on exit (durably: ``synchronous=FULL``), rolls back on any
        exception. SQLite errors are re-raised as typed store errors naming
        ``what`` (:class:`StoreFull`, :class:`StoreIOError`...).
        """
        self.check_writable()
        with self.write_lock:
            # Read under the lock: reopen_shared may have replaced the writer.
            conn = self.check_writable()
            with self.locked_transaction(conn, what):
                yield conn

    @contextlib.contextmanager
    def locked_transaction(self, conn: sqlite3.Connection, what: str) -> Iterator[None]:
        """Like :meth:`transaction` for a caller that already holds the lock."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
        except sqlite3.Error as exc:
            raise translate(exc, what) from exc

    # -- meta table ----------------------------------------------------------------

    @staticmethod
    def meta_get(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
        """Return ``meta[key]`` read on ``conn``, or ``default``."""
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    @staticmethod
    def meta_set(conn: sqlite3.Connection, key: str, value: Any) -> None:
        """Set ``meta[key]`` on ``conn`` (inside the caller's transaction)."""
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- maintenance -----------------------------------------------------------------

    def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """Run ``PRAGMA wal_checkpoint(mode)`` on a reader-side connection.

        Returns SQLite's (busy, wal pages, checkpointed pages). PASSIVE never
        waits for the writer, so it runs beside appends.
        """
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"mode: {mode!r} is not a checkpoint mode")
        if self.read_only:
            raise StoreReadOnly(f"{self.path}: the store was opened read-only")
        if self.heap_mode:
            with self.write_lock:
                writer = self.check_writable()
                try:
                    row = writer.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
                except sqlite3.Error as exc:
                    raise translate(exc, "checkpoint") from exc
            return int(row[0]), int(row[1]), int(row[2])
        with self._pool_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._new_reader()
        try:
            # query_only forbids checkpoints; lift it for this statement.
            conn.execute("PRAGMA query_only = OFF")
            try:
                row = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            finally:
                conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise translate(exc, "checkpoint") from exc
        finally:
            self._release(conn)
        return int(row[0]), int(row[1]), int(row[2])

    def reopen_shared(self) -> bool:
        """Leave heap mode: reopen the writer with its shared wal-index.

        Called once there is room again (the ``-shm`` file and a WAL recovery
        need some). Returns True if the store now runs in the normal mode; on
        failure the writer stays (or is back) in heap mode.
        """
        if not self.heap_mode:
            return True
        with self.write_lock:
            self.check_open()
            old = self.writer
            assert old is not None
            with contextlib.suppress(sqlite3.Error):
                old.close()  # checkpoints, and gives up the exclusive lock
            self.writer = None
            try:
                self._connect_writer(heap=False)
            except sqlite3.Error as exc:
                log.warning("store: still no room for the shared wal-index: %s", exc)
                try:
                    self._connect_writer(heap=True)
                except sqlite3.Error as again:
                    raise translate(again, f"reopening {self.path}") from again
                return False
        log.warning("store: %s back in the normal WAL mode (shared wal-index)", self.path)
        return True

    def file_sizes(self) -> tuple[int, int]:
        """Return (database bytes, WAL bytes) on disk."""

        def size(path: Path) -> int:
            try:
                return path.stat().st_size
            except FileNotFoundError:
                return 0

        return size(self.path), size(self.path.with_name(self.path.name + "-wal"))

    def close(self) -> None:
        """Close every connection and release the writer lock. Idempotent."""
        with self._pool_lock:
            if self._closed:
                return
            self._closed = True
            conns, self._all, self._idle = self._all, [], []
        # Let a write in progress finish: closing under it would lose it.
        with self.write_lock:
            for conn in conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            if self.writer is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.writer.close()
                self.writer = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back ``conn``'s open transaction, if any, keeping the caller's error.

    SQLite may already have rolled back by itself (after SQLITE_FULL, for
    instance); a failing ROLLBACK must not hide the error that caused it.
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def require_version(conn: sqlite3.Connection, expected: int) -> None:
    """Raise :class:`SchemaError` unless the file is at ``expected``."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version != expected:
        raise SchemaError(
            f"database schema version is {version}, this software reads {expected}; "
            "open it for writing once (the agent migrates it) before reading it"
        )
