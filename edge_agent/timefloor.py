"""The time floor: the latest time the agent trusts, so that a clock set back cannot
resurrect expired credentials.

A Raspberry Pi has no battery-backed clock: after a power cut it boots with the time it
saved last (or 1970), and anyone with root, or an unauthenticated NTP answer on the
LAN, can set the clock back. Every expiry the door checks is then checked against a
wrong "now". The floor is a lower bound of the real time, learnt from sources the
agent trusts more than its own wall clock:

* ``journal``: the wall time of the newest journal event, read at start-up (the clock
  was at least there when the agent last wrote);
* ``central``: the ``server_time_ms`` of a central heartbeat answer (TLS, the CA pinned
  in ``[central] ca_file``);
* ``ntp``: the wall clock itself while the OS says it is NTP-synchronised
  (:func:`os_clock_synchronised`, the kernel's ``adjtimex`` as ``timedatectl`` reads it).

Between observations the floor advances with the monotonic clock (which a clock
setting does not move), discounted by :data:`DRIFT_ALLOWANCE` so that ordinary clock
drift never looks like a clock set back. It is kept in the store's ``meta`` table
(``time_floor.ms``, durable: ``synchronous=FULL``) and only moves forward, with one
exception: a central heartbeat that says our wall clock is right (offset within the
tolerance) while the floor is ahead of it. The floor then came from a clock that ran
ahead (say, a wrong date journaled once), and the central, the site's time authority,
resets it to its own time.

The wall clock is *trusted* while it is at or above the floor minus the tolerance
(``[door] max_clock_skew_s``). NTP never vouches for a clock below the floor: a
spoofed NTP answer is exactly how a clock is set back.

:class:`TimeFloor` is thread-safe; the agent asks it on every decision
(:meth:`TimeFloor.assess`) and feeds it heartbeats (:meth:`TimeFloor.observe_central`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.store import Store, StoreError
from edge_agent.store.db import Database

log = logging.getLogger(__name__)

__all__ = [
    "DRIFT_ALLOWANCE",
    "META_FLOOR_MS",
    "META_FLOOR_SOURCE",
    "ClockTrust",
    "TimeFloor",
    "os_clock_synchronised",
    "record_floor",
]

#: ``meta`` rows holding the durable floor (Unix ms) and the source that set it.
META_FLOOR_MS = "time_floor.ms"
META_FLOOR_SOURCE = "time_floor.source"

#: The floor advances with the monotonic clock at (1 - this) of its rate: 1000 ppm,
#: twice the kernel's largest frequency correction (500 ppm), so a crystal running
#: fast and then corrected never leaves the wall clock below the floor. The price:
#: the floor lags the real time by 0.1 % of the time since the last observation
#: (86 s a day), which bounds how far back an undetected clock setting can go.
DRIFT_ALLOWANCE = 1e-3

#: The extrapolated floor is written to the store when it moved this far (seconds).
PERSIST_STEP_S = 60.0
#: How often the OS is asked whether its clock is NTP-synchronised (seconds).
NTP_CHECK_INTERVAL_S = 60.0

#: systemd's ``ntp_synced()``: synchronised while the kernel's maximum error is below 16 s.
_MAX_ERROR_US = 16_000_000


class _Timex(ctypes.Structure):
    """The head of ``struct timex`` (``man 2 adjtimex``); the rest is spare room."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    )


