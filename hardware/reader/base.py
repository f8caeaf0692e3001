"""What every wall reader reports, and the part of a reader that does not depend on its wire.

A wall reader (OSDP or Wiegand, :mod:`hardware.reader.osdp`, :mod:`hardware.reader.wiegand`)
reports each card as a :class:`CardRead` (the raw bits as read and their format, decoded
when a Wiegand layout matched) inside a :class:`Presentation`, which adds the PIN typed on
the reader's keypad when that reader asks for card + PIN. The door answers with
:meth:`DoorReader.feedback` (grant, deny, lockdown: the reader's LED and buzzer).

A reader that stops answering, reports tamper or loses its Secure Channel raises a
:class:`ReaderAlarm` through the ``on_alarm`` callback within a second, and clears it when
the condition ends. Nothing here imports a driver library.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Self

from hardware.errors import HardwareError
from hardware.reader.formats import DecodedCard, ParityError, WiegandFormat, decode
from hardware.reader.settings import ReaderSettings

log = logging.getLogger(__name__)

__all__ = [
    "CardRead",
    "DoorReader",
    "Feedback",
    "Presentation",
    "ReaderAlarm",
    "ReaderAlarmKind",
    "ReaderClosed",
]


class ReaderClosed(HardwareError, RuntimeError):
    """The reader was used before :meth:`DoorReader.open` or after :meth:`DoorReader.close`."""


class Feedback(StrEnum):
    """What the door tells the person at the reader (LED colour, buzzer)."""

    GRANT = "grant"
    DENY = "deny"
    LOCKDOWN = "lockdown"
    #: A card was read and the door waits for its PIN.
    PIN = "pin"
    #: Back to the resting state (lockdown over).
    IDLE = "idle"


class ReaderAlarmKind(StrEnum):
    """The alarms a reader raises (journaled as ``alarm.raised`` by the agent)."""

    #: No answer to the controller's polls.
    OFFLINE = "reader_offline"
    #: The reader's enclosure was opened or it was pulled off the wall.
    TAMPER = "reader_tamper"
    #: The reader answers but not over the Secure Channel: wrong key, a reader in install
    #: mode or swapped for another, a link in clear. Its cards are ignored meanwhile.
    INSECURE = "reader_insecure"


@dataclass(frozen=True)
class ReaderAlarm:
    """An alarm raised (``active``) or cleared by one reader."""

    reader: str
    kind: ReaderAlarmKind
    active: bool
    detail: str = ""


@dataclass(frozen=True)
class CardRead:
    """A card as a reader sent it.

    ``value``/``bit_length``: the bits, most significant first as sent (Wiegand and OSDP
    raw formats); ``data``: the bytes of an OSDP ASCII read (empty otherwise). ``decoded``
    holds the facility code and number when a configured Wiegand format matched; ``error``
    says why a read is refused (parity, unknown length), None when it is good.
    """

    reader: str
    format: str
    value: int = 0
    bit_length: int = 0
    data: bytes = b""
    decoded: DecodedCard | None = None
    error: str | None = None
    monotonic: float = field(default_factory=time.monotonic)

    @property
    def uid(self) -> bytes:
        """The card's identity for the badge cache: the bits as read, parity bits included,
        right-aligned in whole bytes (a 32- or 56-bit serial number reads as its bytes)."""
        if self.format == "ascii":
            return self.data
        return self.value.to_bytes(max(1, (self.bit_length + 7) // 8), "big")

    @property
    def bits(self) -> str:
        """The bits as a '0'/'1' string (for the journal and tests)."""
        return format(self.value, f"0{self.bit_length}b") if self.bit_length else ""

    @classmethod
    def from_bits(
        cls,
        reader: str,
        value: int,
        bit_length: int,
        formats: tuple[WiegandFormat, ...],
        *,
        raw: bool = False,
        monotonic: float | None = None,
    ) -> CardRead:
        """A read of ``bit_length`` bits checked against ``formats``.

        ``raw``: the reader did not say the bits are Wiegand (OSDP "raw unspecified"): a
        length no format has is a card serial number, not an error.
        """
        stamp = time.monotonic() if monotonic is None else monotonic
        kind = "raw" if raw else "wiegand"
        try:
            card = decode(value, bit_length, formats)
        except ParityError as exc:
            return cls(reader, kind, value, bit_length, error=f"parity: {exc}", monotonic=stamp)
        except ValueError as exc:
            if raw:
                return cls(reader, kind, value, bit_length, monotonic=stamp)
            return cls(reader, kind, value, bit_length, error=str(exc), monotonic=stamp)
        return cls(reader, kind, value, bit_length, decoded=card, monotonic=stamp)


@dataclass(frozen=True)
class Presentation:
    """A card presented at a reader, with the PIN typed after it when that reader asks for
    one (``pin`` None: no PIN asked, or none finished in time). A PIN not finished within
    ``pin_timeout_s`` presents the card with ``pin_timed_out`` (the reader already showed
    a deny), so the door can journal it. A card whose PIN was still being typed when
    something ended the wait is presented with ``pin_interrupted`` (no PIN, the digits
    typed so far dropped) and ``interrupted_by`` saying what: ``"lockdown"`` (the door
    showed the lockdown), ``"idle"`` (the door showed its resting state: a lockdown
    lifted) or ``"card"`` (another card at the same reader), so the door journals its
    refusal instead of losing it. ``repr`` never shows the PIN."""

    card: CardRead
    pin: str | None = field(default=None, repr=False)
    pin_timed_out: bool = False
    pin_interrupted: bool = False
    interrupted_by: str = ""

    @property
    def reader(self) -> str:
        """The reader's name."""
        return self.card.reader


