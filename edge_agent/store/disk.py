"""Free-space monitoring and the journal's reserve file."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

log = logging.getLogger(__name__)

#: ``disk_usage(path) -> (free_bytes, total_bytes)`` for the file system
#: holding ``path``; injectable so tests can simulate a filling disk.
DiskUsage = Callable[[Path], tuple[int, int]]


def statvfs_usage(path: Path) -> tuple[int, int]:
    """Return (bytes available to unprivileged users, total bytes) of the
    file system holding ``path`` -- the root-reserved blocks do not count,
    since the agent does not run as root."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


class Pressure(IntEnum):
    """How close the disk is to full."""

    OK = 0
    #: Below ``warn_free_bytes``: raise the alarm; new photos are refused.
    LOW = 1
    #: Below ``critical_free_bytes``: photos are evicted even if not uploaded.
    CRITICAL = 2


@dataclass(frozen=True)
class DiskPressure:
    """A snapshot of disk use, as returned by :meth:`Store.disk_pressure`."""

    level: Pressure
    free_bytes: int
    total_bytes: int
    db_bytes: int
    wal_bytes: int
    media_bytes: int
    media_count: int
    reserve_bytes: int
    warn_free_bytes: int
    critical_free_bytes: int

    @property
    def alarm(self) -> bool:
        """True when the agent should raise its disk-space alarm."""
        return self.level is not Pressure.OK


def level_for(free: int, warn: int, critical: int) -> Pressure:
    """Return the pressure level for ``free`` bytes given the thresholds."""
    if free < critical:
        return Pressure.CRITICAL
    if free < warn:
        return Pressure.LOW
    return Pressure.OK


class Reserve:
    """A pre-allocated file that is given back when the disk is full.

    The space it holds is space nobody else can take: releasing it lets the
    journal keep committing access events while the alarm is up.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    def present(self) -> int:
        """Return the reserve's size on disk (0 if released)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def ensure(self, free_bytes: int, floor: int) -> bool:
        """Create the reserve if it is missing and ``free_bytes`` minus its
        size stays above ``floor``; return True if it is in place."""
        if self.size == 0:
            return False
        if self.present() >= self.size:
            return True
        if free_bytes - self.size < floor:
            return False
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                # posix_fallocate allocates blocks (no sparse file), so the
                # space is really ours.
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("store: could not create the reserve file %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        return True

    def release(self) -> int:
        """Delete the reserve; return the bytes given back."""
        size = self.present()
        if size:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            log.warning("store: released the %d-byte reserve file for the journal", size)
        return size
