"""Photos, kept apart from access events so that they go first.

Each photo is a file in the media directory, named by its UUIDv7 id, with a
row in the database's ``media`` table (state, size, checksum, the check-in
event it belongs to). The journal never shares space accounting with media:

* a photo is refused (:class:`MediaRefused`) when it would push media past
  ``media_max_bytes`` or free space under ``warn_free_bytes`` and evicting
  already-uploaded photos does not make room;
* under pressure (and when SQLite reports the disk full) photos are evicted,
  uploaded ones first, oldest first; their rows stay, marked EVICTED with a
  reason, so the uplink can tell the central the photo is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from edge_agent.store.db import Database
from edge_agent.store.errors import MediaRefused, StoreError
from edge_agent.store.settings import StoreSettings
from portier_common.encoding import Clock, UUIDv7Generator

log = logging.getLogger(__name__)


class MediaState(IntEnum):
    """Where a photo is."""

    PENDING = 0  # on disk, not uploaded yet
    UPLOADED = 1  # on disk and at the central
    EVICTED = 2  # file deleted to free space (row kept for the uplink)


@dataclass(frozen=True)
class MediaItem:
    """One photo's record."""

    id: str
    event_id: str | None
    content_type: str
    size: int
    sha256: str
    created_ms: int
    state: MediaState
    evicted_reason: str | None = None


@dataclass(frozen=True)
class EvictResult:
    """Photos whose files were deleted, and the bytes given back."""

    count: int = 0
    bytes: int = 0
    ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class MediaUsage:
    """Photos on disk (pending + uploaded) and how many await upload."""

    count: int
    bytes: int
    pending: int


_ROW = "id, event_id, content_type, size, sha256, created_ms, state, evicted_reason"


def _item(row: tuple) -> MediaItem:
    return MediaItem(
        row[0], row[1], row[2], row[3], row[4].hex(), row[5], MediaState(row[6]), row[7]
    )


