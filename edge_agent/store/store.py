"""The store: one SQLite file holding journal, cache and replay ledger."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from edge_agent.store.cache import CredentialCache
from edge_agent.store.db import Database, require_version
from edge_agent.store.disk import (
    DiskPressure,
    DiskUsage,
    Pressure,
    Reserve,
    level_for,
    statvfs_usage,
)
from edge_agent.store.errors import StoreError, StoreFull, translate
from edge_agent.store.guardlock import GuardLockouts
from edge_agent.store.highwater import HighWater
from edge_agent.store.journal import Journal
from edge_agent.store.media import EvictResult, MediaStore
from edge_agent.store.replay import ReplayLedger
from edge_agent.store.schema import SCHEMA_VERSION, current_version, migrate
from edge_agent.store.settings import StoreSettings
from portier_common.encoding import Clock, SystemClock

log = logging.getLogger(__name__)

#: One region of SQLite's shared wal-index (the ``-shm`` file): 4096 WAL frames.
SHM_REGION_BYTES = 32 * 1024
#: Room for the WAL pages of the start-up commits, beyond the wal-index.
OPEN_HEADROOM_BYTES = 256 * 1024


class Store:
    """The agent's durable state. Open with :meth:`Store.open`.

    Attributes: :attr:`journal` (:class:`Journal`), :attr:`cache`
    (:class:`CredentialCache`), :attr:`replay` (:class:`ReplayLedger`),
    :attr:`media` (:class:`MediaStore`), :attr:`guard_lockouts`
    (:class:`GuardLockouts`). A context manager; :meth:`close` is
    idempotent.
    """

    journal: Journal
    cache: CredentialCache
    replay: ReplayLedger
    media: MediaStore
    guard_lockouts: GuardLockouts

    def __init__(
        self,
        settings: StoreSettings,
        *,
        read_only: bool,
        clock: Clock,
        disk_usage: DiskUsage,
    ) -> None:
        self.settings = settings
        self.read_only = read_only
        self._clock = clock
        self._disk_usage = disk_usage
        self._reserve = Reserve(settings.reserve_path, settings.reserve_bytes)
        self._closed = False
        #: The photo reconciliation of start-up could not be written (full disk).
        self._media_pending = False
        self._high_water = None if read_only else HighWater(settings.high_water_path)
        if not read_only:
            self._make_room_to_open()
        self._db = Database(settings, read_only=read_only)
        try:
            self._start()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open(
        cls,
        settings: StoreSettings | str | os.PathLike[str],
        *,
        read_only: bool = False,
        clock: Clock | None = None,
        disk_usage: DiskUsage | None = None,
    ) -> Store:
        """Open (creating and migrating as needed) the store; return it.

        For writing (the agent), the calling process becomes the store's only
        writer: IN_FLIGHT events go back to READY, photo files are reconciled,
        and the reserve file is created.
        ``read_only=True`` opens an existing store for inspection from
        another process (the CLI) without any of that.

        ``clock`` and ``disk_usage`` are seams for tests (defaults: the real
        clocks and ``os.statvfs``).

        Raises :class:`StoreLocked` if another process writes the store,
        :class:`SchemaError` if the file is newer than this code or a
        migration fails, :class:`StoreCorrupt` for a damaged file, and
        :class:`StoreError` for other failures.
        """
        if not isinstance(settings, StoreSettings):
            settings = StoreSettings(path=Path(settings))
        return cls(
            settings,
            read_only=read_only,
            clock=clock or SystemClock(),
            disk_usage=disk_usage or statvfs_usage,
        )

    def _start(self) -> None:
        db = self._db
        settings = self.settings
        if self.read_only:
            try:
                with db.reader() as conn:
                    require_version(conn, SCHEMA_VERSION)
            except sqlite3.Error as exc:
                # Locked by a writer in heap mode, or not a database: one line, no traceback.
                raise translate(exc, f"reading {settings.path}") from exc
        else:
            assert db.writer is not None
            try:
                migrate(db.writer)
            except sqlite3.Error as exc:
                raise StoreError(f"{settings.path}: cannot read the schema version: {exc}") from exc
        self.journal = Journal(
            db,
            self._clock,
            max_payload_bytes=settings.max_payload_bytes,
            keep_acked=settings.keep_acked,
            trim_batch=settings.trim_batch,
            on_full=self._free_space_for_journal,
            high_water=self._high_water,
        )
        self.cache = CredentialCache(db, self._clock)
        self.replay = ReplayLedger(db, self._clock)
        self.media = MediaStore(db, settings, self._clock, self._free_bytes)
        self.guard_lockouts = GuardLockouts(db)
        if self.read_only:
            return
        try:
            self.journal.start()
        except StoreFull as exc:
            # Up, but every append will be refused until there is room: the
            # agent reports it (status ``journal``) and recover() finishes this.
            log.error("store: started on a full disk, journal read-only for now: %s", exc)
        try:
            self.media.start()
        except StoreFull as exc:
            self._media_pending = True
            log.error("store: photo reconciliation postponed (disk full): %s", exc)
        free = self._free_bytes()
        if not self._reserve.ensure(free, settings.warn_free_bytes) and settings.reserve_bytes:
            log.warning("store: no reserve file (%d bytes free)", free)

    # -- disk space -------------------------------------------------------------------

    def open_need_bytes(self) -> int:
        """Free bytes that opening the store for writing needs, as SQLite opens it.

        The first connection truncates and re-grows the wal-index (``-shm``:
        32 KiB per 4096 frames of the WAL left behind, at least one region),
        WAL recovery reads but does not write, and the start-up commits
        (journal state, ``agent.started``) each append a few pages to the WAL:
        :data:`OPEN_HEADROOM_BYTES` covers them.
        """
        wal = self.settings.path.with_name(self.settings.path.name + "-wal")
        try:
            frames = wal.stat().st_size // (self.settings.page_size + 24)
        except FileNotFoundError:
            frames = 0
        regions = max(1, -(-frames // 4096))
        return regions * SHM_REGION_BYTES + OPEN_HEADROOM_BYTES

    def _make_room_to_open(self) -> None:
        """Release the reserve file before opening if free space is below
        :meth:`open_need_bytes` (what the reserve is kept for)."""
        try:
            free = self._free_bytes()
        except OSError:
            return  # no directory yet: a new store, opening creates it
        need = self.open_need_bytes()
        if free < need and self._reserve.present():
            log.warning(
                "store: %d bytes free, opening needs about %d: releasing the reserve", free, need
            )
            self._reserve.release()

    def journal_unavailable(self) -> str | None:
        """Why the journal cannot be written now (None: it can, as far as known).

        Set by a failed append or start-up write (full disk, I/O error) and
        cleared by the next successful append; see :meth:`recover`.
        """
        if self.journal.unavailable is not None:
            return self.journal.unavailable
        if self.journal.start_pending:
            return "journal start-up: database or disk is full"
        return None

    def recover(self) -> bool:
        """Finish what a start on a full disk left undone, if there is room now.

        Leaves heap mode (:meth:`Database.reopen_shared`) once free space is
        back above :meth:`open_need_bytes`, writes the journal's and photos'
        start-up state, and re-creates the reserve when the level is OK.
        Cheap when there is nothing to do; the service calls it every second
        while :meth:`journal_unavailable` or :attr:`heap_mode` says so.
        Returns True if the store is fully back (normal mode, start-up done).
        """
        if self.read_only or self._closed:
            return False
        free = self._free_bytes()
        if free < self.open_need_bytes():
            return False
        try:
            if self._db.heap_mode and not self._db.reopen_shared():
                return False
            if self.journal.start_pending:
                self.journal.resume()
            if self._media_pending:
                self.media.start()
                self._media_pending = False
        except StoreError as exc:
            log.warning("store: recovery from a full disk not finished yet: %s", exc)
            return False
        self._reserve.ensure(self._free_bytes(), self.settings.warn_free_bytes)
        return True

    @property
    def heap_mode(self) -> bool:
        """True while the writer runs without a shared wal-index (opened on a full disk)."""
        return self._db.heap_mode

    def _free_bytes(self) -> int:
        return self._disk_usage(self.settings.path.parent)[0]

    def disk_pressure(self) -> DiskPressure:
        """Return free space, what the store uses and the pressure level.

        No side effect: the agent polls this and raises its alarm when
        ``alarm`` is true, then calls :meth:`relieve_pressure`.
        """
        free, total = self._disk_usage(self.settings.path.parent)
        db_bytes, wal_bytes = self._db.file_sizes()
        media = self.media.usage()
        return DiskPressure(
            level=level_for(free, self.settings.warn_free_bytes, self.settings.critical_free_bytes),
            free_bytes=free,
            total_bytes=total,
            db_bytes=db_bytes,
            wal_bytes=wal_bytes,
            media_bytes=media.bytes,
            media_count=media.count,
            reserve_bytes=self._reserve.present(),
            warn_free_bytes=self.settings.warn_free_bytes,
            critical_free_bytes=self.settings.critical_free_bytes,
        )

    def relieve_pressure(self) -> EvictResult:
        """Evict photos as the pressure level demands; return what went.

        LOW: uploaded photos, oldest first, until free space is back above
        ``warn_free_bytes``. CRITICAL: photos not uploaded yet as well. When
        the level is OK again, a released reserve file is re-created.
        Access events are never touched.
        """
        free = self._free_bytes()
        level = level_for(free, self.settings.warn_free_bytes, self.settings.critical_free_bytes)
        result = EvictResult()
        if level is not Pressure.OK:
            result = self.media.evict(
                bytes_needed=self.settings.warn_free_bytes - free,
                include_pending=level is Pressure.CRITICAL,
                reason=f"disk pressure {level.name}",
            )
            free = self._free_bytes()
        self._reserve.ensure(free, self.settings.warn_free_bytes)
        return result

    def _free_space_for_journal(self, conn: sqlite3.Connection) -> bool:
        # Called by the journal, write lock held, after SQLite said "full".
        # Photos go first; the reserve file is the last resort, kept for
        # when there is nothing else to give back.
        free = self._free_bytes()
        if free < self.settings.warn_free_bytes:
            result = self.media.evict_locked(
                conn,
                self.settings.warn_free_bytes - free,
                include_pending=True,
                reason="disk full: journal needs the space",
                files_first=True,
            )
            if result.count:
                return True
        return self._reserve.release() > 0

    # -- agent state --------------------------------------------------------------------------

    #: Keys of :meth:`agent_state` start with this, so they never clash with the store's own.
    AGENT_STATE_PREFIX = "agent."

    def agent_state(self, key: str) -> Any:
        """Return a value the agent keeps durably (the ``meta`` table), or None if unset.

        For small state that must survive a crash or power cut (the door's mode);
        ``key`` starts with :attr:`AGENT_STATE_PREFIX`.
        """
        self._check_agent_key(key)
        with self._db.reader() as conn:
            return Database.meta_get(conn, key)

    def set_agent_state(self, values: Mapping[str, Any]) -> None:
        """Set agent-state values in one durable commit (``synchronous=FULL``).

        Returns only once the values are on disk; raises :class:`StoreError` otherwise.
        """
        for key in values:
            self._check_agent_key(key)
        with self._db.transaction("agent state") as conn:
            for key, value in values.items():
                Database.meta_set(conn, key, value)

    def _check_agent_key(self, key: str) -> None:
        if not isinstance(key, str) or not key.startswith(self.AGENT_STATE_PREFIX):
            raise ValueError(f"key: {key!r} must start with {self.AGENT_STATE_PREFIX!r}")

    # -- journal damage ------------------------------------------------------------------------

    def unrecorded_loss(self) -> tuple[int, int] | None:
        """Return (first, last) seq of committed events missing from the journal and not
        yet recorded by a ``journal.gap`` event (the chain head is below the high-water
        mark: the WAL was damaged since the last start), or None.

        For inspection (``edge-agent journal verify``); the writer records the gap itself
        when it opens the store.
        """
        mark = HighWater.read(self.settings.high_water_path)
        if mark is None:
            return None
        head = self.journal.head().seq
        return (head + 1, mark.seq) if mark.seq > head else None

    # -- misc ---------------------------------------------------------------------------------

    def checkpoint(self) -> tuple[int, int, int]:
        """Copy the WAL into the database now (PASSIVE); return SQLite's
        (busy, WAL pages, pages checkpointed)."""
        return self._db.checkpoint("PASSIVE")

    @property
    def path(self) -> Path:
        """The database file."""
        return self.settings.path

    def schema_version(self) -> int:
        """Return the file's schema version."""
        with self._db.reader() as conn:
            return current_version(conn)

    def close(self) -> None:
        """Close the database. Idempotent; a commit in progress finishes first."""
        self._closed = True
        self._db.close()
        if self._high_water is not None:
            self._high_water.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "writer"
        return f"<Store {str(self.settings.path)!r} {mode}>"
