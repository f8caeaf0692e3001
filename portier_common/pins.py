"""Guard PIN hashes: the ``scrypt$N$r$p$salt$hash`` text format (base64 fields).

The central computes a guard's hash (:func:`hash_pin`, ``portier-central badge add --pin``)
and ships it with the guard's badge record; the door agent checks a PIN against it
(:func:`verify_pin`, :mod:`edge_agent.guards`), so a PIN never exists on the device in
clear. Both sides import the format from here. The cost arithmetic is in
docs/configuration.md (``[guard]``); ``bench/guard_pin.py`` measures it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

#: scrypt cost of new hashes: 2**15 * 128 * r bytes = 32 MiB per check, twice the
#: old 2**14; ``bench/guard_pin.py`` measures it (figures in docs/configuration.md).
SCRYPT_N = 2**15
_SCRYPT_N = SCRYPT_N  # the name older callers used
_SCRYPT_R = 8
_SCRYPT_P = 1
#: verify_pin refuses hashes costlier than this (a poisoned cache must not cost
#: a denial of service): 2**16 * 128 * 8 = 64 MiB, twice the default.
MAX_SCRYPT_N = 2**16
#: New PINs: 6 to 12 digits. Hashes of 4-5 digit PINs issued before this rule
#: still verify (no guard is locked out), but the central should re-issue them.
MIN_PIN_DIGITS = 6
MAX_PIN_DIGITS = 12


def valid_pin_text(pin: object) -> bool:
    """True if ``pin`` could be a PIN (old 4-5 digit ones included); cheap, no hashing."""
    return isinstance(pin, str) and pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _maxmem(n: int, r: int, p: int) -> int:
    # OpenSSL's default limit is 32 MiB: room for N*r*128 bytes plus p*r*128, and slack.
    return 128 * r * (n + p + 2) + 1024 * 1024


def hash_pin(pin: str, salt: bytes | None = None, *, n: int = SCRYPT_N) -> str:
    """Return the salted scrypt hash of ``pin`` (6 to 12 digits) in Portier's text format."""
    if not valid_pin_text(pin) or len(pin) < MIN_PIN_DIGITS:
        raise ValueError(f"pin: must be {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        pin.encode(),
        salt=salt,
        n=n,
        r=_SCRYPT_R,
        p=_SCRYPT_P,
        maxmem=_maxmem(n, _SCRYPT_R, _SCRYPT_P),
        dklen=32,
    )
    return f"scrypt${n}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_pin(pin: str, encoded: str) -> bool:
    """True if ``pin`` matches ``encoded`` (constant-time). False for a malformed hash.

    Hashes costlier than :data:`MAX_SCRYPT_N` with ``r <= 8, p = 1`` are refused
    unchecked, so one check costs at most 64 MiB and twice a default check.
    """
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        n_i, r_i, p_i = int(n), int(r), int(p)
        if not (2**10 <= n_i <= MAX_SCRYPT_N and 1 <= r_i <= 8 and p_i == 1):
            return False  # refuse hashes that would cost a denial of service to check
        if n_i & (n_i - 1):
            return False  # scrypt's N is a power of two
        expected = _unb64(digest)
        if not 16 <= len(expected) <= 64:
            return False
        actual = hashlib.scrypt(
            pin.encode(),
            salt=_unb64(salt),
            n=n_i,
            r=r_i,
            p=p_i,
            maxmem=_maxmem(n_i, r_i, p_i),
            dklen=len(expected),
        )
    except (ValueError, TypeError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)
