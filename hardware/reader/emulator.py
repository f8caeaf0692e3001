"""Wall readers emulated by libosdp's own Peripheral Device, on an in-memory RS-485 bus.

For the tests, the bench and the installer's dry runs: :class:`EmulatedBus` is a
half-duplex bus in memory (what the controller writes reaches every reader, what a reader
writes reaches the controller), and :class:`EmulatedReader` is libosdp's
``PeripheralDevice`` on it -- the same C core that runs in real OSDP readers' firmware,
with its own Secure Channel -- driven the way a person would: present a card, type keys,
open the enclosure, pull the reader off the bus. It records the commands the controller
sends (LED, buzzer, KEYSET) and keeps a key set by KEYSET, as a reader's flash would.

It is not a reader backend and never stands in for one: the controller under test is
:class:`~hardware.reader.osdp.OsdpReader` with ``channel=bus.controller_channel()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import termios
import threading
import time
from collections.abc import Callable
from typing import Any

from hardware.reader.osdp import _import_osdp

log = logging.getLogger(__name__)

__all__ = ["EmulatedBus", "EmulatedReader", "PtyEnd"]


class _Endpoint:
    """One side's view of the bus: bytes waiting to be read, and where writes go."""

    def __init__(self, bus: EmulatedBus) -> None:
        self._bus = bus
        self.inbox = bytearray()
        self.attached = True
        self.id = 0  # libosdp's Channel attribute

    def read(self, max_bytes: int) -> bytes:
        with self._bus.lock:
            data = bytes(self.inbox[:max_bytes])
            del self.inbox[:max_bytes]
            return data

    def flush(self) -> None:
        with self._bus.lock:
            self.inbox.clear()


class _ControllerEnd(_Endpoint):
    def write(self, buf: bytes) -> int:
        with self._bus.lock:
            for reader in self._bus.readers:
                if reader.attached:
                    reader.inbox.extend(buf)
        return len(buf)


class _ReaderEnd(_Endpoint):
    def write(self, buf: bytes) -> int:
        with self._bus.lock:
            if self.attached and self._bus.controller is not None:
                self._bus.controller.inbox.extend(buf)
        return len(buf)


class EmulatedBus:
    """An RS-485 bus in memory: one controller, any number of readers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.controller: _ControllerEnd | None = None
        self.readers: list[_ReaderEnd] = []

    def controller_channel(self) -> _ControllerEnd:
        """The channel to give :class:`~hardware.reader.osdp.OsdpReader` (``channel=``)."""
        with self.lock:
            self.controller = _ControllerEnd(self)
            return self.controller

    def reader_channel(self) -> _ReaderEnd:
        """A reader's connection to the bus."""
        end = _ReaderEnd(self)
        with self.lock:
            self.readers.append(end)
        return end


