"""Guard sessions at the kiosk: badge + PIN, salted PIN hashes, lockout.

PINs are short, so the hash alone cannot protect them against someone who
copies the cache: what does is the lockout (a few failures lock the badge out
for a while, journaled) and scrypt's cost per try. The hash format is
``scrypt$N$r$p$salt$hash`` (base64 fields), computed by the central and shipped
with the guard's badge record, so a PIN never exists on the device in clear.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_pin(pin: str, salt: bytes | None = None, *, n: int = _SCRYPT_N) -> str:
    """Return the salted scrypt hash of ``pin`` in Portier's text format."""
    if not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise ValueError("pin: must be 4 to 12 digits")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${n}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_pin(pin: str, encoded: str) -> bool:
    """True if ``pin`` matches ``encoded`` (constant-time). False for a malformed hash."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        n_i, r_i, p_i = int(n), int(r), int(p)
        if not (2**10 <= n_i <= 2**20 and 1 <= r_i <= 32 and 1 <= p_i <= 4):
            return False  # refuse hashes that would cost a denial of service to check
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            pin.encode(), salt=_unb64(salt), n=n_i, r=r_i, p=p_i, dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class Guard:
    """A guard as the cache knows them: badge UID, name and PIN hash."""

    guard_id: str
    name: str
    badge_uid: str
    pin_hash: str


@dataclass(frozen=True)
class Session:
    """An open guard session."""

    token: str
    guard_id: str
    name: str
    expires_at: float


class GuardDenied(Exception):
    """Login refused.

    ``code`` is what the caller is told: ``not_recognised`` or ``locked_out``.
    A wrong PIN and a badge that is not a guard's look the same from outside,
    so the API cannot be used to find out which badges belong to guards;
    ``detail`` (``bad_pin`` / ``unknown_guard`` / ``locked_out``) is for the
    journal only.
    """

    def __init__(
        self, code: str, message: str, retry_after_s: float | None = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail or code
        self.retry_after_s = retry_after_s


class GuardSessions:
    """Badge + PIN logins with lockout and idle expiry.

    ``lookup`` finds a :class:`Guard` by badge UID (hex); ``clock`` returns
    monotonic seconds. Failure counts are per badge and reset on success.
    Thread-safe.
    """

    def __init__(
        self,
        lookup: Callable[[str], Guard | None],
        clock: Callable[[], float],
        *,
        max_failures: int = 5,
        lockout_s: float = 300.0,
        session_timeout_s: float = 120.0,
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.session_timeout_s = session_timeout_s
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def login(self, badge_uid: str, pin: str) -> Session:
        """Open a session, or raise :class:`GuardDenied` saying why."""
        uid = badge_uid.upper()
        now = self._clock()
        with self._lock:
            until = self._locked_until.get(uid)
            if until is not None and now < until:
                raise GuardDenied("locked_out", "too many wrong PINs", retry_after_s=until - now)
            if until is not None:
                del self._locked_until[uid]
                self._failures.pop(uid, None)
        guard = self._lookup(uid)
        # Check the PIN even for an unknown badge, so timing does not tell them apart.
        ok = verify_pin(pin, guard.pin_hash if guard else _dummy_hash()) and guard is not None
        with self._lock:
            if not ok:
                failures = self._failures.get(uid, 0) + 1
                self._failures[uid] = failures
                if failures >= self.max_failures:
                    self._locked_until[uid] = now + self.lockout_s
                    raise GuardDenied(
                        "locked_out", "too many wrong PINs", retry_after_s=self.lockout_s
                    )
                detail = "bad_pin" if guard else "unknown_guard"
                raise GuardDenied("not_recognised", "badge or PIN not recognised", detail=detail)
            self._failures.pop(uid, None)
            assert guard is not None
            session = Session(
                secrets.token_urlsafe(24), guard.guard_id, guard.name, now + self.session_timeout_s
            )
            self._sessions[session.token] = session
            return session

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
                session = Session(
                    session.token, session.guard_id, session.name, now + self.session_timeout_s
                )
                self._sessions[token] = session
            return session

    def logout(self, token: str) -> bool:
        """Close a session. Returns False if it was not open."""
        with self._lock:
            return self._sessions.pop(token, None) is not None

    def locked_out(self, badge_uid: str) -> float | None:
        """Seconds of lockout left for this badge, or None."""
        until = self._locked_until.get(badge_uid.upper())
        left = None if until is None else until - self._clock()
        return left if left and left > 0 else None


@functools.cache
def _dummy_hash() -> str:
    # Computed on first use, not at import: scrypt costs tens of milliseconds.
    return hash_pin("000000", salt=b"portier-dummy-salt")
