"""The claims of a QR invitation and their compact CBOR map.

The payload of an invitation is one CBOR map with small integer keys (one byte
each on the wire). The keys are Portier's own, not CWT's (RFC 8392): the claims
are specific to door access, and a private numbering keeps every key at one
byte. docs/tokens.md has the table.

Unknown keys are refused rather than ignored: a verifier that skipped a claim it
does not understand could grant more than the issuer meant. A new claim needs a
new format version (a new text prefix) or an updated verifier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "KEY_DOORS",
    "KEY_EXPIRES",
    "KEY_EXTRA",
    "KEY_HOST",
    "KEY_ID",
    "KEY_NOT_BEFORE",
    "KEY_SINGLE_USE",
    "KEY_SITE",
    "KEY_VISITOR",
    "KEY_ZONES",
    "MAX_EXTRA_ITEMS",
    "MAX_ID_CHARS",
    "MAX_SCOPE_ITEMS",
    "MAX_TEXT_CHARS",
    "MAX_TIME",
    "ClaimsError",
    "InvitationClaims",
]

KEY_ID = 1
KEY_VISITOR = 2
KEY_HOST = 3
KEY_SITE = 4
KEY_DOORS = 5
KEY_ZONES = 6
KEY_NOT_BEFORE = 7
KEY_EXPIRES = 8
KEY_SINGLE_USE = 9
KEY_EXTRA = 10

_REQUIRED = frozenset({KEY_ID, KEY_VISITOR, KEY_SITE, KEY_NOT_BEFORE, KEY_EXPIRES, KEY_SINGLE_USE})
_KNOWN = _REQUIRED | {KEY_HOST, KEY_DOORS, KEY_ZONES, KEY_EXTRA}

#: Identifiers: invitation id, site, door and zone names, extra keys.
MAX_ID_CHARS = 64
#: Free text: visitor and host names, extra values.
MAX_TEXT_CHARS = 128
#: Doors plus zones in one invitation.
MAX_SCOPE_ITEMS = 32
MAX_EXTRA_ITEMS = 8
#: Times are whole seconds since the Unix epoch, below 2**40 (year 36812).
MAX_TIME = 2**40


class ClaimsError(ValueError):
    """A claim is missing, of the wrong type or out of range; the message names it."""


def _check_identifier(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ClaimsError(f"{name} must be a str, not {type(value).__name__}")
    if not value or len(value) > MAX_ID_CHARS:
        raise ClaimsError(f"{name} must be 1 to {MAX_ID_CHARS} characters, got {len(value)}")
    if not value.isprintable():
        raise ClaimsError(f"{name} must hold printable characters only (str.isprintable)")
    return value


def _check_text(name: str, value: object, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise ClaimsError(f"{name} must be a str, not {type(value).__name__}")
    if len(value) > MAX_TEXT_CHARS or (not value and not allow_empty):
        low = 0 if allow_empty else 1
        raise ClaimsError(f"{name} must be {low} to {MAX_TEXT_CHARS} characters, got {len(value)}")
    if not value.isprintable():
        raise ClaimsError(f"{name} must hold printable characters only (str.isprintable)")
    return value


def _check_time(name: str, value: object) -> int:
    # bool is an int subclass; a True expiry is a bug, not the second 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ClaimsError(f"{name} must be an int (Unix seconds), not {type(value).__name__}")
    if not 0 <= value < MAX_TIME:
        raise ClaimsError(f"{name} must be between 0 and 2**40, got {value}")
    return value


def _check_names(name: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ClaimsError(f"{name} must be a sequence of names, not {type(values).__name__}")
    items = tuple(values)
    for i, item in enumerate(items):
        _check_identifier(f"{name}[{i}]", item)
    if len(set(items)) != len(items):
        raise ClaimsError(f"{name} must not repeat a name")
    return items


@dataclass(frozen=True)
class InvitationClaims:
    """What a QR invitation says: who may enter where, and when.

    Times are whole seconds since the Unix epoch (UTC). The invitation is valid
    from ``not_before`` (inclusive) until ``expires`` (exclusive), give or take
    the verifier's clock skew allowance.

    Raises:
        ClaimsError: (a ValueError) when a field is missing, of the wrong type
            or out of range; the message names the field.
    """

    invitation_id: str
    visitor: str
    site: str
    not_before: int
    expires: int
    single_use: bool
    doors: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    host: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_identifier("invitation_id", self.invitation_id)
        _check_text("visitor", self.visitor, allow_empty=False)
        _check_text("host", self.host, allow_empty=True)
        _check_identifier("site", self.site)
        _check_time("not_before", self.not_before)
        _check_time("expires", self.expires)
        if self.expires <= self.not_before:
            raise ClaimsError(
                f"expires ({self.expires}) must be after not_before ({self.not_before})"
            )
        if not isinstance(self.single_use, bool):
            raise ClaimsError(f"single_use must be a bool, not {type(self.single_use).__name__}")
        # Normalise lists to tuples so the claims stay immutable and hashable.
        object.__setattr__(self, "doors", _check_names("doors", self.doors))
        object.__setattr__(self, "zones", _check_names("zones", self.zones))
        if not self.doors and not self.zones:
            raise ClaimsError("doors and zones are both empty: the invitation opens nothing")
        if len(self.doors) + len(self.zones) > MAX_SCOPE_ITEMS:
            raise ClaimsError(f"doors and zones must name at most {MAX_SCOPE_ITEMS} items")
        if not isinstance(self.extra, Mapping):
            raise ClaimsError(f"extra must be a mapping, not {type(self.extra).__name__}")
        if len(self.extra) > MAX_EXTRA_ITEMS:
            raise ClaimsError(f"extra must have at most {MAX_EXTRA_ITEMS} items")
        for key, value in self.extra.items():
            _check_identifier("extra key", key)
            _check_text(f"extra[{key!r}]", value, allow_empty=True)
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def __hash__(self) -> int:
        return hash(
            (
                self.invitation_id,
                self.visitor,
                self.site,
                self.not_before,
                self.expires,
                self.single_use,
                self.doors,
                self.zones,
                self.host,
                tuple(sorted(self.extra.items())),
            )
        )

    def allows(self, door: str, zones_of_door: Iterable[str] = ()) -> bool:
        """Return True if the invitation names *door* or one of *zones_of_door*."""
        return door in self.doors or not set(self.zones).isdisjoint(zones_of_door)

    def to_cbor_map(self) -> dict[int, Any]:
        """Return the compact claims map (integer keys, empty optional claims left out)."""
        claims: dict[int, Any] = {
            KEY_ID: self.invitation_id,
            KEY_VISITOR: self.visitor,
            KEY_SITE: self.site,
            KEY_NOT_BEFORE: self.not_before,
            KEY_EXPIRES: self.expires,
            KEY_SINGLE_USE: self.single_use,
        }
        if self.host:
            claims[KEY_HOST] = self.host
        if self.doors:
            claims[KEY_DOORS] = list(self.doors)
        if self.zones:
            claims[KEY_ZONES] = list(self.zones)
        if self.extra:
            claims[KEY_EXTRA] = dict(self.extra)
        return claims

    @classmethod
    def from_cbor_map(cls, claims: object) -> InvitationClaims:
        """Return the claims read from a decoded CBOR claims map.

        Raises:
            ClaimsError: not a map, a missing or unknown key, or a bad value.
        """
        if not isinstance(claims, Mapping):
            raise ClaimsError(f"claims must be a CBOR map, not {type(claims).__name__}")
        keys = set(claims)
        if not all(type(key) is int for key in keys):
            raise ClaimsError("claim keys must be integers")
        if missing := _REQUIRED - keys:
            raise ClaimsError(f"missing claim keys {sorted(missing)}")
        if unknown := keys - _KNOWN:
            raise ClaimsError(f"unknown claim keys {sorted(unknown)}")
        doors = claims.get(KEY_DOORS, [])
        zones = claims.get(KEY_ZONES, [])
        extra = claims.get(KEY_EXTRA, {})
        # An empty list or map is never minted (it is left out), so it is refused:
        # one claims map has exactly one encoding.
        for name, value in (("doors", doors), ("zones", zones)):
            if not isinstance(value, list | tuple):
                raise ClaimsError(f"{name} must be a CBOR array")
        if not isinstance(extra, Mapping):
            raise ClaimsError("extra must be a CBOR map")
        for key, name in ((KEY_DOORS, "doors"), (KEY_ZONES, "zones"), (KEY_EXTRA, "extra")):
            if key in claims and not claims[key]:
                raise ClaimsError(f"{name} is present but empty")
        if claims.get(KEY_HOST) == "":
            raise ClaimsError("host is present but empty")
        return cls(
            invitation_id=claims[KEY_ID],
            visitor=claims[KEY_VISITOR],
            site=claims[KEY_SITE],
            not_before=claims[KEY_NOT_BEFORE],
            expires=claims[KEY_EXPIRES],
            single_use=claims[KEY_SINGLE_USE],
            doors=tuple(doors),
            zones=tuple(zones),
            host=claims.get(KEY_HOST, ""),
            extra=extra,
        )
