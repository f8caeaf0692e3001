"""Sync alarms: raised and cleared as journal events, listed in status and heartbeats.

An alarm is raised once (one ``sync.alarm`` event with ``"state": "raised"``)
and stays active until cleared (one event with ``"state": "cleared"``); raising
an active alarm again journals nothing, so a condition that persists does not
flood the journal. The codes are listed in :data:`ALARM_CODES` and in
``docs/sync.md``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["ALARM_CODES", "ALARM_EVENT", "ActiveAlarm", "Alarms"]

#: The journal event type of every raise and clear.
ALARM_EVENT = "sync.alarm"

#: Every alarm the sync raises, with what it means.
ALARM_CODES: dict[str, str] = {
    "not_enrolled": "no device credential: run `edge-agent enroll` with a one-time token",
    "enrollment_needed": "the central refused the device credential (401): re-enroll",
    "device_disabled": "the central disabled this device (403)",
    "api_mismatch": "the central answered 404 or another unexpected status: versions differ",
    "dead_letter": "the central rejected events for good; they are kept as dead letters",
    "gap_unrecoverable": "the central lacks events this journal no longer holds",
    "chain_broken": "the central reports this device's hash chain broken",
    "backlog": "events waiting for upload passed a configured threshold",
    "disk_low": "free disk space is below the store's warning threshold",
    "journal_damaged": "the start-up checks found journal events lost or altered on this device",
    "clock_drift": "the local clock differs from the central's by more than the limit",
    "bad_delta": "the central sent a deltas page the agent cannot apply",
    "tls": "the central's TLS certificate does not verify against the CA file",
    "stale_cache": "the credential cache nears (or passed) the door's maximum offline staleness",
}


@dataclass(frozen=True)
class ActiveAlarm:
    """An alarm that is up: its code, since when (Unix ms) and the latest detail."""

    code: str
    since_ms: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form used in status and heartbeats."""
        return {"code": self.code, "since_ms": self.since_ms, "detail": self.detail}


class Alarms:
    """The set of active sync alarms.

    Args:
        journal: appends one event durably (``Agent.journal`` or
            ``store.journal.append``); called with the lock released.
        wall_ms: the wall clock in Unix ms (injectable for tests).
    """

    def __init__(
        self,
        journal: Callable[[str, dict[str, Any]], Any],
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self._journal = journal
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._active: dict[str, ActiveAlarm] = {}

    def raise_(self, code: str, detail: str, **extra: Any) -> bool:
        """Raise alarm ``code``; return True if it was not active before (then it is
        journaled, with ``extra`` in the payload). An active alarm only has its detail
        updated. Raises :class:`ValueError` for an unknown code."""
        if code not in ALARM_CODES:
            raise ValueError(f"code: {code!r} is not a sync alarm")
        with self._lock:
            current = self._active.get(code)
            if current is not None:
                self._active[code] = ActiveAlarm(code, current.since_ms, detail)
                return False
            self._active[code] = ActiveAlarm(code, self._wall_ms(), detail)
        log.warning("sync alarm %s: %s", code, detail)
        self._write({"alarm": code, "state": "raised", "detail": detail, **extra})
        return True

    def note(self, code: str, detail: str, **extra: Any) -> None:
        """Journal another ``raised`` event for ``code`` even if it is active (new facts,
        e.g. more dead letters), and keep it active."""
        if code not in ALARM_CODES:
            raise ValueError(f"code: {code!r} is not a sync alarm")
        with self._lock:
            current = self._active.get(code)
            since = current.since_ms if current is not None else self._wall_ms()
            self._active[code] = ActiveAlarm(code, since, detail)
        log.warning("sync alarm %s: %s", code, detail)
        self._write({"alarm": code, "state": "raised", "detail": detail, **extra})

    def clear(self, code: str) -> bool:
        """Clear alarm ``code``; return True if it was active (then it is journaled)."""
        with self._lock:
            if self._active.pop(code, None) is None:
                return False
        log.info("sync alarm %s cleared", code)
        self._write({"alarm": code, "state": "cleared"})
        return True

    def is_active(self, code: str) -> bool:
        """True while alarm ``code`` is up."""
        with self._lock:
            return code in self._active

    def active(self) -> list[ActiveAlarm]:
        """Return the active alarms, oldest first."""
        with self._lock:
            return sorted(self._active.values(), key=lambda a: (a.since_ms, a.code))

    def _write(self, payload: dict[str, Any]) -> None:
        try:
            self._journal(ALARM_EVENT, payload)
        except Exception:
            # A full or failing store must not stop the sync; the alarm stays in
            # memory (status, heartbeat) even if its event could not be written.
            log.exception("could not journal sync alarm %s", payload.get("alarm"))
