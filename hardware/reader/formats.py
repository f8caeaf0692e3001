"""Wiegand card formats: the bit layouts door readers send, with their parity bits.

A Wiegand reader, and an OSDP reader reporting a card in "raw Wiegand" format, sends the
card as a string of bits. A *format* says how long that string is, where the facility code
and the card number sit in it, and which parity bits guard which data bits. A read whose
length matches no configured format, or whose parity does not check, is refused: the
reader missed or invented a bit (noise on the D0/D1 lines, a card pulled away too fast).

The three formats readers ship with are built in (:data:`BUILTIN_FORMATS`):

* ``h10301`` -- 26 bits: even parity, 8-bit facility, 16-bit number, odd parity;
* ``h10306`` -- 34 bits: even parity, 16-bit facility, 16-bit number, odd parity;
* ``h10302`` -- 37 bits: even parity, 35-bit number (no facility), odd parity.

A site's own layout is a :class:`WiegandFormat` built from the configuration
(``[[hardware.reader.formats]]``, docs/readers.md). Bit positions count from 0, the first
bit sent (the most significant).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUILTIN_FORMATS", "DecodedCard", "Parity", "ParityError", "WiegandFormat", "decode"]


class ParityError(ValueError):
    """A parity bit does not match its data bits (a bit was lost or invented)."""


@dataclass(frozen=True)
class Parity:
    """One parity bit at ``position`` over the bits ``start`` .. ``start + length - 1``.

    ``kind`` ``"even"``: the covered bits plus the parity bit hold an even number of ones;
    ``"odd"``: an odd number.
    """

    position: int
    start: int
    length: int
    kind: str = "even"

    def __post_init__(self) -> None:
        for name in ("position", "start", "length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: {value!r} must be an integer >= 0")
        if self.length < 1:
            raise ValueError(f"length: {self.length!r} must cover at least one bit")
        if self.kind not in ("even", "odd"):
            raise ValueError(f"kind: {self.kind!r} must be 'even' or 'odd'")
        if self.start <= self.position < self.start + self.length:
            raise ValueError(f"position: parity bit {self.position} cannot cover itself")

    def holds(self, bits: str) -> bool:
        """True if the parity bit of ``bits`` (a '0'/'1' string) checks."""
        ones = bits[self.start : self.start + self.length].count("1") + (bits[self.position] == "1")
        return ones % 2 == (0 if self.kind == "even" else 1)


@dataclass(frozen=True)
class DecodedCard:
    """A read that matched a format and passed its parity checks."""

    format: str
    facility: int | None
    number: int


@dataclass(frozen=True)
class WiegandFormat:
    """A card layout of ``bits`` bits: where the fields sit and which parities guard them.

    ``facility_start``/``facility_length`` may be left out (length 0) for formats without a
    facility code; ``number_start``/``number_length`` are required.
    """

    name: str
    bits: int
    number_start: int
    number_length: int
    facility_start: int = 0
    facility_length: int = 0
    parity: tuple[Parity, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("name: must not be empty")
        if (
            isinstance(self.bits, bool)
            or not isinstance(self.bits, int)
            or not 8 <= self.bits <= 128
        ):
            raise ValueError(f"bits: {self.bits!r} must be an integer from 8 to 128")
        if isinstance(self.parity, list):
            object.__setattr__(self, "parity", tuple(self.parity))
        fields = [("number", self.number_start, self.number_length)]
        if self.facility_length:
            fields.append(("facility", self.facility_start, self.facility_length))
        for field, start, length in fields:
            if (
                isinstance(start, bool)
                or isinstance(length, bool)
                or not isinstance(start, int)
                or not isinstance(length, int)
                or start < 0
                or length < 1
                or start + length > self.bits
            ):
                raise ValueError(
                    f"{field}_start: bits {start}..{start + length - 1} "
                    f"do not fit in {self.bits} bits"
                )
        for parity in self.parity:
            if not isinstance(parity, Parity):
                raise ValueError(f"parity: expected a parity table, got {parity!r}")
            if parity.position >= self.bits or parity.start + parity.length > self.bits:
                raise ValueError(f"parity: bit {parity.position} or its range is past {self.bits}")

    def decode(self, value: int, length: int) -> DecodedCard:
        """Check the parities of a ``length``-bit read ``value`` and return its fields.

        Raises:
            ValueError: ``length`` is not this format's.
            ParityError: a parity bit does not check.
        """
        if length != self.bits:
            raise ValueError(f"{self.name} has {self.bits} bits, the read has {length}")
        bits = format(value, f"0{length}b")
        for parity in self.parity:
            if not parity.holds(bits):
                raise ParityError(f"{self.name}: {parity.kind} parity at bit {parity.position}")
        facility = None
        if self.facility_length:
            facility = int(
                bits[self.facility_start : self.facility_start + self.facility_length], 2
            )
        number = int(bits[self.number_start : self.number_start + self.number_length], 2)
        return DecodedCard(self.name, facility, number)

    def encode(self, facility: int | None, number: int) -> int:
        """The ``bits``-bit value of a card with these fields, parities set (tests, bench)."""
        bits = ["0"] * self.bits

        def put(start: int, length: int, value: int) -> None:
            if not 0 <= value < 1 << length:
                raise ValueError(f"{value} does not fit in {length} bits")
            bits[start : start + length] = format(value, f"0{length}b")

        put(self.number_start, self.number_length, number)
        if self.facility_length:
            put(self.facility_start, self.facility_length, facility or 0)
        for parity in self.parity:
            bits[parity.position] = "0"
            if not parity.holds("".join(bits)):
                bits[parity.position] = "1"
        return int("".join(bits), 2)


#: The formats readers ship with, by name.
BUILTIN_FORMATS: dict[str, WiegandFormat] = {
    fmt.name: fmt
    for fmt in (
        WiegandFormat(
            "h10301",
            26,
            facility_start=1,
            facility_length=8,
            number_start=9,
            number_length=16,
            parity=(Parity(0, 1, 12, "even"), Parity(25, 13, 12, "odd")),
        ),
        WiegandFormat(
            "h10306",
            34,
            facility_start=1,
            facility_length=16,
            number_start=17,
            number_length=16,
            parity=(Parity(0, 1, 16, "even"), Parity(33, 17, 16, "odd")),
        ),
        WiegandFormat(
            "h10302",
            37,
            number_start=1,
            number_length=35,
            parity=(Parity(0, 1, 18, "even"), Parity(36, 18, 18, "odd")),
        ),
    )
}


def decode(value: int, length: int, formats: tuple[WiegandFormat, ...]) -> DecodedCard:
    """Decode a ``length``-bit read with the first of ``formats`` of that length.

    Raises:
        ValueError: no format has that length (a lost or extra bit, or an unknown card).
        ParityError: the format of that length refuses the parity.
    """
    for fmt in formats:
        if fmt.bits == length:
            return fmt.decode(value, length)
    known = ", ".join(str(f.bits) for f in formats) or "none"
    raise ValueError(f"no configured format has {length} bits (configured: {known})")
