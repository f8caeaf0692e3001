"""The journal's high-water mark: the newest committed event, kept apart from the WAL.

SQLite's WAL *is* the commit: a WAL truncated, deleted or with a damaged frame
(a failing SD card, an unclean power cut) silently rolls the database back to
an earlier commit, and the journal's own tables cannot tell that anything was
ever there. This small file next to the database (``<db>.hwm``) records the
sequence number, hash and id of the newest committed event, so that a start
on a rolled-back journal sees the loss (:meth:`Journal.start
<edge_agent.store.journal.Journal.start>`: a ``journal.gap`` event, numbering
above the mark).

Cost on a decision's path: the 68-byte record is built before the commit and
copied after it into a shared memory mapping of the file -- the page cache,
as a ``pwrite`` would put it there, without the system call: on the path from
the fsync back to the door a ``pwrite`` cost about 10 us more than the copy
(the thread comes back from the fsync on cold caches). No fsync: a background
thread checks once per :data:`SYNC_DELAY_S` and ``fdatasync``\\ s the file if a
mark was written since (and at close), so a power cut loses at most the last
second of marks -- while the kernel's own write-back alone would leave up to
30 s. The file holds two record slots, written in turn: a process killed in the
middle of a copy (kill -9 lands anywhere) can tear only the slot being written,
and a start then reads the other, one commit older -- still a mark below every
committed event, so detection stays on. The file is mapped once both slots were
written with ``pwrite`` (its block is then allocated: writing through the
mapping never needs new space), and, like SQLite's own ``-shm`` mapping, must
not be truncated while the store is open. A file of one slot (written before the
second slot came) reads as before.

What it detects: any loss of committed events after the mark reached the disk
(WAL truncated, deleted, a bad frame and everything after it). What it cannot:
a loss together with the loss of this file (a missing file is taken as a new
store, or one older than this feature), or events lost within the second
before a power cut that also damaged the WAL.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
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
_CRC = struct.Struct(">I")
_RECORD_SIZE = _RECORD.size
#: Two slots, written in turn (a torn copy damages one; the other is the mark before).
_SLOTS = 2
_FILE_SIZE = _SLOTS * _RECORD_SIZE
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
        self._map: mmap.mmap | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Marks written so far; the sync thread compares it with what it synced.
        self._written = 0
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
        if len(data) < _RECORD_SIZE:
            log.warning("journal: high-water mark %s is short (%d bytes)", path, len(data))
            return None
        marks = []
        for offset in range(0, min(len(data), _FILE_SIZE) - _RECORD_SIZE + 1, _RECORD_SIZE):
            magic, seq, digest, raw_id, crc = _RECORD.unpack_from(data, offset)
            body = data[offset : offset + _BODY.size]
            if magic == _MAGIC and crc == zlib.crc32(body):
                marks.append(Mark(seq, digest, raw_id))
        if not marks:
            log.warning("journal: high-water mark %s is damaged; not checked", path)
            return None
        # The newer of the two slots; a torn slot leaves the other, one commit older.
        return max(marks, key=lambda mark: mark.seq)

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
        self.write(seq, self.prepare(seq, digest, raw_id))

    @staticmethod
    def prepare(seq: int, digest: bytes, raw_id: bytes) -> bytes:
        """Return the record of ``seq`` for :meth:`write` (built before the commit,
        so that the path from the fsync back to the door does as little as it can)."""
        body = _BODY.pack(_MAGIC, seq, digest, raw_id)
        return body + _CRC.pack(zlib.crc32(body))

    def write(self, seq: int, record: bytes) -> None:
        """Write ``record`` (from :meth:`prepare`) once the commit of ``seq`` returned.

        Never raises, like :meth:`record`.
        """
        view = self._map
        if view is None:
            self._write_file(record)
        else:
            offset = (self._written % _SLOTS) * _RECORD_SIZE
            try:
                view[offset : offset + _RECORD_SIZE] = record
            except ValueError:  # closed by close() meanwhile
                return
        self.seq = seq
        self._written += 1

    def _write_file(self, record: bytes) -> None:
        """Write the record into both slots with ``pwrite``, then map the file for the
        next ones (both slots hold a whole record from then on)."""
        fd = self._fd
        if fd is None:
            return
        try:
            os.pwrite(fd, record * _SLOTS, 0)
        except OSError as exc:
            log.warning("journal: high-water mark not written: %s", exc)
            return
        with self._lock:
            if self._fd is None or self._map is not None:
                return
            try:
                self._map = mmap.mmap(fd, _FILE_SIZE)
            except (OSError, ValueError) as exc:
                # Still written, with a system call each time.
                log.warning("journal: high-water mark not mapped: %s", exc)

    def _sync_loop(self) -> None:
        synced = 0
        while not self._stop.wait(SYNC_DELAY_S):
            written = self._written
            if written != synced:
                synced = written
                self._sync()

    def _sync(self) -> None:
        # fdatasync writes back the pages written through the mapping too (Linux:
        # they are marked dirty when written), as msync(MS_SYNC) would.
        with self._lock:
            if self._fd is not None:
                try:
                    os.fdatasync(self._fd)
                except OSError as exc:
                    log.warning("journal: high-water mark not synced: %s", exc)

    def close(self) -> None:
        """Sync and close the file. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._sync()
        with self._lock:
            if self._map is not None:
                with contextlib.suppress(OSError, ValueError, BufferError):
                    self._map.close()
                self._map = None
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