class PtyEnd:
    """The far end of a pseudo-terminal, for a reader behind a real serial port path.

    ``PtyEnd()`` opens a pty: the controller opens :attr:`port` with pyserial, exactly
    as it opens a USB RS-485 adapter, and the emulated reader reads and writes here.
    """

    def __init__(self) -> None:
        import tty

        self._fd, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave  # held open so the line stays up between the two ends
        os.set_blocking(self._fd, False)
        self.id = 0

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self._fd, max_bytes)
        except (BlockingIOError, OSError):
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return os.write(self._fd, buf)
        except (BlockingIOError, OSError):
            return 0

    def flush(self) -> None:
        # libosdp flushes a channel to drop a half-received frame: discard what is
        # waiting on this end, as the in-memory bus does.
        with contextlib.suppress(OSError, termios.error):  # the line is gone: nothing to drop
            termios.tcflush(self._fd, termios.TCIFLUSH)

    def close(self) -> None:
        """Close both ends. Idempotent."""
        for fd in (self._fd, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fd = self._slave = -1


class EmulatedReader:
    """libosdp's Peripheral Device as a wall reader on ``bus`` at ``address``.

    ``key``: its SCBK (None: a factory-fresh reader); ``install_mode``: it accepts the
    default key SCBK-D for one session, as a reader does while being commissioned. Start
    it with :meth:`start`, or use it as a context manager.
    """

    def __init__(
        self,
        bus: EmulatedBus | None,
        address: int,
        *,
        channel: Any = None,
        key: bytes | None = None,
        install_mode: bool = False,
        log_level: int | None = None,
    ) -> None:
        if (bus is None) == (channel is None):
            raise ValueError("give the reader a bus or a channel")
        self.bus = bus
        self._channel = channel
        self.address = address
        self.key = key
        self.install_mode = install_mode
        self._log_level = log_level
        self._lock = threading.Lock()
        self._commands: list[dict[str, Any]] = []
        self._changed = threading.Condition(self._lock)
        self._pd: Any = None
        self._end: _ReaderEnd | None = None

    def start(self) -> EmulatedReader:
        """Connect it to the bus and power it up. Returns self."""
        osdp = _import_osdp()
        caps = [
            (osdp.Capability.LEDControl, 1, 1),
            (osdp.Capability.AudibleControl, 1, 1),
            (osdp.Capability.CardDataFormat, 1, 1),
        ]
        flags = [osdp.LibFlag.InstallMode] if self.install_mode else []
        channel = self._channel
        if self.bus is not None:
            self._end = self.bus.reader_channel()
            channel = self._end
        info = osdp.PDInfo(self.address, channel, scbk=self.key, flags=flags)
        level = osdp.LogLevel.Error if self._log_level is None else self._log_level
        self._pd = osdp.PeripheralDevice(
            info, osdp.PDCapabilities(caps), log_level=level, command_handler=self._command
        )
        self._pd.start()
        return self

    def stop(self) -> None:
        """Power it down and take it off the bus (it stops answering). Idempotent."""
        if self._end is not None and self.bus is not None:
            with self.bus.lock:
                self._end.attached = False
        if self._pd is not None:
            with contextlib.suppress(RuntimeError):
                self._pd.stop()
            self._pd = None

    def __enter__(self) -> EmulatedReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the controller sent ----------------------------------------------------------
    def _command(self, command: dict[str, Any]) -> tuple[int, Any]:
        osdp = _import_osdp()
        with self._changed:
            if command.get("command") == osdp.Command.Keyset and command.get("type") == 1:
                # A reader keeps the key it was given (its flash), for its next power-up.
                self.key = bytes(command["data"])
                self.install_mode = False
            self._commands.append(dict(command))
            self._changed.notify_all()
        return 0, None

    def commands(self) -> list[dict[str, Any]]:
        """Every command received so far, oldest first."""
        with self._lock:
            return list(self._commands)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 2.0, *, after: int = 0
    ) -> dict[str, Any] | None:
        """The first command from index ``after`` on that ``predicate`` accepts, waiting up to
        ``timeout`` seconds for it; None if none came."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for command in self._commands[after:]:
                    if predicate(command):
                        return command
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    # -- what a person does ------------------------------------------------------------------
    def _submit(self, event: dict[str, Any]) -> None:
        if self._pd is None:
            raise RuntimeError("the emulated reader is not running")
        if self._pd.submit_event(event) is False:
            raise RuntimeError("the emulated reader's event queue refused the event")

    def present_card(self, value: int, bits: int, *, wiegand: bool = True) -> None:
        """A card read of ``bits`` bits (``wiegand``: reported as raw Wiegand, else raw)."""
        osdp = _import_osdp()
        nbytes = (bits + 7) // 8
        data = (value << (nbytes * 8 - bits)).to_bytes(nbytes, "big")  # left-aligned
        fmt = osdp.CardFormat.Wiegand if wiegand else osdp.CardFormat.Unspecified
        self._submit(
            {
                "event": osdp.Event.CardRead,
                "reader_no": 0,
                "format": fmt,
                "direction": 0,
                "length": bits,
                "data": data,
            }
        )

    def type_keys(self, keys: str | bytes) -> None:
        """Keys on the keypad: digits, '#' (sent as 0x0D) and '*' (sent as 0x7F)."""
        osdp = _import_osdp()
        raw = keys.encode("ascii") if isinstance(keys, str) else bytes(keys)
        raw = raw.replace(b"#", b"\r").replace(b"*", b"\x7f")
        self._submit({"event": osdp.Event.KeyPress, "reader_no": 0, "data": raw})

    def tamper(self, on: bool = True) -> None:
        """Open (``on``) or close the reader's enclosure (its local status report)."""
        osdp = _import_osdp()
        self._submit(
            {
                "event": osdp.Event.Status,
                "type": osdp.StatusReportType.Local,
                "report": bytes([1 if on else 0, 0]),
            }
        )

    @property
    def secure(self) -> bool:
        """True while its Secure Channel with the controller is up."""
        return self._pd is not None and bool(self._pd.is_sc_active())
