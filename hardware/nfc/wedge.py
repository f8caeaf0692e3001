"""Keyboard-wedge badge readers through python-evdev (backend ``"wedge"``).

Many cheap USB readers enumerate as a keyboard and type the badge UID
followed by Enter, in hexadecimal or decimal, often least significant byte
first. Reading them through evdev instead of a text field has three benefits:
the device is *grabbed* (the keystrokes reach neither the desktop nor the
kiosk's text inputs), key codes are layout independent (an AZERTY keymap does
not garble the digits), and nothing depends on window focus.

The parsing is a pure function of the key events, :func:`parse_events` (or
the incremental :class:`WedgeDecoder`), testable without ``/dev/input``.

Wedge readers give no more than a UID: no NDEF, no ISO-DEP, and anyone with a
keyboard can type a UID. Accept them only where UID-only badges are allowed.

Permissions: the process needs read access to the event device (group
``input`` on Debian, or a udev rule); prefer the stable
``/dev/input/by-id/usb-...-event-kbd`` path in ``wedge_device``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from hardware.errors import BackendUnavailable, DeviceError
from hardware.nfc.base import WEDGE, BadgeRead, Card, NfcSettings, Reader

log = logging.getLogger(__name__)

#: Longest line accepted (a 10-byte UID is 20 hex digits, 25 decimal digits).
MAX_LINE = 32


class KeyEventLike(Protocol):
    """What the parser needs of an event (``evdev.InputEvent`` fits)."""

    type: int
    code: int
    value: int

    def timestamp(self) -> float:
        """Event time in seconds."""
        ...


class WedgeDecoder:
    """Turns a stream of evdev events into UIDs, one line at a time.

    A line is the characters typed between two Enter keys (main or keypad).
    Only key presses count (releases and auto-repeat are ignored). Modifier
    keys are ignored; digits may come from the main row or the keypad; hex
    letters A-F in either case. A line holding any other key, an odd number
    of hex digits, or a number too large for the UID length is rejected as a
    whole (logged), never trimmed into a wrong UID. A line is dropped when no
    key came for ``key_gap`` seconds, so a lost Enter cannot glue two badges.
    """

    def __init__(
        self,
        fmt: str = "hex",
        byte_order: str = "as-typed",
        uid_length: int = 0,
        key_gap: float = 0.5,
    ) -> None:
        """Raises ValueError for an unknown *fmt* or *byte_order*."""
        from evdev import ecodes

        if fmt not in ("hex", "decimal"):
            raise ValueError(f"fmt must be 'hex' or 'decimal', not {fmt!r}")
        if byte_order not in ("as-typed", "reversed"):
            raise ValueError(f"byte_order must be 'as-typed' or 'reversed', not {byte_order!r}")
        self.fmt = fmt
        self.byte_order = byte_order
        self.uid_length = uid_length
        self.key_gap = key_gap
        self._ev_key = ecodes.EV_KEY
        self._chars: dict[int, str] = {}
        for digit in "0123456789":
            self._chars[ecodes.ecodes[f"KEY_{digit}"]] = digit
            self._chars[ecodes.ecodes[f"KEY_KP{digit}"]] = digit
        if fmt == "hex":
            for letter in "ABCDEF":
                self._chars[ecodes.ecodes[f"KEY_{letter}"]] = letter
        self._enter = {ecodes.KEY_ENTER, ecodes.KEY_KPENTER}
        self._ignored = {
            ecodes.ecodes[name]
            for name in (
                "KEY_LEFTSHIFT",
                "KEY_RIGHTSHIFT",
                "KEY_LEFTCTRL",
                "KEY_RIGHTCTRL",
                "KEY_LEFTALT",
                "KEY_RIGHTALT",
                "KEY_LEFTMETA",
                "KEY_RIGHTMETA",
                "KEY_CAPSLOCK",
                "KEY_NUMLOCK",
            )
        }
        self._line: list[str] = []
        self._junk = False
        self._last_key: float | None = None

    def reset(self) -> None:
        """Forget a partly typed line. Returns None."""
        self._line.clear()
        self._junk = False

    def feed(self, event: KeyEventLike) -> bytes | None:
        """Process one event; return the UID if it completed a valid line, else None."""
        if event.type != self._ev_key or event.value != 1:
            return None
        now = event.timestamp()
        gap = now - self._last_key if self._last_key is not None else 0.0
        if gap > self.key_gap and (self._line or self._junk):
            log.debug("wedge: dropped %r, no key for %.2f s", "".join(self._line), gap)
            self.reset()
        self._last_key = now
        code = event.code
        if code in self._ignored:
            return None
        if code in self._enter:
            line, junk = "".join(self._line), self._junk
            self.reset()
            if junk:
                log.warning("wedge: rejected a line with unexpected keys (%r so far)", line)
                return None
            return self._to_uid(line) if line else None
        char = self._chars.get(code)
        if char is None or len(self._line) >= MAX_LINE:
            self._junk = True
        else:
            self._line.append(char)
        return None

    def _to_uid(self, line: str) -> bytes | None:
        if self.fmt == "hex":
            if len(line) % 2:
                log.warning("wedge: rejected %r, odd number of hex digits", line)
                return None
            uid = bytes.fromhex(line)
        else:
            value = int(line)
            length = self.uid_length or next((n for n in (4, 7, 10) if value < 256**n), 10)
            if value >= 256**length:
                log.warning("wedge: rejected %r, too large for a %d-byte UID", line, length)
                return None
            uid = value.to_bytes(length, "big")
        if self.byte_order == "reversed":
            uid = uid[::-1]
        return uid


def parse_events(
    events: Iterable[KeyEventLike],
    fmt: str = "hex",
    byte_order: str = "as-typed",
    uid_length: int = 0,
    key_gap: float = 0.5,
) -> Iterator[bytes]:
    """Yield the UID of every complete, valid line typed in *events*.

    A pure function of the events (see :class:`WedgeDecoder` for the rules);
    a line still open when the events end is not yielded. Raises ValueError
    for an unknown *fmt* or *byte_order*.
    """
    decoder = WedgeDecoder(fmt, byte_order, uid_length, key_gap)
    for event in events:
        uid = decoder.feed(event)
        if uid is not None:
            yield uid


class WedgeReader(Reader):
    """A keyboard-wedge reader opened through evdev.

    *device* is an optional, already opened ``evdev.InputDevice`` (or an
    object with its ``fd``, ``read()``, ``grab()``, ``ungrab()``, ``close()``
    and ``name``) to use on the first :meth:`open` instead of opening
    ``settings.wedge_device``; the reader takes it over and closes it. It is
    the seam for callers that find the device themselves, and for tests: this
    machine has no /dev/input and no /dev/uinput, so the tests feed real evdev
    events through a pipe.
    """

    backend = "wedge"

    def __init__(self, settings: NfcSettings, device=None) -> None:
        super().__init__(settings)
        self._given = device
        self._device = None
        self._decoder: WedgeDecoder | None = None
        self._pending: deque[bytes] = deque()

    def _open(self) -> None:
        settings = self.settings
        device, self._given = self._given, None
        path = getattr(device, "path", settings.wedge_device)
        if device is None:
            device, path = self._open_device()
        if settings.wedge_grab:
            try:
                device.grab()
            except OSError as error:
                device.close()
                if error.errno == errno.EBUSY:
                    raise BackendUnavailable(
                        f"nfc backend 'wedge': {path} is grabbed by another process"
                    ) from error
                raise DeviceError(f"nfc backend 'wedge': cannot grab {path}: {error}") from error
        log.info("wedge reader %r on %s", device.name, path)
        self._device = device
        self._decoder = WedgeDecoder(
            settings.wedge_format,
            settings.wedge_byte_order,
            settings.wedge_uid_length,
            settings.wedge_key_gap,
        )
        self._pending.clear()

    def _open_device(self):
        try:
            import evdev
        except ImportError as error:
            raise BackendUnavailable(
                "nfc backend 'wedge' needs python-evdev: pip install evdev==2.0.0"
            ) from error
        settings = self.settings
        path = settings.wedge_device or self._find_by_name(evdev, settings.wedge_name or "")
        try:
            return evdev.InputDevice(path), path
        except FileNotFoundError as error:
            raise BackendUnavailable(
                f"nfc backend 'wedge': no input device at {path}; is the reader plugged in? "
                "(ls -l /dev/input/by-id/)"
            ) from error
        except PermissionError as error:
            raise BackendUnavailable(
                f"nfc backend 'wedge': no permission to read {path}; add the service user "
                "to the 'input' group or install a udev rule for the reader"
            ) from error

    @staticmethod
    def _find_by_name(evdev, name: str) -> str:
        paths = evdev.list_devices()
        for path in paths:
            try:
                device = evdev.InputDevice(path)
            except OSError:
                continue
            try:
                if device.name == name:
                    return path
            finally:
                device.close()
        if not paths and os.path.isdir("/dev/input"):
            hint = "no readable input device: check the 'input' group or udev rule"
        else:
            hint = "check the name with evtest or /proc/bus/input/devices"
        raise BackendUnavailable(f"nfc backend 'wedge': no input device named {name!r}; {hint}")

    def _close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            if self.settings.wedge_grab:
                with contextlib.suppress(OSError):  # unplugged: the grab went with it
                    device.ungrab()
            device.close()

    def _sense(self, timeout: float, handle: Callable[[Card], bool]) -> bool:
        deadline = time.monotonic() + timeout
        while not self._pending:
            device = self._device
            if device is None or self._closing.is_set():
                return False
            # Short slices so that close() from another thread is noticed.
            wait = min(0.2, max(0.0, deadline - time.monotonic()))
            try:
                ready, _, _ = select.select([device.fd], [], [], wait)
                events = list(device.read()) if ready else []
            except BlockingIOError:
                events = []
            except OSError as error:
                if self._closing.is_set():
                    return False
                raise DeviceError(f"wedge reader failed: {error}") from error
            for event in events:
                uid = self._decoder.feed(event)
                if uid is not None:
                    self._pending.append(uid)
            if not self._pending and time.monotonic() >= deadline:
                return False
        card = Card(BadgeRead(uid=self._pending.popleft(), technology=WEDGE, reader=self.backend))
        try:
            handle(card)
        finally:
            card.release()
        return True
