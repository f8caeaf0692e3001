"""Guard sessions at the kiosk: badge + PIN, salted PIN hashes, lockout, rate limit.

PINs are short, so the hash alone cannot protect them against someone who
copies the cache: what does is that only devices with a guard console keep PIN
hashes at all (``[guard] console``), PINs of at least
:data:`~portier_common.pins.MIN_PIN_DIGITS` digits, and scrypt's cost per try (the
arithmetic is in docs/configuration.md, ``[guard]``; ``bench/guard_pin.py`` measures it).
Online guessing is bounded by the lockout (per guard, durable: ``store.guard_lockouts``)
and a per-device rate limit (:class:`TokenBucket`). The hash format (:mod:`portier_common.pins`) is
``scrypt$N$r$p$salt$hash`` (base64 fields), computed by the central and
shipped with the guard's badge record, so a PIN never exists on the device in
clear.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from portier_common.pins import hash_pin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Guard:
    """A guard as the cache knows them: the badge, its validity and the PIN hash.

    ``pin_hash`` is None on a device without a guard console (the cache does not
    keep it there). Times are epoch seconds, None for unbounded.
    """

    guard_id: str
    name: str
    badge_uid: str
    pin_hash: str | None
    kind: str = "uid"
    enabled: bool = True
    not_before: int | None = None
    not_after: int | None = None
    revoked: bool = False

    def refusal(self, now: float) -> str | None:
        """Why this badge cannot open the console at ``now`` (a journal code), or None."""
        if self.revoked:
            return "revoked"
        if not self.enabled:
            return "disabled"
        if self.not_before is not None and now < self.not_before:
            return "not_yet_valid"
        if self.not_after is not None and now >= self.not_after:
            return "expired"
        if self.pin_hash is None:
            return "no_pin_hash"
        return None


@dataclass(frozen=True)
class Session:
    """An open guard session, and the badge it was opened with (re-checked on every call)."""

    token: str
    guard_id: str
    name: str
    expires_at: float
    badge_uid: str = ""


class GuardDenied(Exception):
    """Login refused.

    ``code`` is what the caller is told: ``not_recognised``, ``locked_out``,
    ``rate_limited``, ``console_disabled`` or ``bad_request``. A wrong PIN, a
    badge that is not a guard's, a revoked one and a missing tap all look the
    same from outside (``not_recognised``), so the API cannot be used to find
    out which badges belong to guards; ``detail`` (``bad_pin``,
    ``unknown_guard``, ``revoked``...) is for the journal only.
    """

    def __init__(
        self,
        code: str,
        message: str,
        retry_after_s: float | None = None,
        detail: str = "",
        attempts_left: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail or code
        self.retry_after_s = retry_after_s
        #: ``not_recognised`` only: failures the identity may still make before its
        #: lockout -- counted alike for a guard's badge and any other UID, so the
        #: number tells nobody which badges are guards' (docs/threat-model.md).
        self.attempts_left = attempts_left


class TokenBucket:
    """A per-device rate limit: ``burst`` attempts at once, refilled at ``per_minute``.

    ``take(now)`` returns 0 when an attempt may go ahead (and spends it), else
    the seconds until one may. Constant memory whatever the callers send.
    """

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate_s = per_minute / 60.0
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at: float | None = None
        self._lock = threading.Lock()

    def take(self, now: float) -> float:
        """Spend one attempt at monotonic ``now``; 0.0 if allowed, else seconds to wait."""
        with self._lock:
            if self._at is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_s)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate_s


class GuardSessions:
    """Open guard sessions with idle expiry; thread-safe.

    The login itself (badge checks, PIN, lockout, journal) is
    :meth:`edge_agent.guarddesk.GuardDesk.login`; this keeps what a login opens.
    ``clock`` returns monotonic seconds. At most ``max_sessions`` are open: the
    one idle longest is closed to make room (a kiosk has one guard at a time).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        session_timeout_s: float = 120.0,
        max_sessions: int = 16,
    ) -> None:
        self._clock = clock
        self.session_timeout_s = session_timeout_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, guard: Guard) -> Session:
        """Open a session for ``guard`` (already checked) and return it."""
        now = self._clock()
        session = Session(
            secrets.token_urlsafe(24),
            guard.guard_id,
            guard.name,
            now + self.session_timeout_s,
            guard.badge_uid,
        )
        with self._lock:
            self._expire(now)
            while len(self._sessions) >= self.max_sessions:
                oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
                del self._sessions[oldest.token]
            self._sessions[session.token] = session
        return session

    def _expire(self, now: float) -> None:
        for token in [t for t, s in self._sessions.items() if now >= s.expires_at]:
            del self._sessions[token]

    def check(self, token: str, *, touch: bool = True) -> Session | None:
        """Return the live session for ``token`` (extending it when ``touch``), else None."""
        now = self._clock()
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if now >= session.expires_at:
                del self._sessions[token]
                return None
            if touch:
                session = replace(session, expires_at=now + self.session_timeout_s)
                self._sessions[token] = session
            return session

    def open_sessions(self) -> list[Session]:
        """The sessions open now (for the sweep that ends revoked ones)."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            return list(self._sessions.values())

    def logout(self, token: str) -> bool:
        """Close a session. Returns False if it was not open."""
        with self._lock:
            return self._sessions.pop(token, None) is not None


@functools.cache
def dummy_hash() -> str:
    """A hash no PIN is checked against for real: a login for a badge that is not a
    guard's costs the same scrypt as a real one, so timing does not tell them apart."""
    # Computed on first use, not at import: scrypt costs a good fraction of a second.
    return hash_pin("000000", salt=b"portier-dummy-salt")
