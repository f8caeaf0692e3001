"""The journal's high-water mark: the newest committed event, kept apart from the WAL.

SQLite's WAL *is* the commit: a WAL truncated, deleted or with a damaged frame
(a failing SD card, an unclean power cut) silently rolls the database back to
an earlier commit, and the journal's own tables cannot tell that anything was
ever there. This small file next to the database (``<db>.hwm``) records the
sequence number, hash and id of the newest committed event, so that a start
on a rolled-back journal sees the loss (:meth:`Journal.start
<edge_agent.store.journal.Journal.start>`: a ``journal.gap`` event, numbering
above the mark).

Cost on a decision's path: one ``pwrite`` of 64 bytes into the page cache after
each commit, no fsync. A background thread ``fdatasync``\\ s the file at most
once per :data:`SYNC_DELAY_S` after a change (and at close), so a power cut
loses at most the last second of marks -- while the kernel's own write-back
alone would leave up to 30 s.

What it detects: any loss of committed events after the mark reached the disk
(WAL truncated, deleted, a bad frame and everything after it). What it cannot:
a loss together with the loss of this file (a missing file is taken as a new
store, or one older than this feature), or events lost within the second
before a power cut that also damaged the WAL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Record: magic, seq (u64), hash (32 bytes), id (16 bytes), CRC-32 of what precedes.
_MAGIC = b"PHWM1\0\0\0"
_BODY = struct.Struct(">8sQ32s16s")
_RECORD = struct.Struct(">8sQ32s16sI")
#: Longest time a changed mark stays unsynced.
SYNC_DELAY_S = 1.0


@dataclass(frozen=True)
class Mark:
    """The newest committed event as recorded: its seq, hash and id bytes."""

    seq: int
    hash: bytes
    id: bytes


class HighWater:
    """The ``<db>.hwm`` file, written by the store's single writer process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.seq = 0

    # -- reading ------------------------------------------------------------------

    @staticmethod
    def read(path: Path) -> Mark | None:
        """Return the recorded mark, or None if there is none or it is unreadable
        (logged: then nothing can be checked against it)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("journal: high-water mark %s unreadable: %s", path, exc)
            return None
        if not data:
            return None  # created, never written: no commit since this feature came
        if len(data) < _RECORD.size:
            log.warning("journal: high-water mark %s is short (%d bytes)", path, len(data))
            return None
        magic, seq, digest, raw_id, crc = _RECORD.unpack_from(data)
        if magic != _MAGIC or crc != zlib.crc32(data[: _BODY.size]):
            log.warning("journal: high-water mark %s is damaged; not checked", path)
            return None
        return Mark(seq, digest, raw_id)

    # -- writing -----------------------------------------------------------------

    def open(self) -> None:
        """Open the file for writing and start the sync thread."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._fd = fd
        self._thread = threading.Thread(
            target=self._sync_loop, name="journal-hwm-sync", daemon=True
        )
        self._thread.start()

    def record(self, seq: int, digest: bytes, raw_id: bytes) -> None:
        """Record ``seq`` as the newest committed event (after its commit returned).

        Never raises: a failed write only weakens detection, it must not fail a
        decision that is already durable.
        """
        fd = self._fd
        if fd is None:
            return
        body = _BODY.pack(_MAGIC, seq, digest, raw_id)
        try:
            os.pwrite(fd, body + struct.pack(">I", zlib.crc32(body)), 0)
        except OSError as exc:
            log.warning("journal: high-water mark not written: %s", exc)
            return
        self.seq = seq
        # Set only when clear (the sync thread clears it before it syncs, so a
        # set flag already covers this write): Event.set takes a lock and
        # notifies waiters at every commit otherwise.
        if not self._dirty.is_set():
            self._dirty.set()

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.wait(SYNC_DELAY_S):
                break
            self._dirty.clear()
            self._sync()

    def _sync(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    os.fdatasync(self._fd)
                except OSError as exc:
                    log.warning("journal: high-water mark not synced: %s", exc)

    def close(self) -> None:
        """Sync and close the file. Idempotent."""
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._sync()
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