def os_clock_synchronised() -> bool:
    """True when the kernel says the wall clock is NTP-synchronised.

    The test ``timedatectl``'s ``NTPSynchronized`` makes (systemd's ``ntp_synced()``):
    a read-only ``adjtimex`` (``modes = 0``, no privilege needed) whose maximum error is
    below 16 s. chrony, ntpd and systemd-timesyncd all keep it up to date. False where
    the call is not available (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        timex = _Timex()
        if libc.adjtimex(ctypes.byref(timex)) < 0:
            return False
    except (OSError, AttributeError):
        return False
    return 0 <= timex.maxerror < _MAX_ERROR_US


@dataclass(frozen=True)
class ClockTrust:
    """Whether the wall clock can be believed right now.

    ``floor`` is the latest trusted time (Unix seconds; None: nothing observed yet),
    ``source`` what set it, ``wall`` the wall clock when assessed.
    """

    trusted: bool
    wall: float
    floor: float | None
    source: str | None

    @property
    def behind_s(self) -> float:
        """How far the wall clock is below the floor (0 when not below)."""
        return 0.0 if self.floor is None else max(0.0, self.floor - self.wall)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form shown in the agent's status."""
        return {
            "trusted": self.trusted,
            "floor": None if self.floor is None else round(self.floor, 3),
            "source": self.source,
            "behind_s": round(self.behind_s, 1),
        }


def _db(store: Store) -> Database:
    # The meta table is the store's key/value room for agent state (docs/journal.md).
    return store._db


def record_floor(store: Store, floor_s: float, source: str) -> None:
    """Write ``floor_s`` (Unix seconds) as the durable floor, in one transaction.

    For :class:`TimeFloor` and for tools that seed a store (tests, provisioning).
    Raises :class:`~edge_agent.store.StoreError` if the store cannot be written.
    """
    with _db(store).transaction("time floor") as conn:
        Database.meta_set(conn, META_FLOOR_MS, int(floor_s * 1000))
        Database.meta_set(conn, META_FLOOR_SOURCE, source)


def _load_floor(store: Store) -> tuple[float | None, str | None]:
    with _db(store).reader() as conn:
        raw = Database.meta_get(conn, META_FLOOR_MS)
        source = Database.meta_get(conn, META_FLOOR_SOURCE)
    try:
        return (None if raw is None else int(raw) / 1000.0), (
            None if source is None else str(source)
        )
    except (TypeError, ValueError):
        log.error("time floor in the store is not a number (%r): ignored", raw)
        return None, None


