"""Badge reads, live cards, reader settings and the reader interface.

Every NFC backend (:mod:`hardware.nfc.nfcpy`, :mod:`hardware.nfc.wedge`,
:mod:`hardware.nfc.sim`) implements :class:`Reader`. A reader reports each badge
tap twice over:

* as a :class:`BadgeRead`, an immutable snapshot (UID, technology, tag type,
  NDEF records) that can be kept, queued and journaled;
* as a :class:`Card`, a live handle passed to the caller's handler *while the
  card is still in the field*. Only a card can exchange APDUs, and only during
  that call: the backend releases the card as soon as the handler returns, and
  any later :meth:`Card.exchange_apdu` raises :class:`CardGone`. This is the
  nfcpy ``on-connect`` model, and it is what cryptographic badges need
  (NTAG 424 DNA authentication, DESFire): the challenge/response must happen
  before the holder pulls the badge away.

Nothing here imports a driver library.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from hardware.errors import DeviceError, HardwareError
from hardware.registry import BackendRegistry

if TYPE_CHECKING:
    import ndef

log = logging.getLogger(__name__)

#: Technology names used in :attr:`BadgeRead.technology`.
ISO14443A = "ISO14443A"
ISO14443B = "ISO14443B"
FELICA = "FeliCa"
WEDGE = "wedge"
TECHNOLOGIES = (ISO14443A, ISO14443B, FELICA, WEDGE)

#: Backends accepted in :attr:`NfcSettings.backend`, and their :class:`Reader` classes
#: (imported only by :func:`hardware.nfc.open_reader`).
BACKENDS = BackendRegistry(
    "nfc",
    {
        "nfcpy": "hardware.nfc.nfcpy:NfcpyReader",
        "wedge": "hardware.nfc.wedge:WedgeReader",
        "sim": "hardware.nfc.sim:SimReader",
    },
    key="nfc.backend",
)

#: nfcpy bitrate/technology strings a reader may poll for.
NFCPY_TARGETS = ("106A", "106B", "212F", "424F")

#: nfcpy's contactless frontend driver modules (``nfc/clf/<name>.py``), the
#: names allowed as the third part of a ``tty:`` or ``com:`` device path.
NFCPY_DRIVERS = ("acr122", "arygon", "pn531", "pn532", "pn533", "rcs380", "rcs956")

_USB_VID_PID = re.compile(r"usb(:[0-9a-fA-F]{4}(:[0-9a-fA-F]{4})?)?")
_USB_BUS_DEV = re.compile(r"usb:[0-9]{1,3}(:[0-9]{1,3})?")
_SERIAL = re.compile(r"(tty|com):(?P<port>[^:]+)(:(?P<driver>[a-z0-9]+))?")
_UDP = re.compile(r"udp(:(?P<host>[^:]*))?(:(?P<port>[0-9]{1,5}))?")


class CardGone(DeviceError):
    """The card left the field, the link to it broke, or the :class:`Card` was
    used after its handler returned."""


class NotIsoDep(HardwareError, TypeError):
    """An APDU was sent to a card that does not speak ISO-DEP (ISO/IEC 14443-4),
    e.g. a Type 2 or FeliCa tag, or a UID typed by a keyboard-wedge reader."""


class ReaderClosed(HardwareError, RuntimeError):
    """The reader was used before :meth:`Reader.open` or after :meth:`Reader.close`."""


def parse_udp_path(path: str) -> tuple[str, int]:
    """Split an nfcpy ``udp[:host][:port]`` device path.

    Returns ``(host, port)`` with nfcpy's defaults (``localhost``, 54321) for
    the parts left out. Raises :class:`ValueError` if *path* is not a udp path
    or the port is out of range.
    """
    match = _UDP.fullmatch(path)
    if match is None:
        raise ValueError(f"not an nfcpy udp device path: {path!r}")
    host = match.group("host") or "localhost"
    port = int(match.group("port") or 54321)
    if not 1 <= port <= 65535:
        raise ValueError(f"udp port out of range in {path!r}")
    return host, port


def check_device_path(path: str) -> None:
    """Check *path* against nfcpy's device path grammar.

    Accepted forms: ``usb``, ``usb:VVVV``, ``usb:VVVV:PPPP`` (hex vendor and
    product ids), ``usb:BBB``, ``usb:BBB:DDD`` (decimal bus and device numbers),
    ``tty:PORT[:DRIVER]`` and ``com:PORT[:DRIVER]`` (serial readers, DRIVER one
    of :data:`NFCPY_DRIVERS`), ``udp[:HOST][:PORT]`` (nfcpy's UDP simulation).
    Returns None; raises :class:`ValueError` naming the problem.
    """
    if _USB_VID_PID.fullmatch(path) or _USB_BUS_DEV.fullmatch(path):
        return
    serial = _SERIAL.fullmatch(path)
    if serial:
        driver = serial.group("driver")
        if driver is not None and driver not in NFCPY_DRIVERS:
            raise ValueError(
                f"unknown nfcpy driver {driver!r} in {path!r}; "
                f"use one of {', '.join(NFCPY_DRIVERS)}"
            )
        return
    if path.startswith("udp"):
        parse_udp_path(path)
        return
    raise ValueError(
        f"{path!r} is not an nfcpy device path "
        "(usb[:VVVV[:PPPP]], usb:BBB[:DDD], tty:PORT[:DRIVER], com:PORT[:DRIVER], "
        "udp[:HOST][:PORT])"
    )


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"nfc.{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"nfc.{name} must be {bound}, got {value!r}")


@dataclass(frozen=True)
class NfcSettings:
    """Which badge reader to open and how to read it.

    Validated on construction: a bad value raises :class:`ValueError` whose
    message names the field (``nfc.<field>``); an unknown backend raises
    :class:`~hardware.errors.UnknownBackend` (also a ValueError).
    """

    #: ``"nfcpy"`` (USB/serial readers and nfcpy's udp simulation),
    #: ``"wedge"`` (keyboard-wedge USB readers through evdev) or ``"sim"``.
    backend: str = "nfcpy"
    #: nfcpy device path, see :func:`check_device_path`. Used by ``nfcpy`` only.
    device: str = "usb"
    #: nfcpy bitrate/technology strings to poll, in order (:data:`NFCPY_TARGETS`).
    #: Each one that nobody answers costs a driver timeout (1 s on udp), so list
    #: only what the site's badges use.
    targets: tuple[str, ...] = ("106A", "106B", "212F")
    #: Read the NDEF message of each card (nfcpy). Costs a few exchanges.
    read_ndef: bool = True
    #: Pause between polls when no card answered (nfcpy), in seconds.
    poll_interval: float = 0.1
    #: Default APDU timeout in seconds; None uses the card's own frame waiting
    #: time from its ATS (nfcpy) and is the right choice for real cards.
    apdu_timeout: float | None = None
    #: The same UID is not reported again until it has been unseen this long
    #: (a card resting on a reader is read over and over). 0 reports every read.
    debounce: float = 1.0
    #: Wedge: evdev device node, preferably a stable /dev/input/by-id/...-event-kbd path.
    wedge_device: str | None = None
    #: Wedge: evdev device name to look for when ``wedge_device`` is not set.
    wedge_name: str | None = None
    #: Wedge: how the reader types the UID, ``"hex"`` or ``"decimal"``.
    wedge_format: str = "hex"
    #: Wedge: ``"as-typed"`` or ``"reversed"`` (many readers type the UID LSB first).
    wedge_byte_order: str = "as-typed"
    #: Wedge, decimal only: UID length in bytes; 0 picks the smallest of 4, 7, 10 that fits.
    wedge_uid_length: int = 0
    #: Wedge: grab the input device so the typed UID never reaches the desktop or kiosk.
    wedge_grab: bool = True
    #: Wedge: a partly typed line is dropped after this many seconds without a key.
    wedge_key_gap: float = 0.5

    def __post_init__(self) -> None:
        BACKENDS.check(self.backend)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError("nfc.device must be a non-empty nfcpy device path")
        try:
            check_device_path(self.device)
        except ValueError as error:
            raise ValueError(f"nfc.device: {error}") from None
        if isinstance(self.targets, str) or not isinstance(self.targets, tuple | list):
            raise ValueError("nfc.targets must be a tuple of strings such as ('106A', '212F')")
        object.__setattr__(self, "targets", tuple(self.targets))
        if not self.targets:
            raise ValueError("nfc.targets must not be empty")
        for target in self.targets:
            if target not in NFCPY_TARGETS:
                raise ValueError(
                    f"nfc.targets: unknown target {target!r}; use {', '.join(NFCPY_TARGETS)}"
                )
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("nfc.targets lists a target twice")
        for name in ("read_ndef", "wedge_grab"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"nfc.{name} must be true or false")
        _positive("poll_interval", self.poll_interval, allow_zero=True)
        if self.apdu_timeout is not None:
            _positive("apdu_timeout", self.apdu_timeout)
        _positive("debounce", self.debounce, allow_zero=True)
        _positive("wedge_key_gap", self.wedge_key_gap)
        if self.wedge_format not in ("hex", "decimal"):
            raise ValueError(
                f"nfc.wedge_format must be 'hex' or 'decimal', not {self.wedge_format!r}"
            )
        if self.wedge_byte_order not in ("as-typed", "reversed"):
            raise ValueError(
                "nfc.wedge_byte_order must be 'as-typed' or 'reversed', "
                f"not {self.wedge_byte_order!r}"
            )
        if (
            isinstance(self.wedge_uid_length, bool)
            or not isinstance(self.wedge_uid_length, int)
            or not 0 <= self.wedge_uid_length <= 16
        ):
            raise ValueError("nfc.wedge_uid_length must be an integer from 0 to 16")
        for name in ("wedge_device", "wedge_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"nfc.{name} must be a non-empty string or unset")
        if self.backend == "wedge" and self.wedge_device is None and self.wedge_name is None:
            raise ValueError("nfc.wedge_device or nfc.wedge_name is required for the wedge backend")


@dataclass(frozen=True)
class BadgeRead:
    """One badge seen by a reader: an immutable snapshot, safe to keep.

    ``uid`` is the card's anti-collision identifier (NFCID1 for ISO 14443-A,
    PUPI for -B, IDm for FeliCa, or what a wedge reader typed). A UID alone
    proves nothing: it can be cloned or, through a wedge, typed on a keyboard.
    """

    uid: bytes
    #: One of :data:`TECHNOLOGIES`.
    technology: str
    #: NFC Forum tag type as nfcpy names it (``"Type2Tag"``, ``"Type3Tag"``,
    #: ``"Type4Tag"``...), None when unknown (wedge).
    tag_type: str | None = None
    #: Product when the backend can tell (``"NXP NTAG215"``), else None.
    product: str | None = None
    #: NDEF records (:class:`ndef.Record` from ndeflib), empty when none were read.
    ndef: tuple[ndef.Record, ...] = ()
    #: True if the card speaks ISO-DEP, so :meth:`Card.exchange_apdu` can work.
    iso_dep: bool = False
    #: Name of the backend that produced the read.
    reader: str = ""
    #: ``time.monotonic()`` when the card was read (for debounce and latency).
    monotonic: float = field(default_factory=time.monotonic)
    #: ``time.time()`` when the card was read (for the journal).
    wall: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not isinstance(self.uid, bytes | bytearray) or not 1 <= len(self.uid) <= 16:
            raise ValueError(f"BadgeRead.uid must be 1 to 16 bytes, got {self.uid!r}")
        object.__setattr__(self, "uid", bytes(self.uid))
        if self.technology not in TECHNOLOGIES:
            raise ValueError(f"BadgeRead.technology must be one of {TECHNOLOGIES}")
        object.__setattr__(self, "ndef", tuple(self.ndef))

    @property
    def uid_hex(self) -> str:
        """The UID as upper-case hexadecimal, most significant byte first as read."""
        return self.uid.hex().upper()


#: ``transceive(apdu, timeout) -> response`` supplied by a backend for ISO-DEP cards.
Transceive = Callable[[bytes, float | None], bytes]


class Card:
    """A badge in the reader's field, handed to a handler during a read.

    The card is usable only until the handler returns; the backend then calls
    :meth:`release`. Methods may be called from other threads while the
    handler runs (calls are serialised).
    """

    def __init__(self, badge: BadgeRead, transceive: Transceive | None = None) -> None:
        self._badge = badge
        self._transceive = transceive
        self._lock = threading.Lock()
        self._active = True

    @property
    def badge(self) -> BadgeRead:
        """The :class:`BadgeRead` snapshot of this card."""
        return self._badge

    @property
    def active(self) -> bool:
        """True while the card may still be used (its handler has not returned)."""
        return self._active

    def exchange_apdu(self, apdu: bytes, timeout: float | None = None) -> bytes:
        """Send one ISO/IEC 7816-4 command APDU and return the response APDU.

        *apdu* is the complete command (CLA INS P1 P2 [Lc data] [Le]). The
        return value is the complete response: data followed by the two status
        bytes SW1 SW2 (status is not interpreted). *timeout* in seconds
        overrides the reader's default (see :attr:`NfcSettings.apdu_timeout`).

        Raises :class:`NotIsoDep` if the card does not speak ISO-DEP,
        :class:`CardGone` if the handler has returned or the card left the
        field or stopped answering, :class:`ValueError` if *apdu* is shorter
        than the 4-byte header.
        """
        apdu = bytes(apdu)
        if len(apdu) < 4:
            raise ValueError("a command APDU has at least 4 bytes (CLA INS P1 P2)")
        if self._transceive is None:
            raise NotIsoDep(f"card {self._badge.uid_hex} does not speak ISO-DEP")
        with self._lock:
            if not self._active:
                raise CardGone(f"card {self._badge.uid_hex} was released")
            response = self._transceive(apdu, timeout)
        if len(response) < 2:
            raise CardGone(f"card {self._badge.uid_hex} sent a response without status word")
        return bytes(response)

    def release(self) -> None:
        """Mark the card as gone. Called by the backend; idempotent; returns None."""
        with self._lock:
            self._active = False

    def __repr__(self) -> str:
        state = "active" if self._active else "released"
        return f"<Card {self._badge.technology} {self._badge.uid_hex} {state}>"


#: A handler called with the live card while it is in the field.
CardHandler = Callable[[Card], object]


class Reader(ABC):
    """A badge reader. Use :func:`hardware.nfc.open_reader` to get one.

    Readers are context managers; :meth:`open` and :meth:`close` are
    idempotent. One thread reads at a time; :meth:`close` may be called from
    another thread and makes a pending :meth:`read` return None as soon as the
    backend regains control.

    Backends implement :meth:`_open`, :meth:`_close` and :meth:`_sense`.
    """

    #: The backend name (a key of :data:`BACKENDS`).
    backend: ClassVar[str] = ""

    def __init__(self, settings: NfcSettings) -> None:
        self._settings = settings
        self._state_lock = threading.Lock()
        self._opened = False
        self._closing = threading.Event()
        self._last_uid: bytes | None = None
        self._last_seen = -math.inf

    @property
    def settings(self) -> NfcSettings:
        """The settings this reader was created with."""
        return self._settings

    @property
    def closed(self) -> bool:
        """True unless the reader is open."""
        return not self._opened

    def open(self) -> None:
        """Open the device. Returns None; does nothing if already open.

        Raises :class:`~hardware.errors.BackendUnavailable` (with a hint) if the
        driver library or the device is missing, busy or not accessible.
        """
        with self._state_lock:
            if self._opened:
                return
            self._closing.clear()
            self._open()
            self._opened = True
            log.info("%s reader open", self.backend)

    def close(self) -> None:
        """Release the device. Returns None; idempotent; never raises for a
        device that is already gone."""
        self._closing.set()
        with self._state_lock:
            if not self._opened:
                return
            self._opened = False
            try:
                self._close()
            except OSError as error:
                log.warning("%s reader: error while closing: %s", self.backend, error)
            log.info("%s reader closed", self.backend)

    def __enter__(self) -> Reader:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read(self, timeout: float, on_card: CardHandler | None = None) -> BadgeRead | None:
        """Wait up to *timeout* seconds for a badge and return its read.

        If *on_card* is given it is called with the live :class:`Card` while
        the card is still in the field (e.g. to exchange APDUs); the card is
        released when it returns. Reads of the UID reported last, within
        :attr:`NfcSettings.debounce` seconds of its previous sighting, are
        skipped (and *on_card* is not called for them).

        Returns the :class:`BadgeRead`, or None if no new badge came in time
        or the reader was closed meanwhile. A backend may overrun *timeout*
        by up to one poll of its driver (nfcpy's udp driver waits 1 s per
        polled target that nobody answers). ``timeout=0`` polls once.

        Raises :class:`ReaderClosed` if the reader is not open,
        :class:`~hardware.errors.DeviceError` if the device failed, and
        whatever *on_card* raises (after the card was released).
        """
        if not self._opened:
            raise ReaderClosed(f"{self.backend} reader is not open")
        deadline = time.monotonic() + timeout
        while True:
            accepted: list[BadgeRead] = []

            def handle(card: Card, accepted: list[BadgeRead] = accepted) -> bool:
                if self._debounced(card.badge):
                    log.debug("%s: %s debounced", self.backend, card.badge.uid_hex)
                    return False
                accepted.append(card.badge)
                if on_card is not None:
                    on_card(card)
                return True

            self._sense(max(0.0, deadline - time.monotonic()), handle)
            if accepted:
                return accepted[0]
            if self._closing.is_set() or time.monotonic() >= deadline:
                return None

    def run(self, on_badge: CardHandler, stop: threading.Event, poll: float = 0.5) -> None:
        """Read badges until *stop* is set or the reader is closed.

        *on_badge* is called with each new :class:`Card` while it is in the
        field (see :meth:`read`). *stop* is checked at least every *poll*
        seconds (plus one driver poll). Returns None. Raises what
        :meth:`read` raises, including exceptions from *on_badge*: a handler
        that must survive bad cards catches its own errors.
        """
        while not stop.is_set() and not self._closing.is_set():
            self.read(poll, on_badge)

    def _debounced(self, badge: BadgeRead) -> bool:
        now = badge.monotonic
        repeat = badge.uid == self._last_uid and now - self._last_seen < self._settings.debounce
        self._last_uid, self._last_seen = badge.uid, now
        return repeat

    @abstractmethod
    def _open(self) -> None:
        """Open the device; raise BackendUnavailable with a hint if impossible."""

    @abstractmethod
    def _close(self) -> None:
        """Release the device (called once per successful open)."""

    @abstractmethod
    def _sense(self, timeout: float, handle: Callable[[Card], bool]) -> bool:
        """Wait up to about *timeout* seconds for one card.

        If a card comes, build its :class:`Card`, call ``handle(card)`` while
        it is in the field, release the card (even if *handle* raises, whose
        exception then propagates) and return True. ``handle`` returns False
        when the read was debounced (not reported), True otherwise. Return False if no card
        came or :attr:`_closing` was set. Raise DeviceError on device failure.
        """