#: Called with each alarm raised or cleared, from the reader's own thread.
AlarmCallback = Callable[[ReaderAlarm], None]

#: Keypad keys: digits, '#' ends a PIN, '*' starts it again. OSDP sends '#' as 0x0D and
#: '*' as 0x7F (IEC 60839-11-5, osdp_KEYPAD); the ASCII characters are accepted too.
_ENTER = frozenset(b"#\r")
_CLEAR = frozenset(b"*\x7f")


@dataclass
class _PendingPin:
    card: CardRead
    digits: str = ""
    deadline: float = 0.0
    #: When to show the PIN prompt again (an earlier card's outcome was shown over it).
    reprompt: float | None = None


class DoorReader(ABC):
    """The door's readers: cards (and PINs) in, feedback out, alarms raised.

    Use :func:`hardware.reader.open_door_reader`. Readers are context managers;
    :meth:`open` and :meth:`close` are idempotent. :meth:`read` is called by one thread;
    :meth:`feedback` may be called from any thread. Backends implement :meth:`_open`,
    :meth:`_close`, :meth:`_send_feedback`, and :meth:`_tick` (called every
    :attr:`TICK_S` from the reader's own thread).
    """

    backend: ClassVar[str] = ""
    TICK_S: ClassVar[float] = 0.05
    #: How long a grant or deny shows on a reader (LED) before a waiting PIN prompt
    #: comes back.
    OUTCOME_SHOWN_S: ClassVar[float] = 2.0

    def __init__(self, settings: ReaderSettings, *, on_alarm: AlarmCallback | None = None) -> None:
        self._settings = settings
        self._on_alarm = on_alarm
        self._presented: queue.Queue[Presentation] = queue.Queue()
        self._state_lock = threading.Lock()
        self._lock = threading.RLock()
        self._opened = False
        self._stop = threading.Event()
        #: Set by a backend when input arrives: the watcher runs at once, not at its tick.
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._alarms: dict[tuple[str, ReaderAlarmKind], str] = {}
        self._pins: dict[str, _PendingPin] = {}

    @property
    def settings(self) -> ReaderSettings:
        """The settings this reader was created with."""
        return self._settings

    @property
    def closed(self) -> bool:
        """True unless the reader is open."""
        return not self._opened

    def open(self) -> None:
        """Open the port or lines and start watching the readers. Idempotent.

        Raises :class:`~hardware.errors.BackendUnavailable` (with a hint) when the library,
        port or lines are missing or busy.
        """
        with self._state_lock:
            if self._opened:
                return
            self._stop.clear()
            self._open()
            self._opened = True
            self._thread = threading.Thread(
                target=self._run, name=f"{self.backend}-reader", daemon=True
            )
            self._thread.start()
            log.info("%s reader open", self.backend)

    def close(self) -> None:
        """Stop watching and release the port or lines. Idempotent; never raises for a
        device that is already gone."""
        self._stop.set()
        self._wake.set()
        with self._state_lock:
            if not self._opened:
                return
            self._opened = False
            if self._thread is not None:
                self._thread.join(timeout=2)
                self._thread = None
            try:
                self._close()
            except OSError as exc:
                log.warning("%s reader: error while closing: %s", self.backend, exc)
            log.info("%s reader closed", self.backend)

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read(self, timeout: float) -> Presentation | None:
        """Wait up to ``timeout`` seconds for the next presentation; None if none came.

        Reads refused by the reader layer (parity, unknown length) are presented too, with
        ``card.error`` set, so the door can journal and deny them; a card whose PIN never
        came is presented with ``pin_timed_out`` (after a deny on the reader), one cut
        short (lockdown, idle, another card) with ``pin_interrupted``. Raises
        :class:`ReaderClosed` if the reader is not open.
        """
        if not self._opened:
            raise ReaderClosed(f"{self.backend} reader is not open")
        try:
            return self._presented.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def feedback(self, reader: str, feedback: Feedback | str) -> None:
        """Show ``feedback`` on reader ``reader`` (LED colour and buzzer).

        Returns None; a reader that cannot show it (offline, no LED) is logged, never
        raised: feedback must not stop the door. Raises ValueError for an unknown reader
        or feedback. ``lockdown`` and ``idle`` end the wait for a PIN on that reader and
        present the waiting card with ``pin_interrupted``; ``grant`` and ``deny`` (an
        earlier card's outcome) leave it waiting, its prompt shown again after
        :attr:`OUTCOME_SHOWN_S`.
        """
        feedback = Feedback(feedback)
        if reader not in self.reader_names():
            raise ValueError(f"no reader named {reader!r}")
        if feedback in (Feedback.GRANT, Feedback.DENY):
            # A card waits for its PIN, so this outcome is an earlier card's (a card is
            # presented only once its PIN is in): the waiting card keeps its PIN and gets
            # its prompt back once the outcome has been shown, with its time to type anew.
            with self._lock:
                pending = self._pins.get(reader)
                if pending is not None:
                    pending.reprompt = time.monotonic() + self.OUTCOME_SHOWN_S
                    pending.deadline = max(
                        pending.deadline, pending.reprompt + self._settings.pin_timeout_s
                    )
        elif feedback is not Feedback.PIN:
            with self._lock:
                pending = self._pins.pop(reader, None)
            if pending is not None:
                # The lockdown, or the end of one (idle), while the PIN is typed: the card
                # is refused, and the door must journal that, so it is presented (without
                # the digits), not dropped.
                log.info("reader %s: %s while a PIN was typed", reader, feedback.value)
                self._presented.put(
                    Presentation(pending.card, pin_interrupted=True, interrupted_by=feedback.value)
                )
        try:
            self._send_feedback(reader, feedback)
        except (HardwareError, OSError, RuntimeError) as exc:
            log.warning("reader %s: could not show %s: %s", reader, feedback.value, exc)

    def set_alarm_callback(self, on_alarm: AlarmCallback | None) -> None:
        """Send alarms to ``on_alarm`` from now on; the alarms already active are sent to
        it first (a reader that was offline before the agent started still counts)."""
        with self._lock:
            self._on_alarm = on_alarm
            active = [ReaderAlarm(r, k, True, d) for (r, k), d in self._alarms.items()]
        if on_alarm is not None:
            for alarm in active:
                on_alarm(alarm)

    def alarms(self) -> dict[tuple[str, str], str]:
        """The alarms active now: (reader, kind) -> detail."""
        with self._lock:
            return {(r, k.value): d for (r, k), d in self._alarms.items()}

    @abstractmethod
    def reader_names(self) -> tuple[str, ...]:
        """The names of the readers behind this object."""

    @abstractmethod
    def status(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per reader (name, online, secure channel, alarms...)."""

    def requires_pin(self, reader: str) -> bool:
        """True if reader ``reader`` asks for card + PIN (its cards come with ``pin`` or
        ``pin_timed_out``)."""
        return self._requires_pin(reader)

    # -- for the backends ------------------------------------------------------------------
    def _requires_pin(self, reader: str) -> bool:
        return self._settings.require_pin

    def _card(self, card: CardRead) -> None:
        """A card read on ``card.reader``: present it, or wait for its PIN."""
        if card.error is None and self._requires_pin(card.reader):
            with self._lock:
                replaced = self._pins.get(card.reader)
                self._pins[card.reader] = _PendingPin(
                    card, deadline=time.monotonic() + self._settings.pin_timeout_s
                )
            if replaced is not None:
                # Another card before the first one's PIN: the first is refused, and the
                # door journals that (presented without its digits), the new one waits.
                log.info("reader %s: another card while a PIN was typed", card.reader)
                self._presented.put(
                    Presentation(replaced.card, pin_interrupted=True, interrupted_by="card")
                )
            self.feedback(card.reader, Feedback.PIN)
            return
        self._presented.put(Presentation(card))

    def _keys(self, reader: str, keys: bytes) -> None:
        """Keys typed on ``reader``'s keypad: part of the PIN of its last card, if any."""
        with self._lock:
            pending = self._pins.get(reader)
            if pending is None:
                log.debug("reader %s: keys without a card, ignored", reader)
                return
            for key in keys:
                if key in _ENTER:
                    del self._pins[reader]
                    self._presented.put(Presentation(pending.card, pending.digits))
                    return
                if key in _CLEAR:
                    pending.digits = ""
                elif 0x30 <= key <= 0x39 and len(pending.digits) < self._settings.pin_max_digits:
                    pending.digits += chr(key)
                elif 0x30 <= key <= 0x39:
                    continue  # past the longest PIN: ignored until '#' or '*'
                else:
                    log.debug("reader %s: key 0x%02x ignored", reader, key)
            # A key never shortens the time left (an earlier card's outcome may have
            # lengthened it, see feedback).
            pending.deadline = max(
                pending.deadline, time.monotonic() + self._settings.pin_timeout_s
            )

    def _expire_pins(self, now: float) -> None:
        with self._lock:
            late = [(name, p) for name, p in self._pins.items() if now >= p.deadline]
            for name, _ in late:
                del self._pins[name]
            prompts = [
                name
                for name, p in self._pins.items()
                if p.reprompt is not None and now >= p.reprompt
            ]
            for name in prompts:
                self._pins[name].reprompt = None
        for name in prompts:
            self.feedback(name, Feedback.PIN)
        for name, pending in late:
            log.info("reader %s: no PIN in time", name)
            self.feedback(name, Feedback.DENY)
            # Presented without a PIN, so the door journals the attempt (never the digits).
            self._presented.put(Presentation(pending.card, pin_timed_out=True))

    def _alarm(self, reader: str, kind: ReaderAlarmKind, active: bool, detail: str = "") -> None:
        """Raise or clear an alarm; the callback hears each change once."""
        with self._lock:
            key = (reader, kind)
            if active == (key in self._alarms):
                return
            if active:
                self._alarms[key] = detail
            else:
                detail = self._alarms.pop(key)
        if active:
            log.error("reader %s: %s (%s)", reader, kind.value, detail)
        else:
            log.warning("reader %s: %s cleared", reader, kind.value)
        if self._on_alarm is not None:
            try:
                self._on_alarm(ReaderAlarm(reader, kind, active, detail))
            except Exception:  # the watcher must go on for the other readers
                log.exception("reader alarm callback failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                self._tick(now)
                self._expire_pins(now)
            except Exception:  # one bad event must not stop the watching
                log.exception("%s reader: watcher error", self.backend)
            self._wake.wait(self.TICK_S)
            self._wake.clear()

    @abstractmethod
    def _open(self) -> None:
        """Open the port or lines; raise BackendUnavailable with a hint if impossible."""

    @abstractmethod
    def _close(self) -> None:
        """Release the port or lines (called once per successful open)."""

    @abstractmethod
    def _send_feedback(self, reader: str, feedback: Feedback) -> None:
        """Drive the reader's LED and buzzer."""

    @abstractmethod
    def _tick(self, now: float) -> None:
        """Called every :attr:`TICK_S` from the watcher thread: events, liveness, alarms."""
