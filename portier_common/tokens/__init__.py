"""Signed QR invitations: minting (for the central) and offline verification (for doors).

A token is ``PT1:`` + base45(COSE_Sign1(Ed25519, CBOR claims)), the same
recipe as the EU Digital COVID Certificate, without the compression (it does
not pay at this size). docs/tokens.md documents the format, the claim keys, the
verification order with its reason codes, and key rotation.

Typical use::

    key = SigningKey.generate("2026-01")                 # on the central
    text = mint(InvitationClaims(...), key)

    keyring = Keyring([key.trusted_key()])               # on the door
    result = verify(text, keyring, now=time.time(), site="hq", door="lobby")
    if result.ok: ...                                     # then revocation, replay
"""

from __future__ import annotations

from .base45 import Base45Error, b45decode, b45encode
from .claims import ClaimsError, InvitationClaims
from .invitation import (
    DEFAULT_MAX_SKEW_S,
    MAX_SKEW_LIMIT_S,
    MAX_TOKEN_CHARS,
    PREFIX,
    Denied,
    Verified,
    mint,
    read_claims_unverified,
    verify,
    window_and_scope,
)
from .keys import Keyring, KeyringError, SigningKey, TrustedKey

__all__ = [
    "DEFAULT_MAX_SKEW_S",
    "MAX_SKEW_LIMIT_S",
    "MAX_TOKEN_CHARS",
    "PREFIX",
    "Base45Error",
    "ClaimsError",
    "Denied",
    "InvitationClaims",
    "Keyring",
    "KeyringError",
    "SigningKey",
    "TrustedKey",
    "Verified",
    "b45decode",
    "b45encode",
    "mint",
    "read_claims_unverified",
    "verify",
    "window_and_scope",
]
