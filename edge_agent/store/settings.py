"""Typed, validated settings of the durable store (``[store]`` in agent.toml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from portier_common.settings import ConfigError, integer, number

MIB = 1024 * 1024


@dataclass(frozen=True)
class StoreSettings:
    """Where the store lives and how it protects the journal.

    Free-space thresholds are measured on the file system that holds ``path``
    (and ``media_dir``, which should be on the same one):

    * below ``warn_free_bytes`` the store reports :attr:`Pressure.LOW` (the
      agent raises its disk alarm) and new photos are refused unless evicting
      already-uploaded photos makes room;
    * below ``critical_free_bytes`` it reports :attr:`Pressure.CRITICAL` and
      :meth:`Store.relieve_pressure` evicts photos not uploaded yet as well.

    ``reserve_bytes`` is a pre-allocated file next to the database, released
    when SQLite reports the disk full, so that access events can still be
    journaled for a while after something else filled the disk (0 disables it).
    ``max_db_bytes`` caps the database file itself (SQLite ``max_page_count``);
    None means only the disk limits it.
    """

    path: Path
    #: Photos directory; default ``<path>.media`` next to the database.
    media_dir: Path | None = None
    busy_timeout_s: float = 5.0
    #: Acknowledged events kept in the journal (for ``journal verify`` and
    #: local inspection) before older ones are trimmed.
    keep_acked: int = 10_000
    #: Trim once this many acknowledged events beyond ``keep_acked`` exist, so
    #: that trimming is a batch delete, not one per acknowledgement.
    trim_batch: int = 1_000
    warn_free_bytes: int = 256 * MIB
    critical_free_bytes: int = 64 * MIB
    reserve_bytes: int = 32 * MIB
    media_max_bytes: int = 512 * MIB
    max_db_bytes: int | None = None
    #: Largest canonical JSON payload accepted by the journal; photos go to media.
    max_payload_bytes: int = 64 * 1024
    #: WAL pages after which the committing writer copies the WAL back into
    #: the database (SQLite's ``wal_autocheckpoint``).
    checkpoint_pages: int = 1_000
    #: SQLite page size for a new database file (an existing file keeps its
    #: own). WAL commits write whole pages, so this is the unit every durable
    #: append writes (twice: the events table and its id index).
    page_size: int = 4096

    def __post_init__(self) -> None:
        if isinstance(self.path, str):
            object.__setattr__(self, "path", Path(self.path))
        if not isinstance(self.path, Path) or not str(self.path) or self.path.is_dir():
            raise ConfigError("path", f"{self.path!r} must be the path of a database file")
        if isinstance(self.media_dir, str):
            object.__setattr__(self, "media_dir", Path(self.media_dir))
        if self.media_dir is not None and not isinstance(self.media_dir, Path):
            raise ConfigError("media_dir", f"{self.media_dir!r} must be a directory path")
        number("busy_timeout_s", self.busy_timeout_s, above=0, high=600, unit=" seconds")
        integer("keep_acked", self.keep_acked, 0)
        integer("trim_batch", self.trim_batch, 1)
        integer("warn_free_bytes", self.warn_free_bytes, 0)
        integer("critical_free_bytes", self.critical_free_bytes, 0)
        if self.critical_free_bytes > self.warn_free_bytes:
            raise ConfigError(
                "critical_free_bytes",
                f"{self.critical_free_bytes} must not exceed "
                f"warn_free_bytes ({self.warn_free_bytes})",
            )
        integer("reserve_bytes", self.reserve_bytes, 0)
        integer("media_max_bytes", self.media_max_bytes, 0)
        if self.max_db_bytes is not None:
            integer("max_db_bytes", self.max_db_bytes, 64 * 1024)
        integer("max_payload_bytes", self.max_payload_bytes, 256)
        integer("checkpoint_pages", self.checkpoint_pages, 10)
        if self.page_size not in (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536):
            raise ConfigError("page_size", f"{self.page_size!r} must be a power of two, 512..65536")

    @property
    def resolved_media_dir(self) -> Path:
        """The photos directory: ``media_dir`` or ``<path>.media``."""
        if self.media_dir is not None:
            return self.media_dir
        return self.path.with_name(self.path.name + ".media")

    @property
    def reserve_path(self) -> Path:
        """The pre-allocated reserve file released on a full disk."""
        return self.path.with_name(self.path.name + ".reserve")

    @property
    def high_water_path(self) -> Path:
        """The journal's high-water mark, kept apart from the WAL (store/highwater.py)."""
        return self.path.with_name(self.path.name + ".hwm")

    @property
    def lock_path(self) -> Path:
        """The lock file that keeps a second writer process out."""
        return self.path.with_name(self.path.name + ".lock")
