"""Typed, validated settings of the door's wall readers (``[hardware.reader]``).

Messages name the field (``address: ...``); the agent's settings loader puts the table's
path in front (``hardware.reader.peripherals[0].address: ...``). Nothing here reads a key
file or opens a port: that happens when the reader is opened.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from hardware.reader.formats import BUILTIN_FORMATS, WiegandFormat
from hardware.registry import BackendRegistry

#: Reader backends, imported only when chosen. No simulator here: the tests and the bench
#: put libosdp's own PD emulator or gpiozero's MockFactory behind the real backends.
BACKENDS = BackendRegistry(
    "reader",
    {
        "osdp": "hardware.reader.osdp:OsdpReader",
        "wiegand": "hardware.reader.wiegand:WiegandReader",
    },
    key="backend",
)

#: OSDP line speeds (IEC 60839-11-5); 9600 is every reader's factory default.
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_VALID_PINS = range(2, 28)


def _seconds(name: str, value: object, low: float, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ValueError(f"{name}: {value!r} must be between {low:g} and {high:g} seconds")


def _int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: {value!r} must be an integer from {low} to {high}")


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")


def _name(name: str, value: object) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"{name}: {value!r} must be 1-32 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


@dataclass(frozen=True)
class PeripheralSettings:
    """One OSDP reader (Peripheral Device) on the bus."""

    #: How the journal, the alarms and the self-test name this reader ("entry", "exit").
    name: str
    #: Its OSDP address on the bus, 0-126 (127 is the broadcast address).
    address: int
    #: Its Secure Channel Base Key: 32 hex digits in a file only its owner may read (0600),
    #: written by commissioning (docs/readers.md). Required with ``secure_channel``.
    key_file: Path | None = None
    #: Card + PIN: after a card, the reader's keypad must give a PIN ended by '#'.
    require_pin: bool = False

    def __post_init__(self) -> None:
        _name("name", self.name)
        _int("address", self.address, 0, 126)
        if self.key_file is not None:
            if isinstance(self.key_file, str):
                object.__setattr__(self, "key_file", Path(self.key_file))
            if not isinstance(self.key_file, Path) or not str(self.key_file):
                raise ValueError(f"key_file: expected a path, got {self.key_file!r}")
        _flag("require_pin", self.require_pin)


@dataclass(frozen=True)
class ReaderSettings:
    """The door's wall readers: an OSDP bus, or one legacy Wiegand reader."""

    #: Required, no default: ``"osdp"`` or ``"wiegand"`` (docs/readers.md).
    backend: str
    # -- OSDP ------------------------------------------------------------------------------
    #: Serial device of the RS-485 adapter; prefer a stable /dev/serial/by-id/... path.
    port: str = "/dev/ttyUSB0"
    baud_rate: int = 9600
    #: The readers on the bus, by address (``[[hardware.reader.peripherals]]``).
    peripherals: tuple[PeripheralSettings, ...] = ()
    #: OSDP Secure Channel (AES-128, keys per reader). Off only for readers that cannot
    #: do it; the agent then warns at every start and the self-test fails the check.
    secure_channel: bool = True
    #: A reader that has not answered a poll for this long raises ``reader_offline``.
    offline_after_s: float = 0.5
    #: An offline reader is tried again this often (libosdp alone waits 5 minutes).
    retry_s: float = 5.0
    # -- both ------------------------------------------------------------------------------
    #: Card + PIN on the Wiegand reader (OSDP: per peripheral).
    require_pin: bool = False
    #: A PIN must be complete this long after its card (or after its last key).
    pin_timeout_s: float = 10.0
    pin_max_digits: int = 8
    #: The Wiegand formats accepted, in order (:data:`~hardware.reader.formats.BUILTIN_FORMATS`
    #: names or the names of ``custom_formats``).
    formats: tuple[str, ...] = ("h10301", "h10306", "h10302")
    #: The site's own layouts (``[[hardware.reader.custom_formats]]``).
    custom_formats: tuple[WiegandFormat, ...] = ()
    # -- Wiegand ---------------------------------------------------------------------------
    #: The Wiegand reader's name (journal, alarms).
    name: str = "door"
    #: BCM numbers of the DATA0 and DATA1 lines (through a 5 V -> 3.3 V level shifter).
    d0_pin: int = 5
    d1_pin: int = 6
    #: Optional: the reader's LED and beeper control wires (active low), for feedback.
    led_pin: int | None = None
    beeper_pin: int | None = None
    #: A frame ends when no pulse came for this long (pulses are 1-2 ms apart).
    frame_gap_s: float = 0.025
    #: The gpiozero pin factory when the door's own is not shared (``lgpio`` on a Pi 5).
    gpio_backend: str = "lgpio"
    formats_by_name: dict[str, WiegandFormat] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        BACKENDS.check(self.backend)
        if not isinstance(self.port, str) or not self.port:
            raise ValueError("port: must name a serial device such as /dev/ttyUSB0")
        if self.baud_rate not in BAUD_RATES or isinstance(self.baud_rate, bool):
            raise ValueError(
                f"baud_rate: {self.baud_rate!r} must be one of {', '.join(map(str, BAUD_RATES))}"
            )
        object.__setattr__(self, "peripherals", tuple(self.peripherals))
        names: set[str] = set()
        addresses: set[int] = set()
        for i, pd in enumerate(self.peripherals):
            if not isinstance(pd, PeripheralSettings):
                raise ValueError(f"peripherals: item {i} is not a reader table")
            if pd.name in names:
                raise ValueError(f"peripherals: two readers are named {pd.name!r}")
            if pd.address in addresses:
                raise ValueError(f"peripherals: two readers have address {pd.address}")
            names.add(pd.name)
            addresses.add(pd.address)
        _flag("secure_channel", self.secure_channel)
        if self.backend == "osdp":
            if not self.peripherals:
                raise ValueError("peripherals: the osdp backend needs at least one reader")
            if self.secure_channel:
                for pd in self.peripherals:
                    if pd.key_file is None:
                        raise ValueError(
                            f"peripherals: reader {pd.name!r} has no key_file "
                            "(secure_channel is on)"
                        )
        _seconds("offline_after_s", self.offline_after_s, 0.1, 60)
        _seconds("retry_s", self.retry_s, 0.5, 3600)
        _flag("require_pin", self.require_pin)
        _seconds("pin_timeout_s", self.pin_timeout_s, 1, 120)
        _int("pin_max_digits", self.pin_max_digits, 1, 16)
        object.__setattr__(self, "custom_formats", tuple(self.custom_formats))
        known = dict(BUILTIN_FORMATS)
        for fmt in self.custom_formats:
            if not isinstance(fmt, WiegandFormat):
                raise ValueError(f"custom_formats: {fmt!r} is not a format table")
            if fmt.name in known:
                raise ValueError(f"custom_formats: a format is already named {fmt.name!r}")
            known[fmt.name] = fmt
        if isinstance(self.formats, str) or not isinstance(self.formats, tuple | list):
            raise ValueError("formats: expected a list of format names")
        object.__setattr__(self, "formats", tuple(self.formats))
        lengths: dict[int, str] = {}
        for name in self.formats:
            if name not in known:
                raise ValueError(f"formats: unknown format {name!r}; use one of {', '.join(known)}")
            bits = known[name].bits
            if bits in lengths:
                raise ValueError(
                    f"formats: {name!r} and {lengths[bits]!r} both have {bits} bits "
                    "(a read could not tell them apart)"
                )
            lengths[bits] = name
        object.__setattr__(self, "formats_by_name", {n: known[n] for n in self.formats})
        _name("name", self.name)
        used: dict[int, str] = {}
        for key in ("d0_pin", "d1_pin", "led_pin", "beeper_pin"):
            value = getattr(self, key)
            if value is None and key in ("led_pin", "beeper_pin"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value not in _VALID_PINS:
                raise ValueError(f"{key}: {value!r} is not a BCM GPIO number between 2 and 27")
            if value in used:
                raise ValueError(f"{key}: GPIO{value} is already used by {used[value]}")
            used[value] = key
        _seconds("frame_gap_s", self.frame_gap_s, 0.005, 0.5)
        if self.gpio_backend not in ("rpigpio", "lgpio", "mock"):
            raise ValueError(
                f"gpio_backend: {self.gpio_backend!r} must be 'rpigpio', 'lgpio' or 'mock'"
            )

    @property
    def wiegand_formats(self) -> tuple[WiegandFormat, ...]:
        """The accepted formats, in the configured order."""
        return tuple(self.formats_by_name.values())