class TimeFloor:
    """The durable, monotonic lower bound of the real time (module docstring).

    Args:
        store: where the floor is kept (its ``meta`` table) and whose journal head is
            read by :meth:`observe_journal`.
        wall: the wall clock, Unix seconds (the agent's, injectable).
        mono: a monotonic clock, seconds.
        tolerance_s: how far the wall clock may be below the floor and still be trusted,
            and how close the central's time must be to vouch for ours.
        ntp_synced: whether the OS clock is NTP-synchronised (None: never asked).
    """

    def __init__(
        self,
        store: Store,
        *,
        wall: Callable[[], float],
        mono: Callable[[], float],
        tolerance_s: float,
        ntp_synced: Callable[[], bool] | None = os_clock_synchronised,
    ) -> None:
        self._store = store
        self._wall = wall
        self._mono = mono
        self.tolerance_s = float(tolerance_s)
        self._ntp_synced = ntp_synced
        self._lock = threading.Lock()
        floor, source = _load_floor(store)
        #: (floor at ``_base_mono``, the monotonic time then, its source)
        self._base: float | None = floor
        self._base_mono = mono()
        self._source = source
        self._persisted = floor
        self._ntp_checked: float | None = None

    # -- reading ---------------------------------------------------------------------
    def floor(self) -> float | None:
        """The floor now (Unix seconds), None while nothing was observed."""
        with self._lock:
            return self._floor_locked(self._mono())

    def _floor_locked(self, mono: float) -> float | None:
        if self._base is None:
            return None
        elapsed = max(0.0, mono - self._base_mono)
        return self._base + elapsed * (1.0 - DRIFT_ALLOWANCE)

    def assess(self, now: float | None = None, *, upkeep: bool = True) -> ClockTrust:
        """Whether wall time ``now`` (default: the wall clock) can be trusted.

        With ``upkeep``, asks the OS about NTP at most every :data:`NTP_CHECK_INTERVAL_S`,
        and writes the extrapolated floor to the store when it moved
        :data:`PERSIST_STEP_S` since the last write (so a restart keeps it even if
        nothing was journaled meanwhile). Without it, only memory is read: what a
        decision's path uses (the periodic clock check does the upkeep).
        """
        wall = self._wall() if now is None else now
        if upkeep:
            self._maybe_ntp(wall)
        with self._lock:
            floor = self._floor_locked(self._mono())
            source = self._source
            persist = (
                upkeep
                and floor is not None
                and (self._persisted is None or floor - self._persisted >= PERSIST_STEP_S)
            )
        if persist:
            assert floor is not None
            self._persist(floor, source or "monotonic")
        trusted = floor is None or wall >= floor - self.tolerance_s
        return ClockTrust(trusted, wall, floor, source)

    # -- observations ----------------------------------------------------------------
    def observe(self, t: float, source: str) -> bool:
        """Raise the floor to ``t`` (Unix seconds) if it is ahead; return True if it was.

        Written to the store when it moved by :data:`PERSIST_STEP_S` or more since the
        last write, or at once for the journal's (read once, at start-up).
        """
        with self._lock:
            mono = self._mono()
            current = self._floor_locked(mono)
            if current is not None and t <= current:
                return False
            self._base, self._base_mono, self._source = t, mono, source
            # The journal's floor is written at once (it is read once, at start-up); the
            # central's and NTP's, seen every heartbeat, when they moved far enough.
            persist = (
                source == "journal"
                or self._persisted is None
                or t - self._persisted >= PERSIST_STEP_S
            )
        if persist:
            self._persist(t, source)
        return True

    def observe_journal(self) -> bool:
        """Observe the wall time of the newest journal event (call at start-up, before
        the agent journals anything). Returns True if the floor moved."""
        journal = self._store.journal
        head = journal.head()
        event = journal.get(head.seq) if head.seq else None
        if event is None:  # an empty or fully trimmed journal: nothing to learn
            return False
        return self.observe(event.wall_ms / 1000.0, "journal")

    def observe_central(self, server_time_s: float, offset_s: float) -> float | None:
        """Observe the central's time from a heartbeat answer.

        ``offset_s`` is the central's clock minus ours (NTP formula, see
        :func:`edge_agent.sync.link.clock_offset_ms`). When it is within the tolerance the
        central vouches for our wall clock: if the floor is then ahead of the wall clock
        by more than the tolerance, it came from a clock that ran ahead and is reset to
        the central's time. Returns the old floor when it was reset (for the journal),
        else None.
        """
        wall = self._wall()
        vouched = abs(offset_s) <= self.tolerance_s
        with self._lock:
            mono = self._mono()
            current = self._floor_locked(mono)
            reset = (
                vouched
                and current is not None
                and wall < current - self.tolerance_s
                and server_time_s < current
            )
            if reset:
                self._base, self._base_mono, self._source = server_time_s, mono, "central"
        if reset:
            log.warning(
                "time floor reset from %.3f to the central's %.3f (the central vouches for "
                "the wall clock %.3f)",
                current,
                server_time_s,
                wall,
            )
            self._persist(server_time_s, "central")
            return current
        self.observe(server_time_s, "central")
        return None

    def _maybe_ntp(self, wall: float) -> None:
        if self._ntp_synced is None:
            return
        mono = self._mono()
        with self._lock:
            due = self._ntp_checked is None or mono - self._ntp_checked >= NTP_CHECK_INTERVAL_S
            if due:
                self._ntp_checked = mono
        if not due:
            return
        try:
            synced = self._ntp_synced()
        except Exception:
            log.exception("could not ask the OS whether its clock is synchronised")
            return
        if synced:
            self.observe(wall, "ntp")

    def _persist(self, floor: float, source: str) -> None:
        try:
            record_floor(self._store, floor, source)
        except StoreError as exc:
            # The floor stays in memory; the next observation writes it again.
            log.error("time floor not written to the store: %s", exc)
            return
        with self._lock:
            self._persisted = floor