class MediaStore:
    """Obtained as ``store.media``; thread-safe."""

    def __init__(
        self,
        db: Database,
        settings: StoreSettings,
        clock: Clock,
        free_bytes: Callable[[], int],
    ) -> None:
        self._db = db
        self._dir = settings.resolved_media_dir
        self._max_bytes = settings.media_max_bytes
        self._warn = settings.warn_free_bytes
        self._clock = clock
        self._free_bytes = free_bytes
        self._ids = UUIDv7Generator()
        # Serialises quota decisions so two photos cannot both squeeze into
        # the last free slot.
        self._put_lock = threading.Lock()
        # Photos whose files were deleted on a full disk before their rows
        # could be marked EVICTED: id -> reason. Guarded by the write lock.
        self._unrecorded: dict[str, str] = {}

    @property
    def directory(self) -> Path:
        """The directory holding the photo files."""
        return self._dir

    def path(self, media_id: str) -> Path:
        """Return the file path of a photo (which may have been evicted)."""
        name = str(media_id)
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"media_id: {media_id!r} is not a media id")
        return self._dir / name

    # -- start-up ---------------------------------------------------------------------

    def start(self) -> None:
        """Create the directory and reconcile files with rows after a crash:
        rows whose file vanished become EVICTED, files with no live row
        (half-written, or evicted just before the crash) are deleted."""
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._db.reader() as conn:
            live = {
                row[0] for row in conn.execute("SELECT id FROM media WHERE state < 2").fetchall()
            }
        present = set()
        for entry in os.scandir(self._dir):
            if entry.name in live and entry.is_file():
                present.add(entry.name)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                log.info("media: removed stray file %s", entry.path)
        missing = live - present
        if missing:
            with self._db.transaction("media start-up") as conn:
                conn.executemany(
                    "UPDATE media SET state = 2, evicted_reason = 'file missing at start-up' "
                    "WHERE id = ?",
                    [(media_id,) for media_id in missing],
                )
            log.warning("media: %d photo files were missing at start-up", len(missing))

    # -- writing ----------------------------------------------------------------------

    def put(
        self, data: bytes, *, content_type: str = "image/jpeg", event_id: str | None = None
    ) -> MediaItem:
        """Store a photo durably (file fsynced, row committed); return its record.

        Raises :class:`MediaRefused` if the quota or the free-space floor
        would be crossed even after evicting uploaded photos, or if the disk
        fills while writing; :class:`ValueError` for empty data or content
        type. Access events are unaffected either way.
        """
        if not isinstance(data, bytes | bytearray | memoryview) or not len(data):
            raise ValueError("data: a photo needs some bytes")
        if not isinstance(content_type, str) or "/" not in content_type:
            raise ValueError(f"content_type: {content_type!r} is not a media type")
        data = bytes(data)
        size = len(data)
        with self._put_lock:
            self._make_room(size)
            now_ms = self._clock.wall_ms()
            media_id = self._ids.next(now_ms)
            digest = hashlib.sha256(data).digest()
            self._write_file(media_id, data)
            try:
                with self._db.transaction("media put") as conn:
                    conn.execute(
                        f"INSERT INTO media ({_ROW}) VALUES (?, ?, ?, ?, ?, ?, 0, NULL)",
                        (media_id, event_id, content_type, size, digest, now_ms),
                    )
            except BaseException:
                with contextlib.suppress(OSError):
                    self.path(media_id).unlink()
                raise
        return MediaItem(
            media_id, event_id, content_type, size, digest.hex(), now_ms, MediaState.PENDING
        )

    def _make_room(self, size: int) -> None:
        used = self.usage().bytes
        if used + size > self._max_bytes:
            self.evict(bytes_needed=used + size - self._max_bytes, reason="media quota")
            if self.usage().bytes + size > self._max_bytes:
                raise MediaRefused(
                    f"photo of {size} bytes refused: media quota of {self._max_bytes} bytes "
                    "is full of photos not uploaded yet"
                )
        free = self._free_bytes()
        if free - size < self._warn:
            self.evict(bytes_needed=self._warn + size - free, reason="disk low")
            free = self._free_bytes()
            if free - size < self._warn:
                raise MediaRefused(
                    f"photo of {size} bytes refused: {free} bytes free, the journal keeps "
                    f"{self._warn} bytes for access events"
                )

    def _write_file(self, media_id: str, data: bytes) -> None:
        final = self.path(media_id)
        tmp = self._dir / f".{media_id}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise MediaRefused(
                    f"photo refused: the disk filled while writing it ({exc})"
                ) from exc
            raise

    def mark_uploaded(self, media_id: str) -> bool:
        """Record that the central has the photo; return False if it is
        unknown or no longer pending."""
        with self._db.transaction("media mark_uploaded") as conn:
            return (
                conn.execute(
                    "UPDATE media SET state = 1 WHERE id = ? AND state = 0", (media_id,)
                ).rowcount
                == 1
            )

    def evict(
        self,
        *,
        bytes_needed: int | None = None,
        include_pending: bool = False,
        reason: str = "disk pressure",
    ) -> EvictResult:
        """Delete photo files, uploaded ones first then (if
        ``include_pending``) ones not uploaded yet, oldest first, until
        ``bytes_needed`` were given back (all candidates if None)."""
        with self._db.write_lock:
            conn = self._db.check_writable()
            return self.evict_locked(conn, bytes_needed, include_pending, reason)

    def evict_locked(
        self,
        conn: sqlite3.Connection,
        bytes_needed: int | None,
        include_pending: bool,
        reason: str,
        *,
        files_first: bool = False,
    ) -> EvictResult:
        """:meth:`evict` for a caller that already holds the write lock.

        ``files_first`` is for a full disk: the files are deleted before the
        rows are marked, because marking them needs the very space the files
        hold. If marking still fails, the ids are recorded later (next media
        call, or start-up, which finds the files missing).
        """
        self._record_unrecorded(conn)
        states = "(0, 1)" if include_pending else "(1)"
        rows = conn.execute(
            f"SELECT id, size FROM media WHERE state IN {states} "
            "ORDER BY state DESC, created_ms, id"
        ).fetchall()
        chosen: list[str] = []
        freed = 0
        for media_id, size in rows:
            if media_id in self._unrecorded:
                continue
            if bytes_needed is not None and freed >= bytes_needed:
                break
            chosen.append(media_id)
            freed += size
        if not chosen:
            return EvictResult()
        if files_first:
            self._unlink(chosen)
            self._unrecorded.update((media_id, reason) for media_id in chosen)
            self._record_unrecorded(conn)
        else:
            with self._db.locked_transaction(conn, "media evict"):
                conn.executemany(
                    "UPDATE media SET state = 2, evicted_reason = ? WHERE id = ?",
                    [(reason, media_id) for media_id in chosen],
                )
            # Rows first, files second: a crash in between leaves files that
            # start() removes, never a live row without its file.
            self._unlink(chosen)
        log.warning("media: evicted %d photos (%d bytes): %s", len(chosen), freed, reason)
        return EvictResult(len(chosen), freed, tuple(chosen))

    def _unlink(self, media_ids: list[str]) -> None:
        for media_id in media_ids:
            with contextlib.suppress(FileNotFoundError):
                self.path(media_id).unlink()

    def _record_unrecorded(self, conn: sqlite3.Connection) -> None:
        """Mark EVICTED the photos whose files went while the disk was full."""
        if not self._unrecorded:
            return
        pending = dict(self._unrecorded)
        try:
            with self._db.locked_transaction(conn, "media record evictions"):
                conn.executemany(
                    "UPDATE media SET state = 2, evicted_reason = ? WHERE id = ?",
                    [(reason, media_id) for media_id, reason in pending.items()],
                )
        except StoreError as exc:
            log.warning("media: %d evictions not recorded yet: %s", len(pending), exc)
            return
        for media_id in pending:
            self._unrecorded.pop(media_id, None)

    def prune(self, before_ms: int) -> int:
        """Forget uploaded and evicted photos created before ``before_ms``
        (files of uploaded ones are deleted too); return how many."""
        with self._db.transaction("media prune") as conn:
            rows = conn.execute(
                "SELECT id, state FROM media WHERE state > 0 AND created_ms < ?", (before_ms,)
            ).fetchall()
            conn.executemany("DELETE FROM media WHERE id = ?", [(row[0],) for row in rows])
        for media_id, state in rows:
            if state == MediaState.UPLOADED:
                with contextlib.suppress(FileNotFoundError):
                    self.path(media_id).unlink()
        return len(rows)

    # -- reading ----------------------------------------------------------------------

    def item(self, media_id: str) -> MediaItem | None:
        """Return the photo's record, or None."""
        with self._db.reader() as conn:
            row = conn.execute(f"SELECT {_ROW} FROM media WHERE id = ?", (media_id,)).fetchone()
        return None if row is None else _item(row)

    def get(self, media_id: str) -> bytes:
        """Return the photo's bytes. Raises :class:`KeyError` if it is
        unknown or was evicted."""
        item = self.item(media_id)
        if item is None or item.state is MediaState.EVICTED:
            raise KeyError(media_id)
        try:
            return self.path(media_id).read_bytes()
        except FileNotFoundError:
            raise KeyError(media_id) from None

    def pending(self, limit: int = 50) -> list[MediaItem]:
        """Return up to ``limit`` photos awaiting upload, oldest first."""
        with self._db.reader() as conn:
            rows = conn.execute(
                f"SELECT {_ROW} FROM media WHERE state = 0 ORDER BY created_ms, id LIMIT ?",
                (limit,),
            ).fetchall()
        return [_item(row) for row in rows if row[0] not in self._unrecorded]

    def usage(self) -> MediaUsage:
        """Return the photos on disk and their total size."""
        with self._db.reader() as conn:
            if not self._unrecorded:
                count, total, pending = conn.execute(
                    "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(state = 0), 0) "
                    "FROM media WHERE state < 2"
                ).fetchone()
                return MediaUsage(count, total, pending)
            rows = conn.execute("SELECT id, size, state FROM media WHERE state < 2").fetchall()
        rows = [row for row in rows if row[0] not in self._unrecorded]
        return MediaUsage(
            len(rows), sum(row[1] for row in rows), sum(1 for row in rows if row[2] == 0)
        )
