"""Minting and offline verification of QR invitations.

A token is the text ``PT1:`` followed by the base45 encoding of a tagged
COSE_Sign1 message whose payload is the CBOR claims map. It is signed with
Ed25519 (COSE alg -8); the kid and the alg sit in the protected header, which
the signature covers. It is not compressed: the measured figures are in
docs/tokens.md (zlib made every realistic token longer, since the 64-byte
signature does not compress and the claims are too short to gain).

:func:`verify` checks, in this order, and stops at the first failure:

1. text: a str of at most :data:`MAX_TOKEN_CHARS` with the :data:`PREFIX`,
   valid base45, one deterministic CBOR item, tag 18 around
   ``[bstr, map, bstr, bstr]``, a protected header that is a CBOR map
   -> ``malformed``;
2. algorithm: the protected ``alg`` is exactly EdDSA and no ``alg`` hides in the
   unprotected header -> ``bad_algorithm``;
3. headers: the protected header holds only ``alg`` and ``kid`` (a byte
   string), the unprotected header is empty -> ``malformed``;
4. key: the kid is pinned in the keyring and the key is valid now, within the
   skew -> ``unknown_key``;
5. signature over ``["Signature1", protected, EXTERNAL_AAD, payload]``
   -> ``bad_signature``;
6. claims: a deterministic CBOR map of known keys and well-typed values
   -> ``malformed``;
7. time: ``not_before - skew <= now < expires + skew`` -> ``not_yet_valid`` /
   ``expired``;
8. site -> ``wrong_site``; 9. door, or one of the door's zones -> ``wrong_door``.

Revocation and replay are not checked here: they need the credential cache and
the replay ledger. :class:`Verified` carries what the policy needs for them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from portier_common.reasons import Reason

from .base45 import Base45Error, b45decode, b45encode
from .claims import ClaimsError, InvitationClaims
from .cose import (
    ALG_EDDSA,
    COSE_SIGN1_TAG,
    HEADER_ALG,
    HEADER_KID,
    CborError,
    dumps,
    encode_protected,
    encode_sign1,
    loads_strict,
    sig_structure,
)
from .keys import Keyring, SigningKey

__all__ = [
    "DEFAULT_MAX_SKEW_S",
    "MAX_SKEW_LIMIT_S",
    "MAX_TOKEN_CHARS",
    "PREFIX",
    "Denied",
    "Verified",
    "mint",
    "verify",
]

log = logging.getLogger(__name__)

#: Format and version marker in front of the base45 text. Upper case and ':'
#: are in the QR alphanumeric set, so the whole token stays in that mode.
PREFIX = "PT1:"
#: The longest token accepted or minted: what QR version 20 holds at error level
#: M in alphanumeric mode. Longer text is refused before any decoding.
MAX_TOKEN_CHARS = 970
DEFAULT_MAX_SKEW_S = 60.0
#: An allowance above this is a broken clock, not skew: the caller is refused.
MAX_SKEW_LIMIT_S = 3600.0

_SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class Verified:
    """A token that passed every check :func:`verify` makes.

    The policy still has to check revocation (``invitation_id``) and, when
    ``single_use``, record the id in the replay ledger before opening.
    """

    claims: InvitationClaims
    kid: str

    @property
    def ok(self) -> bool:
        """Always True: lets callers test ``result.ok`` on either outcome."""
        return True

    @property
    def reason(self) -> Reason:
        """Always :attr:`Reason.GRANTED` (as far as the token goes)."""
        return Reason.GRANTED

    @property
    def invitation_id(self) -> str:
        """The invitation id: the key for revocation and the replay ledger."""
        return self.claims.invitation_id

    @property
    def single_use(self) -> bool:
        """True if the invitation opens a door once only."""
        return self.claims.single_use

    @property
    def expires(self) -> int:
        """Unix second from which the invitation is expired (before the skew allowance)."""
        return self.claims.expires


@dataclass(frozen=True)
class Denied:
    """A token refused by :func:`verify`.

    ``claims`` and ``kid`` are set only when the signature verified (the denial
    is then about time, site or door): they are trustworthy and worth
    journaling. Before that point nothing in the token can be trusted, so they
    are None. ``detail`` is for logs and the journal, not for visitors.
    """

    reason: Reason
    detail: str
    claims: InvitationClaims | None = None
    kid: str | None = None

    @property
    def ok(self) -> bool:
        """Always False."""
        return False


class _Deny(Exception):
    def __init__(
        self,
        reason: Reason,
        detail: str,
        claims: InvitationClaims | None = None,
        kid: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.denied = Denied(reason, detail, claims, kid)


def mint(claims: InvitationClaims, signing_key: SigningKey) -> str:
    """Return the signed token text for *claims*, under ``signing_key.kid``.

    Raises:
        TypeError: *claims* or *signing_key* of the wrong type.
        ValueError: the token would be longer than :data:`MAX_TOKEN_CHARS`.
    """
    if not isinstance(claims, InvitationClaims):
        raise TypeError(f"claims must be InvitationClaims, not {type(claims).__name__}")
    if not isinstance(signing_key, SigningKey):
        raise TypeError(f"signing_key must be a SigningKey, not {type(signing_key).__name__}")
    protected = encode_protected(
        {HEADER_ALG: ALG_EDDSA, HEADER_KID: signing_key.kid.encode("utf-8")}
    )
    payload = dumps(claims.to_cbor_map())
    signature = signing_key.sign(sig_structure(protected, payload))
    text = PREFIX + b45encode(encode_sign1(protected, {}, payload, signature))
    if len(text) > MAX_TOKEN_CHARS:
        raise ValueError(
            f"token would be {len(text)} characters, over {MAX_TOKEN_CHARS}: shorten the claims"
        )
    return text


def _check_context(
    keyring: object, *, now: object, site: object, door: object, zones: object, skew: object
) -> frozenset[str]:
    if not isinstance(keyring, Keyring):
        raise TypeError(f"keyring must be a Keyring, not {type(keyring).__name__}")
    try:
        finite = not isinstance(now, bool) and math.isfinite(now)  # type: ignore[arg-type]
    except (TypeError, OverflowError):
        finite = False
    if not finite:
        raise ValueError(f"now must be finite Unix seconds, not {now!r}")
    if isinstance(skew, bool) or not isinstance(skew, int | float):
        raise ValueError(f"max_skew_s must be a number, not {skew!r}")
    if not 0 <= skew <= MAX_SKEW_LIMIT_S:
        raise ValueError(f"max_skew_s must be between 0 and {MAX_SKEW_LIMIT_S}, got {skew}")
    for name, value in (("site", site), ("door", door)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty str, not {value!r}")
    if isinstance(zones, str | bytes) or not isinstance(zones, Iterable):
        raise TypeError("zones_of_door must be an iterable of zone names, not a single str")
    zone_set = frozenset(zones)
    if not all(isinstance(zone, str) for zone in zone_set):
        raise TypeError("zones_of_door must hold str zone names")
    return zone_set


def verify(
    text: object,
    keyring: Keyring,
    *,
    now: float,
    site: str,
    door: str,
    zones_of_door: Iterable[str] = (),
    max_skew_s: float = DEFAULT_MAX_SKEW_S,
) -> Verified | Denied:
    """Check the token *text* offline, for *door* of *site* at Unix time *now*.

    *zones_of_door* are the zones the door belongs to (an invitation may name
    zones rather than doors). *max_skew_s* widens every time window (token and
    key) by that many seconds on both sides, for clocks that drift apart.

    Returns:
        :class:`Verified`, or :class:`Denied` with the reason of the first
        failed check (the order is in this module's docstring). Whatever
        *text* holds, the answer is one of these two: untrusted input never
        raises.

    Raises:
        TypeError, ValueError: only for the caller's own mistakes (a keyring
            that is not a :class:`Keyring`, a non-finite *now*, an empty
            *site* or *door*, *zones_of_door* given as one str or holding
            non-str items, a skew outside 0..:data:`MAX_SKEW_LIMIT_S`).
    """
    zones = _check_context(
        keyring, now=now, site=site, door=door, zones=zones_of_door, skew=max_skew_s
    )
    try:
        return _verify(text, keyring, now=now, site=site, door=door, zones=zones, skew=max_skew_s)
    except _Deny as deny:
        log.debug("invitation denied: %s (%s)", deny.denied.reason, deny.denied.detail)
        return deny.denied
    except Exception:
        # A bug, not an attack we foresaw: fail closed, and loudly.
        log.exception("unexpected error while verifying an invitation; denied")
        return Denied(Reason.MALFORMED, "internal error while reading the token")


def read_claims_unverified(text: str) -> InvitationClaims:
    """The claims of token ``text`` WITHOUT checking its signature, key, time or scope.

    Never for a decision (that is :func:`verify`, on the agent): only to show what a
    token says once the agent has accepted it (the kiosk's visitor pass preview,
    ``kiosk pass``). Raises :class:`ClaimsError` when the text is not a well-formed token.
    """
    try:
        _protected, _unprotected, payload, _signature = _decode_outer(text)
        return InvitationClaims.from_cbor_map(loads_strict(payload))
    except _Deny as deny:
        raise ClaimsError(f"not a well-formed invitation: {deny.denied.detail}") from None
    except CborError as exc:
        raise ClaimsError(f"not a well-formed invitation: {exc}") from None


def _decode_outer(text: object) -> tuple[bytes, Mapping[Any, Any], bytes, bytes]:
    if not isinstance(text, str):
        raise _Deny(Reason.MALFORMED, f"token must be text, not {type(text).__name__}")
    if len(text) > MAX_TOKEN_CHARS:
        raise _Deny(Reason.MALFORMED, f"token longer than {MAX_TOKEN_CHARS} characters")
    if not text.startswith(PREFIX):
        raise _Deny(Reason.MALFORMED, f"token does not start with {PREFIX!r}")
    try:
        raw = b45decode(text[len(PREFIX) :])
        message = loads_strict(raw, root_tag=COSE_SIGN1_TAG)
    except (Base45Error, CborError) as exc:
        raise _Deny(Reason.MALFORMED, str(exc)) from None
    if not isinstance(message, cbor2.CBORTag) or message.tag != COSE_SIGN1_TAG:
        raise _Deny(Reason.MALFORMED, "not a tagged COSE_Sign1 message")
    body = message.value
    # cbor2 hands a tag's content back immutable: a tuple, and frozendict maps.
    if not isinstance(body, list | tuple) or len(body) != 4:
        raise _Deny(Reason.MALFORMED, "COSE_Sign1 must be an array of 4 items")
    protected, unprotected, payload, signature = body
    if not isinstance(protected, bytes) or not isinstance(unprotected, Mapping):
        raise _Deny(Reason.MALFORMED, "COSE_Sign1 headers have the wrong types")
    if not isinstance(payload, bytes):
        raise _Deny(Reason.MALFORMED, "COSE_Sign1 payload must be an attached byte string")
    if not isinstance(signature, bytes):
        raise _Deny(Reason.MALFORMED, "COSE_Sign1 signature must be a byte string")
    return protected, unprotected, payload, signature


def _read_headers(protected: bytes, unprotected: Mapping[Any, Any]) -> bytes:
    # An empty protected bucket is legal COSE (no protected headers): it then
    # lacks alg, which step 2 reports.
    try:
        headers = loads_strict(protected) if protected else {}
    except CborError as exc:
        raise _Deny(Reason.MALFORMED, f"protected header: {exc}") from None
    if not isinstance(headers, Mapping):
        raise _Deny(Reason.MALFORMED, "protected header is not a CBOR map")
    if HEADER_ALG in unprotected:
        raise _Deny(Reason.BAD_ALGORITHM, "alg in the unprotected header")
    alg = headers.get(HEADER_ALG)
    # type() rather than ==: -8.0 or a bool must not pass for the integer -8.
    if type(alg) is not int or alg != ALG_EDDSA:
        raise _Deny(Reason.BAD_ALGORITHM, f"alg {alg!r} is not EdDSA ({ALG_EDDSA})")
    if unprotected:
        raise _Deny(Reason.MALFORMED, "unprotected header must be empty (kid must be protected)")
    if set(headers) - {HEADER_ALG, HEADER_KID}:
        raise _Deny(Reason.MALFORMED, "protected header has parameters other than alg and kid")
    kid = headers.get(HEADER_KID)
    if not isinstance(kid, bytes):
        raise _Deny(Reason.MALFORMED, "protected header lacks a byte-string kid")
    return kid


def _verify(
    text: object,
    keyring: Keyring,
    *,
    now: float,
    site: str,
    door: str,
    zones: frozenset[str],
    skew: float,
) -> Verified:
    protected, unprotected, payload, signature = _decode_outer(text)
    kid_bytes = _read_headers(protected, unprotected)

    try:
        kid = kid_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise _Deny(Reason.UNKNOWN_KEY, "kid is not UTF-8, so no pinned key has it") from None
    key = keyring.get(kid)
    if key is None:
        raise _Deny(Reason.UNKNOWN_KEY, f"kid {kid!r} is not pinned")
    if not key.valid_at(now, skew):
        raise _Deny(Reason.UNKNOWN_KEY, f"key {kid!r} is outside its validity window")

    if len(signature) != _SIGNATURE_BYTES:
        raise _Deny(Reason.BAD_SIGNATURE, f"signature is {len(signature)} bytes, not 64")
    if not key.verify_signature(signature, sig_structure(protected, payload)):
        raise _Deny(Reason.BAD_SIGNATURE, f"signature does not verify under {kid!r}")

    # From here on the content is the issuer's: a bad claims map is an issuer bug.
    try:
        claims = InvitationClaims.from_cbor_map(loads_strict(payload))
    except (CborError, ClaimsError) as exc:
        raise _Deny(Reason.MALFORMED, f"signed claims are invalid: {exc}", kid=kid) from None

    refused = window_and_scope(
        claims.not_before,
        claims.expires,
        claims.site,
        claims.doors,
        claims.zones,
        now=now,
        skew=skew,
        site=site,
        door=door,
        zones_of_door=zones,
    )
    if refused is not None:
        raise _Deny(refused[0], refused[1], claims, kid)
    return Verified(claims, kid)


def window_and_scope(
    not_before: float | None,
    expires: float | None,
    issued_for_site: str | None,
    doors: Iterable[str] | None,
    zones: Iterable[str],
    *,
    now: float,
    skew: float,
    site: str,
    door: str,
    zones_of_door: Iterable[str],
) -> tuple[Reason, str] | None:
    """Steps 7 to 9 of :func:`verify`: time window, site, door -- as (reason, detail) or None.

    The one place these rules live: a scanned token's claims and a cached invitation
    checked in by hand by a guard (:func:`edge_agent.policy.judge_invitation`) go
    through it. ``None`` bounds, site and doors are unknown, not refused (a cached
    invitation may lack them); a scope naming no door and no zone opens nothing.
    """
    if not_before is not None and now < not_before - skew:
        return Reason.NOT_YET_VALID, "before not_before"
    if expires is not None and now >= expires + skew:
        return Reason.EXPIRED, "at or after expires"
    if issued_for_site is not None and issued_for_site != site:
        return Reason.WRONG_SITE, f"issued for site {issued_for_site!r}"
    if doors is not None and door not in tuple(doors) and set(zones).isdisjoint(zones_of_door):
        return Reason.WRONG_DOOR, f"door {door!r} and its zones are not named"
    return None
