"""Badge UIDs: one parser and one length rule for the central, the agent's cache and guards.

A badge UID is **4, 7 or 10 bytes** (ISO/IEC 14443-3 single, double and triple size UIDs;
NTAG 424 DNA and DESFire cards have 7). Written as text it is two hexadecimal digits per
byte, in any case; ``:``, ``-`` and ASCII whitespace are ignored wherever they are
(``04:A1:B2:C3``, ``04-a1-b2-c3``, ``04 A1 B2 C3``, ``04a1b2c3`` are one UID). Anything else
(a ``0x`` prefix, an odd number of digits, other characters such as a no-break space, another
length, more than :data:`MAX_UID_TEXT` characters) is refused with :class:`BadgeUidError`
naming the value, wherever it is given: the central registering a badge, the agent's cache
storing or looking one up, a guard logging in, the local API's simulated reader.

Each keeps its own spelling on the wire and on disk, unchanged: the central and the cache's
revocation ids use lower-case hex (:meth:`BadgeUid.hex`), the cache's badge table the bytes
(:attr:`BadgeUid.raw`), journals and guards upper-case hex (:meth:`BadgeUid.hex_upper`).

A reader may read other lengths (an 8-byte FeliCa IDm or ISO 15693 UID): such a read is
no badge the cache can hold, so a look-up of it finds nothing (:func:`hex_bytes` parses the
text of a raw read without the length rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_UID_TEXT", "UID_LENGTHS", "BadgeUid", "BadgeUidError", "hex_bytes"]

#: Lengths in bytes of an ISO/IEC 14443-3 UID: single, double and triple size.
UID_LENGTHS: Final = (4, 7, 10)
#: Longest text looked at: more is refused before parsing (a 16-byte read with separators).
MAX_UID_TEXT: Final = 64
#: Separators ignored wherever they are (ASCII only: a no-break space is no separator).
_SEPARATORS: Final = re.compile(r"[:\- \t\r\n]")
_HEX_TEXT: Final = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_LENGTH_RULE: Final = "is %d bytes, not a badge UID (4, 7 or 10 bytes, ISO/IEC 14443-3)"
#: At most this many characters of a refused value are shown in an error.
_SHOWN: Final = 40


class BadgeUidError(ValueError):
    """A value that is not a badge UID; the message names the value."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def hex_bytes(text: str) -> bytes:
    """The bytes of UID text (the grammar above), **without** the length rule.

    For raw reads, which may have any length; a badge UID is :meth:`BadgeUid.parse`.

    Raises:
        BadgeUidError: not text, too long, or not hex bytes with optional separators.
    """
    if not isinstance(text, str):
        raise BadgeUidError(f"uid: {_shown(text)} must be hex text, not {type(text).__name__}")
    if len(text) > MAX_UID_TEXT:
        raise BadgeUidError(f"uid: {_shown(text)} is longer than {MAX_UID_TEXT} characters")
    digits = _SEPARATORS.sub("", text)
    if not _HEX_TEXT.fullmatch(digits):
        raise BadgeUidError(
            f"uid: {_shown(text)} is not hex bytes (two digits a byte; ':', '-', spaces allowed)"
        )
    return bytes.fromhex(digits)


@dataclass(frozen=True, slots=True)
class BadgeUid:
    """A badge UID: 4, 7 or 10 bytes. Build from any accepted form with :meth:`parse`."""

    raw: bytes

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes:
            raise BadgeUidError(f"uid: {_shown(self.raw)} must be bytes")
        if len(self.raw) not in UID_LENGTHS:
            raise BadgeUidError(f"uid: {self.raw.hex().upper()!r} {_LENGTH_RULE % len(self.raw)}")

    @classmethod
    def parse(cls, value: object) -> BadgeUid:
        """The UID of bytes, or of hex text in any accepted form (module docstring).

        Raises:
            BadgeUidError: anything else, naming the value.
        """
        if isinstance(value, BadgeUid):
            return value
        if isinstance(value, bytes | bytearray):
            return cls(bytes(value))
        if isinstance(value, str):
            raw = hex_bytes(value)
            if len(raw) not in UID_LENGTHS:
                raise BadgeUidError(f"uid: {_shown(value)} {_LENGTH_RULE % len(raw)}")
            return cls(raw)
        raise BadgeUidError(f"uid: {_shown(value)} must be hex text or bytes")

    def hex(self) -> str:
        """Lower-case hex without separators: the central's and the revocations' form."""
        return self.raw.hex()

    def hex_upper(self) -> str:
        """Upper-case hex without separators: the journals' and guards' form."""
        return self.raw.hex().upper()

    def __str__(self) -> str:
        return self.hex_upper()

    def __bytes__(self) -> bytes:
        return self.raw
