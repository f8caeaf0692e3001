"""Legacy Wiegand readers on two GPIO lines, through gpiozero (lgpio on a Pi 5).

**Insecure by design.** Wiegand sends the card's bits in clear, one pulse per bit, with
nothing that proves where they came from: anyone who reaches the two wires (behind the
reader, in the ceiling) can record a card and play it back, and a sniffer the size of a
coin does it unattended. Use OSDP with Secure Channel (:mod:`hardware.reader.osdp`) for any
door that matters; this backend is for sites that still have these readers, and says so
at every start.

The electrical protocol: DATA0 and DATA1 idle high (5 V, through a level shifter to the
Pi's 3.3 V); a 0 bit is a low pulse on DATA0, a 1 bit one on DATA1, each 50-100 µs long
and 1-2 ms apart; a frame ends with silence. :class:`WiegandDecoder` turns the edges into
frames: a pulse shorter than ``MIN_PULSE_S`` is noise and ignored, one longer than
``MAX_PULSE_S`` or on both lines at once spoils the frame. Frames of 4 or 8 bits are keypad
keys (the two usual keypad modes); longer ones are cards, checked against the configured
formats and their parities (:mod:`hardware.reader.formats`): a lost or extra bit gives a
length no format has, a flipped bit fails a parity. A lost bit *and* a noise pulse counted as
a bit keep the length; the two parity bits of the usual formats catch that shift three times
in four, not always -- one more reason Wiegand is legacy.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from hardware.errors import BackendUnavailable
from hardware.reader.base import AlarmCallback, CardRead, DoorReader, Feedback, ReaderAlarmKind
from hardware.reader.settings import ReaderSettings

log = logging.getLogger(__name__)

__all__ = ["WiegandDecoder", "WiegandReader"]

#: Pulses shorter than this are noise (readers send 50-100 µs; spikes are a few µs).
MIN_PULSE_S = 20e-6
#: A pulse longer than this is not a bit (a line shorted to ground, a reader resetting).
MAX_PULSE_S = 2e-3
#: A line held low this long is a wiring fault (a short, a dead reader pulling it down).
STUCK_S = 0.1
#: Keypad frames: 4 bits (the key) or 8 bits (the key's complement, then the key).
_KEY_NAMES = "0123456789*#"


class WiegandDecoder:
    """Edges in, frames out. Not thread-safe: the reader serialises calls.

    ``edge(line, low, ticks)``: ``line`` 0 or 1, ``low`` True for a falling edge, ``ticks``
    the pin factory's timestamp of the edge in seconds. :meth:`frames` and :meth:`stuck`
    take the factory's time now on the same clock; :meth:`frames` returns the frames that
    ended, each ``(value, bit_count, problem)``.
    """

    def __init__(self, frame_gap_s: float) -> None:
        self.frame_gap_s = frame_gap_s
        self._low_since: list[float | None] = [None, None]
        self._bits: list[int] = []
        self._problem: str | None = None
        self._last = 0.0
        self.glitches = 0

    def edge(self, line: int, low: bool, ticks: float) -> None:
        other = 1 - line
        if low:
            self._low_since[line] = ticks
            if self._low_since[other] is not None and self._problem is None:
                self._problem = "both lines low at once"
            self._last = ticks
            return
        started = self._low_since[line]
        self._low_since[line] = None
        if started is None:
            return  # a rising edge without its falling one: the reader's power-up
        width = ticks - started
        self._last = ticks
        if width < MIN_PULSE_S:
            self.glitches += 1
            return
        if width > MAX_PULSE_S:
            self._problem = self._problem or f"a {width * 1000:.1f} ms pulse on D{line}"
            return
        self._bits.append(line)

    def stuck(self, now: float) -> int | None:
        """The line held low for more than :data:`STUCK_S`, if any."""
        for line, since in enumerate(self._low_since):
            if since is not None and now - since > STUCK_S:
                return line
        return None

    def frames(self, now: float) -> list[tuple[int, int, str | None]]:
        """The frame that ended (silence for ``frame_gap_s``), as a one-item list, or []."""
        if not (self._bits or self._problem) or now - self._last < self.frame_gap_s:
            return []
        if any(since is not None for since in self._low_since):
            return []  # a pulse still under way
        bits, problem = self._bits, self._problem
        self._bits, self._problem = [], None
        value = 0
        for bit in bits:
            value = value << 1 | bit
        return [(value, len(bits), problem)]


def key_of_frame(value: int, bits: int) -> str | None:
    """The keypad key a 4- or 8-bit frame carries, or None if it is not a valid key."""
    if bits == 8:
        high, low = value >> 4, value & 0xF
        if high != low ^ 0xF:
            return None
        value = low
    elif bits != 4:
        return None
    return _KEY_NAMES[value] if value < len(_KEY_NAMES) else None


class WiegandReader(DoorReader):
    """One Wiegand reader on ``d0_pin``/``d1_pin`` (``backend = "wiegand"``).

    ``pin_factory``: the gpiozero pin factory to use (the door's own, so both share one
    chip handle; or a MockFactory in tests); None builds ``gpio_backend``'s.
    Optional feedback lines: ``led_pin`` and ``beeper_pin`` (the reader's LED and beeper
    control wires, active low as on most readers).
    """

    backend = "wiegand"
    TICK_S = 0.005

    def __init__(
        self,
        settings: ReaderSettings,
        *,
        on_alarm: AlarmCallback | None = None,
        pin_factory: Any = None,
    ) -> None:
        super().__init__(settings, on_alarm=on_alarm)
        self._factory = pin_factory
        self._decoder = WiegandDecoder(settings.frame_gap_s)
        self._edges = threading.Lock()
        self._devices: list[Any] = []
        self._callbacks: list[Any] = []
        self._led: Any = None
        self._beeper: Any = None
        self.reads = 0
        self.refused = 0

    def reader_names(self) -> tuple[str, ...]:
        return (self._settings.name,)

    def _open(self) -> None:
        settings = self._settings
        log.warning(
            "Wiegand reader %r: card numbers cross the wire in clear and can be sniffed and "
            "replayed; use OSDP readers with Secure Channel (docs/readers.md)",
            settings.name,
        )
        factory = self._factory
        if factory is None:
            from hardware.gpio import GpioSettings, create_pin_factory

            factory = create_pin_factory(GpioSettings(backend=settings.gpio_backend))
            self._factory = factory
        try:
            from gpiozero import DigitalOutputDevice, InputDevice
        except ImportError as exc:  # pragma: no cover - gpiozero is a pinned dependency
            raise BackendUnavailable(f"wiegand reader: gpiozero is missing ({exc})") from exc
        try:
            for line, pin in enumerate((settings.d0_pin, settings.d1_pin)):
                device = InputDevice(pin, pull_up=True, pin_factory=factory)
                self._devices.append(device)
                # The pin's own callback carries the driver's timestamp of each edge (lgpio:
                # the kernel's), which the pulse widths need; device events do not.
                device.pin.edges = "both"
                callback = self._callback(line)
                self._callbacks.append(callback)  # gpiozero holds pin callbacks weakly
                device.pin.when_changed = callback
            if settings.led_pin is not None:
                self._led = DigitalOutputDevice(
                    settings.led_pin, active_high=False, pin_factory=factory
                )
            if settings.beeper_pin is not None:
                self._beeper = DigitalOutputDevice(
                    settings.beeper_pin, active_high=False, pin_factory=factory
                )
        except Exception as exc:
            self._close()
            raise BackendUnavailable(
                f"wiegand reader: cannot claim GPIO{settings.d0_pin}/GPIO{settings.d1_pin}: {exc}"
            ) from exc

    def _callback(self, line: int) -> Any:
        def changed(ticks: float, state: int) -> None:
            with self._edges:
                self._decoder.edge(line, not state, float(ticks))

        return changed

    def _close(self) -> None:
        for device in (*self._devices, self._led, self._beeper):
            if device is not None:
                device.close()
        self._devices.clear()
        self._callbacks.clear()
        self._led = self._beeper = None

    def _tick(self, now: float) -> None:
        # The pin factory's clock, the one its edges are stamped with (lgpio: the kernel's
        # monotonic clock; gpiozero's other factories: time.monotonic at the callback).
        ticks = float(self._factory.ticks())
        with self._edges:
            frames = self._decoder.frames(ticks)
            stuck = self._decoder.stuck(ticks)
        name = self._settings.name
        self._alarm(
            name,
            ReaderAlarmKind.OFFLINE,
            stuck is not None,
            f"DATA{stuck} held low: a short or a dead reader",
        )
        for value, bits, problem in frames:
            key = key_of_frame(value, bits) if problem is None else None
            if key is not None:
                self._keys(name, key.encode("ascii"))
                continue
            if problem is not None:
                card = CardRead(name, "wiegand", value, bits, error=f"noise: {problem}")
            else:
                card = CardRead.from_bits(name, value, bits, self._settings.wiegand_formats)
            if card.error is None:
                self.reads += 1
            else:
                self.refused += 1
                log.warning("wiegand reader %s: refused a %d-bit read: %s", name, bits, card.error)
            self._card(card)

    def _send_feedback(self, reader: str, feedback: Feedback) -> None:
        led, beeper = self._led, self._beeper
        if feedback is Feedback.GRANT:
            if led is not None:
                led.blink(on_time=2.0, off_time=0.1, n=1)
            if beeper is not None:
                beeper.blink(on_time=0.2, off_time=0.1, n=1)
        elif feedback is Feedback.DENY:
            if led is not None:
                led.off()  # ends a PIN prompt's blinking
            if beeper is not None:
                beeper.blink(on_time=0.1, off_time=0.1, n=3)
        elif feedback is Feedback.PIN:
            if led is not None:
                led.blink(on_time=0.3, off_time=0.3, n=None)
        elif feedback is Feedback.LOCKDOWN:
            if led is not None:
                led.off()
            if beeper is not None:
                beeper.blink(on_time=1.0, off_time=0.1, n=1)
        elif led is not None:
            led.off()

    def status(self) -> list[dict[str, Any]]:
        settings = self._settings
        return [
            {
                "name": settings.name,
                "backend": "wiegand",
                "secure_channel": False,
                "online": None,  # Wiegand cannot tell: the lines idle the same with no reader
                "reads": self.reads,
                "refused": self.refused,
                "glitches": self._decoder.glitches,
                "require_pin": settings.require_pin,
                "alarms": sorted(k for (r, k) in self.alarms() if r == settings.name),
            }
        ]
