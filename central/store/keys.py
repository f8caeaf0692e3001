"""Keys: the invitation signing keys (rotation) and the central's delta signing key.

Invitations are signed with the one active signing key; devices learn every key that
may still verify one through ``signing_keys`` deltas. The delta signing key signs each
deltas page for the device it is served to; devices pin its public half at enrollment.
The private keys live in the database: a reference central only (real deployments keep
them in an HSM or KMS).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from portier_common.signing import DeltaKey, b64url, delta_message
from portier_common.tokens import SigningKey, TrustedKey

from .base import StoreBase
from .db import Connection, Row
from .deltas import record_change

__all__ = ["KeysMixin", "active_key", "key_delta", "new_key", "public_delta_key"]

log = logging.getLogger(__name__)


def key_delta(row: Row) -> dict[str, Any]:
    """Return the ``SigningKeyDelta`` of a ``signing_keys`` row."""
    trusted = TrustedKey(row["kid"], row["public_key"], row["not_before"], row["not_after"])
    return trusted.to_dict()


def new_key(conn: Connection, now_s: int) -> Row:
    """Create a signing key, make it the only active one, and publish it; return its row."""
    while True:
        kid = time.strftime("k%Y%m%d-", time.gmtime(now_s)) + secrets.token_hex(3)
        if conn.execute("SELECT 1 FROM signing_keys WHERE kid = ?", (kid,)).fetchone() is None:
            break
    key = SigningKey.generate(kid)
    conn.execute("UPDATE signing_keys SET active = 0 WHERE active = 1")
    conn.execute(
        "INSERT INTO signing_keys (kid, private_key, public_key, created_at, not_before, "
        "not_after, active) VALUES (?, ?, ?, ?, ?, NULL, 1)",
        (kid, key.private_bytes(), key.public_bytes(), now_s, now_s),
    )
    row = conn.execute("SELECT * FROM signing_keys WHERE kid = ?", (kid,)).fetchone()
    record_change(conn, None, "signing_key", kid, key_delta(row))
    log.info("signing key %s created and active", kid)
    return row


def active_key(conn: Connection) -> tuple[Row, SigningKey]:
    """Return the active signing key's row and key (it signs new invitations)."""
    row = conn.execute("SELECT * FROM signing_keys WHERE active = 1").fetchone()
    return row, SigningKey.from_private_bytes(row["kid"], row["private_key"])


def public_delta_key(key: SigningKey) -> dict[str, Any]:
    """Return the ``DeltaKey`` (public half) of the delta signing key *key*."""
    return DeltaKey(key.kid, key.public_bytes()).to_dict()


class KeysMixin(StoreBase):
    """Signing keys (list, rotate) and the delta signing key."""

    # -- signing keys -----------------------------------------------------------

    def _ensure_signing_key(self) -> None:
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM signing_keys WHERE active = 1").fetchone() is None:
                new_key(conn, self.now_ms() // 1000)

    def active_signing_key(self) -> SigningKey:
        """Return the key that signs new invitations (reference central only: real
        deployments keep it in an HSM or KMS)."""
        with self._read() as conn:
            return active_key(conn)[1]

    def list_keys(self) -> dict[str, Any]:
        """Return ``{"active_kid": kid, "keys": [SigningKeyDelta, ...]}``."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM signing_keys ORDER BY created_at, kid").fetchall()
        active = next(row["kid"] for row in rows if row["active"])
        return {"active_kid": active, "keys": [key_delta(row) for row in rows]}

    def rotate_key(self, *, retire_now: bool = False) -> dict[str, Any]:
        """Make a new signing key active and retire the previous one.

        The previous key's ``not_after`` becomes the latest expiry of the
        unrevoked invitations it signed (at least now), or now with
        *retire_now*. Both keys go out as ``signing_keys`` deltas.

        Returns:
            ``{"active": SigningKeyDelta, "previous": SigningKeyDelta}``.
        """
        now_s = self.now_ms() // 1000
        with self._tx() as conn:
            old, _ = active_key(conn)
            not_after = now_s
            if not retire_now:
                latest = conn.execute(
                    "SELECT max(expires) AS latest FROM invitations "
                    "WHERE kid = ? AND revoked_at IS NULL",
                    (old["kid"],),
                ).fetchone()["latest"]
                not_after = max(now_s, latest or 0)
            if old["not_after"] is not None:
                not_after = min(not_after, old["not_after"])
            conn.execute(
                "UPDATE signing_keys SET not_after = ? WHERE kid = ?", (not_after, old["kid"])
            )
            old = conn.execute("SELECT * FROM signing_keys WHERE kid = ?", (old["kid"],)).fetchone()
            # Retired now: devices drop the key (removed.signing_keys) instead of keeping
            # it until not_after, which their clock-skew allowance would stretch further.
            record_change(
                conn,
                None,
                "signing_key",
                old["kid"],
                None if retire_now else key_delta(old),
            )
            new = new_key(conn, now_s)
        log.info(
            "signing key rotated: %s -> %s (old valid until %s)", old["kid"], new["kid"], not_after
        )
        return {"active": key_delta(new), "previous": key_delta(old)}

    # -- delta signing key --------------------------------------------------------

    def _ensure_delta_key(self) -> SigningKey:
        """Load the active delta signing key, creating one on first start."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM delta_keys WHERE active = 1").fetchone()
            if row is None:
                now_s = self.now_ms() // 1000
                kid = time.strftime("dk%Y%m%d-", time.gmtime(now_s)) + secrets.token_hex(3)
                key = SigningKey.generate(kid)
                conn.execute(
                    "INSERT INTO delta_keys (kid, private_key, public_key, created_at, active) "
                    "VALUES (?, ?, ?, ?, 1)",
                    (kid, key.private_bytes(), key.public_bytes(), now_s),
                )
                log.info("delta signing key %s created", kid)
                return key
        return SigningKey.from_private_bytes(row["kid"], row["private_key"])

    def delta_key(self) -> dict[str, Any]:
        """Return the public delta signing key (``DeltaKey``) devices pin at enrollment."""
        return public_delta_key(self._delta_key)

    def sign_deltas(self, device_id: str, body: bytes) -> tuple[str, str]:
        """Return (kid, base64url signature) of the deltas *body* served to *device_id*
        (portier_common.signing: the exact bytes, bound to the device id)."""
        return self._delta_key.kid, b64url(self._delta_key.sign(delta_message(device_id, body)))
