"""Signed deltas: what the central signs and how a device checks it (docs/sync.md).

The central signs the **exact bytes** of each ``GET /v1/deltas`` response body
with its delta signing key (Ed25519, distinct from the invitation signing keys)
and sends the signature in headers; the device verifies those bytes with the key it
pinned at enrollment, *before* parsing them, so there is no canonicalisation to
disagree on. The signed message binds the device id, so a page served to one
device cannot be replayed to another::

    b"portier-deltas/1\\n" + device_id (UTF-8) + b"\\n" + body

The page itself carries ``from_cursor``, which the device checks against the
cursor it asked after: a signed page for another position is refused too.

Headers: ``Portier-Delta-Kid`` (the key id) and ``Portier-Delta-Signature``
(the 64-byte signature, base64url without padding).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "DELTA_CONTEXT",
    "KID_HEADER",
    "SIGNATURE_HEADER",
    "DeltaKey",
    "DeltaSignatureError",
    "b64url",
    "delta_message",
]

DELTA_CONTEXT = b"portier-deltas/1\n"
KID_HEADER = "Portier-Delta-Kid"
SIGNATURE_HEADER = "Portier-Delta-Signature"


class DeltaSignatureError(ValueError):
    """A deltas page whose signature is missing, malformed, by another key, or wrong."""


def b64url(data: bytes) -> str:
    """Return *data* as base64url text without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def delta_message(device_id: str, body: bytes) -> bytes:
    """Return the bytes the central signs for the page *body* served to *device_id*."""
    return DELTA_CONTEXT + device_id.encode("utf-8") + b"\n" + body


@dataclass(frozen=True)
class DeltaKey:
    """The central's delta signing public key as a device pins it."""

    kid: str
    public_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.kid, str) or not 1 <= len(self.kid) <= 64:
            raise ValueError("delta_key.kid: must be text of 1 to 64 characters")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise ValueError("delta_key.public_key: must be a 32-byte Ed25519 public key")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError:
            raise ValueError("delta_key.public_key: not an Ed25519 public key") from None

    @classmethod
    def from_dict(cls, data: object) -> DeltaKey:
        """Build from ``{"kid", "alg": "EdDSA", "public_key": base64}``; ValueError names
        the field."""
        if not isinstance(data, Mapping):
            raise ValueError("delta_key: must be an object")
        if data.get("alg", "EdDSA") != "EdDSA":
            raise ValueError(f"delta_key.alg: {data.get('alg')!r} is not EdDSA")
        text = data.get("public_key")
        if not isinstance(text, str):
            raise ValueError("delta_key.public_key: must be base64 text")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("delta_key.public_key: must be base64 text") from None
        return cls(data.get("kid"), raw)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (EnrollResponse ``delta_key``, the credential file)."""
        return {
            "kid": self.kid,
            "alg": "EdDSA",
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
        }

    def verify(self, device_id: str, body: bytes, kid: str | None, signature: str | None) -> None:
        """Check the headers' signature over *body* for *device_id*.

        Raises:
            DeltaSignatureError: unsigned, another key id, malformed or wrong signature.
        """
        if not kid or not signature:
            raise DeltaSignatureError("page is not signed (no Portier-Delta-Signature)")
        if kid != self.kid:
            raise DeltaSignatureError(f"page signed by key {kid!r}, not the pinned {self.kid!r}")
        try:
            raw = _unb64url(signature)
        except (binascii.Error, ValueError):
            raise DeltaSignatureError("signature is not base64url") from None
        if len(raw) != 64:
            raise DeltaSignatureError("signature is not 64 bytes")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                raw, delta_message(device_id, body)
            )
        except InvalidSignature:
            raise DeltaSignatureError("signature does not verify: page altered") from None
