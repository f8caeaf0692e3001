"""COSE_Sign1 (RFC 9052) structures, built with cbor2, and the strict CBOR reader.

Low-level helpers: :func:`edge_agent.tokens.mint` and
:func:`edge_agent.tokens.verify` are what callers want. These are public so that
tests and tools can build tokens that the minter never would (swapped
algorithms, headers in the wrong bucket, odd encodings).

Every CBOR item a verifier reads must be in the one deterministic encoding
that cbor2 writes with ``canonical=True`` (shortest integers, definite
lengths, sorted map keys, no duplicate keys, nothing after the item). The
verifier decodes, re-encodes and compares: an item that a mutation left
decodable but differently spelled is refused as malformed instead of being
accepted under a second spelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2

__all__ = [
    "ALG_EDDSA",
    "COSE_SIGN1_TAG",
    "EXTERNAL_AAD",
    "HEADER_ALG",
    "HEADER_KID",
    "MAX_CBOR_DEPTH",
    "CborError",
    "dumps",
    "encode_protected",
    "encode_sign1",
    "loads_strict",
    "sig_structure",
]

#: COSE_Sign1 CBOR tag (RFC 9052 §2).
COSE_SIGN1_TAG = 18
#: Header labels (RFC 9052 §3.1).
HEADER_ALG = 1
HEADER_KID = 4
#: EdDSA (RFC 9053 §2.2); Portier signs with Ed25519 only.
ALG_EDDSA = -8
#: Externally supplied data (RFC 9052 §4.3) bound into every signature but never
#: sent: a Portier signing key's signature over some other COSE object cannot
#: pass for an invitation, and a future format version changes this value.
EXTERNAL_AAD = b"portier-invitation-v1"
#: Deep enough for the token (tag > array > map), shallow enough to refuse nesting bombs.
MAX_CBOR_DEPTH = 8


class CborError(ValueError):
    """Bytes that are not one item of deterministic CBOR."""


def dumps(value: Any) -> bytes:
    """Return the deterministic CBOR encoding of *value*."""
    return cbor2.dumps(value, canonical=True)


def loads_strict(data: bytes) -> Any:
    """Return the one CBOR item that *data* holds in deterministic encoding.

    Raises:
        CborError: not CBOR, truncated, trailing bytes, indefinite lengths,
            duplicate map keys, nesting deeper than :data:`MAX_CBOR_DEPTH`, or an
            encoding other than the deterministic one.
    """
    try:
        value = cbor2.loads(
            data,
            max_depth=MAX_CBOR_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
        canonical = dumps(value)
    # cbor2 raises its own errors for bad input, but also ValueError, TypeError,
    # OverflowError... from the semantic decoders of some tags (dates, decimals,
    # regular expressions): whatever it is, the bytes are not a valid token.
    except Exception as exc:
        raise CborError(f"not valid CBOR: {type(exc).__name__}") from exc
    if canonical != data:
        raise CborError("CBOR is not in deterministic encoding (or has trailing bytes)")
    return value


def encode_protected(headers: Mapping[int, Any]) -> bytes:
    """Return the protected header bucket: the map encoded as a CBOR byte string's content."""
    return dumps(dict(headers))


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = EXTERNAL_AAD) -> bytes:
    """Return the bytes an Ed25519 key signs: ``["Signature1", protected, aad, payload]``."""
    return dumps(["Signature1", protected, external_aad, payload])


def encode_sign1(
    protected: bytes,
    unprotected: Mapping[Any, Any],
    payload: bytes | None,
    signature: bytes,
    *,
    tagged: bool = True,
) -> bytes:
    """Return the COSE_Sign1 message ``18([protected, unprotected, payload, signature])``.

    ``tagged=False`` (no tag 18) and ``payload=None`` (detached) are here for
    tests: the verifier refuses both.
    """
    body = [protected, dict(unprotected), payload, signature]
    return dumps(cbor2.CBORTag(COSE_SIGN1_TAG, body) if tagged else body)
