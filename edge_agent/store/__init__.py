"""Durable state of the edge agent: journal, credential cache, replay ledger.

One SQLite database in WAL mode (``synchronous=FULL``), written by one
process, with versioned migrations. Open it once::

    from edge_agent.store import Store, StoreSettings

    with Store.open(StoreSettings(path=Path("/var/lib/portier/agent.sqlite"))) as store:
        event = store.journal.append("access.decision", {"door": "front", "granted": True})
        # event is durable here: now the door may act.

* :attr:`Store.journal` -- append-only, hash-chained events with per-event
  sync state for the uplink (:class:`Journal`);
* :attr:`Store.cache` -- badges, invitations, revocations, signing keys and
  schedules, updated by atomic deltas (:class:`CredentialCache`);
* :attr:`Store.replay` -- used single-use invitations and NTAG 424 counters
  (:class:`ReplayLedger`);
* :attr:`Store.media` -- photos, evicted first when space runs out
  (:class:`MediaStore`); :meth:`Store.disk_pressure` for the alarm;
* :attr:`Store.guard_lockouts` -- guard login failures and lockouts per
  normalised identity, durable (:class:`GuardLockouts`).

The file format, hash encoding and guarantees are in ``docs/journal.md``.
Importing this package has no side effects.
"""

from __future__ import annotations

from edge_agent.store.cache import (
    BADGE_KINDS,
    Badge,
    CacheCounts,
    CachedSchedule,
    CachedSigningKey,
    CredentialCache,
    Delta,
    DownlinkState,
    Invitation,
    Revocation,
    RevocationKind,
)
from edge_agent.store.disk import DiskPressure, DiskUsage, Pressure, statvfs_usage
from edge_agent.store.errors import (
    CursorMismatch,
    InvalidEvent,
    MediaRefused,
    SchemaError,
    StoreClosed,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreIOError,
    StoreLocked,
    StoreReadOnly,
)
from edge_agent.store.guardlock import GuardLockouts, LockoutState
from edge_agent.store.journal import (
    ChainHead,
    Event,
    Journal,
    SyncCounts,
    SyncStatus,
    VerifyResult,
)
from edge_agent.store.media import EvictResult, MediaItem, MediaState, MediaStore, MediaUsage
from edge_agent.store.replay import ReplayLedger
from edge_agent.store.schema import SCHEMA_VERSION
from edge_agent.store.settings import StoreSettings
from edge_agent.store.store import Store
from portier_common.encoding import (
    GENESIS_HASH,
    Clock,
    SystemClock,
    UUIDv7Generator,
    canonical_json,
    event_hash,
    event_preimage,
)

__all__ = [
    "BADGE_KINDS",
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "Badge",
    "CacheCounts",
    "CachedSchedule",
    "CachedSigningKey",
    "ChainHead",
    "Clock",
    "CredentialCache",
    "CursorMismatch",
    "Delta",
    "DiskPressure",
    "DiskUsage",
    "DownlinkState",
    "Event",
    "EvictResult",
    "GuardLockouts",
    "InvalidEvent",
    "Invitation",
    "Journal",
    "LockoutState",
    "MediaItem",
    "MediaRefused",
    "MediaState",
    "MediaStore",
    "MediaUsage",
    "Pressure",
    "ReplayLedger",
    "Revocation",
    "RevocationKind",
    "SchemaError",
    "Store",
    "StoreClosed",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreIOError",
    "StoreLocked",
    "StoreReadOnly",
    "StoreSettings",
    "SyncCounts",
    "SyncStatus",
    "SystemClock",
    "UUIDv7Generator",
    "VerifyResult",
    "canonical_json",
    "event_hash",
    "event_preimage",
    "statvfs_usage",
]
