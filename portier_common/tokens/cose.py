"""COSE_Sign1 (RFC 9052) structures, built with cbor2, and the strict CBOR reader.

Low-level helpers: :func:`portier_common.tokens.mint` and
:func:`portier_common.tokens.verify` are what callers want. These are public so that
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


_PLAIN = (int, float, str, bytes, type(None))  # bool is an int


def _check_plain(value: Any, budget: int, root_tag: int | None) -> None:
    """Refuse tags below the root and every type beyond CBOR's basic data model.

    cbor2 decodes some tags into Python objects (dates, decimals, sets...) and
    resolves value-sharing references (tags 28/29): a few hundred bytes can
    then stand for an exponentially large, or cyclic, structure that would hang
    the re-encoding. Without sharing, every data item takes at least one byte,
    so more items than bytes means sharing: refused, counting stops there.
    """
    stack = [value]
    count = 0
    while stack:
        item = stack.pop()
        count += 1
        if count > budget:
            raise CborError("CBOR holds more items than bytes (shared or cyclic values)")
        if isinstance(item, cbor2.CBORTag):
            if item is not value or item.tag != root_tag:
                raise CborError(f"CBOR tag {item.tag} is not allowed here")
            stack.append(item.value)
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, Mapping):
            for key, member in item.items():
                stack += (key, member)
        elif not isinstance(item, _PLAIN):
            raise CborError(f"CBOR value of type {type(item).__name__} is not allowed")


def loads_strict(data: bytes, *, root_tag: int | None = None) -> Any:
    """Return the one CBOR item that *data* holds in deterministic encoding.

    Only CBOR's basic data model is accepted: integers, floats, text and byte
    strings, booleans, null, arrays and maps, and one tag, *root_tag*, around
    the whole item.

    Raises:
        CborError: not CBOR, truncated, trailing bytes, indefinite lengths,
            duplicate map keys, nesting deeper than :data:`MAX_CBOR_DEPTH`, any
            other tag, shared values, or an encoding other than the
            deterministic one.
    """
    try:
        value = cbor2.loads(
            data,
            max_depth=MAX_CBOR_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    # cbor2 raises its own errors for bad input, but also ValueError, TypeError,
    # OverflowError... from the semantic decoders of some tags (dates, decimals,
    # regular expressions): whatever it is, the bytes are not a valid token.
    except Exception as exc:
        raise CborError(f"not valid CBOR: {type(exc).__name__}") from exc
    _check_plain(value, len(data), root_tag)
    try:
        canonical = dumps(value)
    except Exception as exc:
        raise CborError(f"CBOR cannot be re-encoded: {type(exc).__name__}") from exc
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
