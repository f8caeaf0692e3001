"""OSDP wall readers: the agent is the Control Panel (libosdp), readers are Peripheral Devices.

One RS-485 bus (a USB adapter on the Pi, ``[hardware.reader] port``) carries one or more
readers, each at its own address. libosdp (the C core through its Python bindings) runs the
protocol: polls, Secure Channel, commands and replies. This module adds what a door needs:

* **Secure Channel is enforced.** Every reader has its own Secure Channel Base Key (SCBK)
  in a file only its owner may read (0600, :func:`read_key`); the Control Panel runs with
  libosdp's ``ENFORCE_SECURE``, so a reader whose key does not match, or that offers the
  default install-mode key (SCBK-D), or no Secure Channel at all, is never brought online
  in clear: it raises ``reader_insecure`` and its cards are never read.
* **Install mode only while commissioning.** :func:`commission` is the one place SCBK-D is
  accepted: it generates the reader's key, has libosdp set it with the protocol's KEYSET
  command over the SCBK-D session, proves the new key with a fresh secure session and only
  then writes the key file. A reader that already has a key file is refused.
  :meth:`OsdpReader.rekey` replaces a key with KEYSET inside the running secure session.
* **Alarms within a second.** libosdp declares a silent reader offline after 8 s; the bus
  is watched here instead (:class:`_WatchedChannel` notes every reply frame's address), so a
  reader that stops answering raises ``reader_offline`` after ``offline_after_s``. Tamper
  comes from the reader's local status report. An offline reader is tried again every
  ``retry_s`` (libosdp alone waits five minutes).

Keys never reach a log: they live in the key files and in libosdp's memory only.
See docs/readers.md.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardware.errors import BackendUnavailable, DeviceError, HardwareError
from hardware.reader.base import AlarmCallback, CardRead, DoorReader, Feedback, ReaderAlarmKind
from hardware.reader.settings import PeripheralSettings, ReaderSettings

if TYPE_CHECKING:
    import osdp

log = logging.getLogger(__name__)

__all__ = [
    "CommissioningError",
    "OsdpReader",
    "commission",
    "read_key",
    "write_key",
]

#: Bytes in an SCBK (AES-128).
KEY_BYTES = 16
#: How long a reader that answers may take to complete the Secure Channel handshake
#: before it is declared insecure (libosdp takes about 0.25 s at 9600 baud on a bench).
SC_GRACE_S = 1.0
#: OSDP frame: start of message, then address, then the 16-bit length (little endian).
_SOM = 0x53
_REPLY_BIT = 0x80


class CommissioningError(HardwareError, RuntimeError):
    """Commissioning was refused (the reader already has a key) or did not complete.

    ``key_may_be_set``: the reader may hold the new key (kept in ``<key_file>.pending``).
    """

    def __init__(self, message: str, *, key_may_be_set: bool = False) -> None:
        super().__init__(message)
        self.key_may_be_set = key_may_be_set


def _import_osdp() -> Any:
    try:
        import osdp
    except ImportError as exc:  # pragma: no cover - libosdp is a pinned dependency
        raise BackendUnavailable(
            f"osdp reader: libosdp is not installed ({exc}); pip install libosdp==3.2.9"
        ) from exc
    return osdp


# -- keys ------------------------------------------------------------------------------------
def read_key(path: Path, key: str = "key_file") -> bytes:
    """Return the 16-byte SCBK in ``path`` (32 hex digits, surrounding blanks ignored).

    Raises ValueError naming ``key``: the file is missing or unreadable, others may read
    it (it must be 0600 or stricter), or it does not hold a 128-bit key. The message never
    contains the key.
    """
    try:
        info = path.stat()
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"{key}: {path}: {why}") from None
    if info.st_mode & 0o077:
        raise ValueError(
            f"{key}: {path}: mode {info.st_mode & 0o777:o}, others may read it (chmod 0600 {path})"
        )
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != KEY_BYTES:
        raise ValueError(f"{key}: {path}: not a 128-bit key (32 hexadecimal digits)")
    if value == bytes(range(0x30, 0x40)):
        # SCBK-D, the published install-mode key: anyone can compute the session keys.
        raise ValueError(f"{key}: {path}: holds the default install-mode key SCBK-D")
    return value


def write_key(path: Path, value: bytes) -> None:
    """Write ``value`` (16 bytes) to ``path`` as hex, mode 0600, atomically (write a
    temporary file, fsync, rename). Returns None; raises OSError."""
    if len(value) != KEY_BYTES:
        raise ValueError("an SCBK has 16 bytes")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, value.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _pending(path: Path) -> Path:
    """Where a key waits while a reader takes it (kept if that fails half-way)."""
    return path.with_name(path.name + ".pending")


# -- the wire --------------------------------------------------------------------------------
class SerialChannel:
    """An RS-485 adapter through pyserial, non-blocking, as libosdp's channel.

    An adapter unplugged while the agent runs makes every read fail: the failure is logged
    once (not every 20 ms poll), the readers go ``reader_offline``, and the port is opened
    again every :data:`REOPEN_S` until the adapter is back.

    ``wait_for_port``: a port that does not exist yet (the adapter not plugged in when the
    agent starts) is treated like one unplugged later: logged once, opened again every
    :data:`REOPEN_S`. Without it (commissioning, the self-test) it raises at once. A port
    that exists but cannot be opened (permissions, busy) always raises: waiting would not
    cure it.
    """

    #: Seconds between attempts to open a port that failed.
    REOPEN_S = 2.0

    def __init__(self, port: str, baud_rate: int, *, wait_for_port: bool = False) -> None:
        try:
            import serial
        except ImportError as exc:  # pragma: no cover - pyserial comes with nfcpy
            raise BackendUnavailable(f"osdp reader: pyserial is missing ({exc})") from exc
        self._port = port
        self._error = serial.SerialException
        self._broken_at: float | None = None
        if wait_for_port and not os.path.exists(port):
            # Configured, not opened: _usable() opens it once the adapter appears.
            self._serial = serial.Serial(
                None, baud_rate, timeout=0, write_timeout=1.0, exclusive=True
            )
            self._serial.port = port
            self._broken_at = time.monotonic() - self.REOPEN_S
            log.error(
                "osdp bus %s is not there (is the RS-485 adapter plugged in?); "
                "trying again every %g s",
                port,
                self.REOPEN_S,
            )
            return
        try:
            self._serial = serial.Serial(
                port, baud_rate, timeout=0, write_timeout=1.0, exclusive=True
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise BackendUnavailable(
                f"osdp reader: cannot open {port}: {exc} (is the RS-485 adapter plugged in, "
                "is the agent's user in the dialout group, is another program using it?)"
            ) from exc

    def _failed(self, what: str, exc: BaseException) -> None:
        if self._broken_at is None:
            log.error("osdp bus %s on %s failed: %s; reopening it", what, self._port, exc)
        self._broken_at = time.monotonic()
        with contextlib.suppress(self._error, OSError):
            self._serial.close()

    def _usable(self) -> bool:
        if self._broken_at is None:
            return True
        if time.monotonic() - self._broken_at < self.REOPEN_S:
            return False
        try:
            self._serial.open()
        except (self._error, OSError):
            self._broken_at = time.monotonic()
            return False
        log.warning("osdp bus %s is back", self._port)
        self._broken_at = None
        return True

    def read(self, max_bytes: int) -> bytes:
        if not self._usable():
            return b""
        try:
            return bytes(self._serial.read(max_bytes))
        except (self._error, OSError) as exc:
            self._failed("read", exc)
            return b""

    def write(self, buf: bytes) -> int:
        if not self._usable():
            return 0
        try:
            return int(self._serial.write(buf) or 0)
        except (self._error, OSError) as exc:
            self._failed("write", exc)
            return 0

    def flush(self) -> None:
        # termios.error (not an OSError) when the adapter is gone: nothing to flush then.
        with contextlib.suppress(Exception):
            self._serial.reset_input_buffer()

    def close(self) -> None:
        with contextlib.suppress(self._error, OSError):
            self._serial.close()


class _WatchedChannel:
    """The bus as libosdp sees it, noting when each reader last sent a reply frame.

    Only frame boundaries are parsed (start byte, address, length): the content stays
    libosdp's business. A reply carries its reader's address with the top bit set.

    Nothing may escape from here: libosdp's bindings call these methods from C and do not
    clear a Python exception left behind, after which the control panel's thread hangs
    (seen with an adapter unplugged). Every error is logged once and reads as silence.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._buf = bytearray()
        self.last_reply: dict[int, float] = {}
        self.id = 0  # libosdp's Channel attribute
        self._failing = False

    def _fault(self, what: str, exc: Exception) -> None:
        if not self._failing:
            log.error("osdp bus %s failed: %s: %s", what, type(exc).__name__, exc)
        self._failing = True

    def read(self, max_bytes: int) -> bytes:
        try:
            data = bytes(self._inner.read(max_bytes))
        except Exception as exc:  # see the class docstring
            self._fault("read", exc)
            return b""
        self._failing = False
        if data:
            self._note(data, time.monotonic())
        return data

    def write(self, buf: bytes) -> int:
        try:
            return int(self._inner.write(buf))
        except Exception as exc:  # see the class docstring
            self._fault("write", exc)
            return 0

    def flush(self) -> None:
        self._buf.clear()
        try:
            self._inner.flush()
        except Exception as exc:  # see the class docstring
            self._fault("flush", exc)

    def _note(self, data: bytes, now: float) -> None:
        buf = self._buf
        buf.extend(data)
        while True:
            start = buf.find(_SOM)
            if start < 0:
                buf.clear()
                return
            del buf[:start]
            if len(buf) < 4:
                return
            length = buf[2] | buf[3] << 8
            if not 7 <= length <= 1440:
                del buf[:1]  # not a frame start: resynchronise on the next 0x53
                continue
            if len(buf) < length:
                return
            if buf[1] & _REPLY_BIT:
                self.last_reply[buf[1] & 0x7F] = now
            del buf[:length]


class _Peripheral:
    """One reader's state as the watcher sees it."""

    def __init__(self, settings: PeripheralSettings, index: int) -> None:
        self.settings = settings
        self.index = index
        self.attempt = time.monotonic()
        self.sc_changes = 0
        self.down_since: float | None = None
        self.tamper = False
        self.rekeying = False
        #: (number, command id, acknowledged) of the last commands the reader answered.
        self.completions: collections.deque[tuple[int, int, bool]] = collections.deque(maxlen=32)
        self.answered = 0

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def address(self) -> int:
        return self.settings.address


def _led(on_color: int, off_color: int, on: int, off: int, seconds: float | None) -> dict[str, Any]:
    osdp = _import_osdp()
    command: dict[str, Any] = {
        "command": osdp.Command.LED,
        "reader": 0,
        "led_number": 0,
        "on_color": on_color,
        "off_color": off_color,
        "on_count": on,
        "off_count": off,
    }
    if seconds is None:  # the permanent state: what the LED shows when nothing happens
        return {**command, "temporary": False, "control_code": 1}
    # timer_count is in 100 ms units; the bindings carry one byte of it.
    return {
        **command,
        "temporary": True,
        "control_code": 2,
        "timer_count": max(1, min(255, round(seconds * 10))),
    }


def _buzzer(on: int, off: int, repeat: int) -> dict[str, Any]:
    osdp = _import_osdp()
    return {
        "command": osdp.Command.Buzzer,
        "reader": 0,
        "control_code": 2,  # the default tone
        "on_count": on,
        "off_count": off,
        "rep_count": repeat,
    }


def feedback_commands(feedback: Feedback, pin_timeout_s: float) -> list[dict[str, Any]]:
    """The OSDP commands that show ``feedback`` (LED then buzzer), as libosdp takes them.

    Grant: green for 2 s and one beep; deny: red flashing for 2 s and three short beeps;
    PIN: amber flashing while the PIN is awaited; lockdown: red at rest and a long beep;
    idle: the LED off at rest.
    """
    osdp = _import_osdp()
    color = osdp.CommandLEDColor
    if feedback is Feedback.GRANT:
        return [_led(color.Green, color.Black, 20, 0, 2.0), _buzzer(2, 1, 1)]
    if feedback is Feedback.DENY:
        return [_led(color.Red, color.Black, 2, 2, 2.0), _buzzer(1, 1, 3)]
    if feedback is Feedback.PIN:
        return [_led(color.Amber, color.Black, 3, 3, pin_timeout_s), _buzzer(1, 0, 1)]
    if feedback is Feedback.LOCKDOWN:
        return [_led(color.Red, color.Red, 1, 0, None), _buzzer(10, 0, 1)]
    return [_led(color.Black, color.Black, 0, 1, None)]


class OsdpReader(DoorReader):
    """The readers of one OSDP bus (``backend = "osdp"``).

    ``channel``: libosdp channel to use instead of opening ``settings.port`` (the tests'
    and the bench's emulated bus, :mod:`hardware.reader.emulator`). ``log_level``:
    libosdp's own logging on stderr (an ``osdp.LogLevel``; default warnings).
    ``wait_for_port``: an adapter missing at open is waited for (the agent's readers, which
    are ``reader_offline`` meanwhile) instead of raising (:class:`SerialChannel`).
    """

    backend = "osdp"

    def __init__(
        self,
        settings: ReaderSettings,
        *,
        on_alarm: AlarmCallback | None = None,
        channel: Any = None,
        log_level: int | None = None,
        wait_for_port: bool = False,
    ) -> None:
        super().__init__(settings, on_alarm=on_alarm)
        self._given_channel = channel
        self._wait_for_port = wait_for_port
        self._log_level = log_level
        self._channel: _WatchedChannel | None = None
        self._serial: SerialChannel | None = None
        self._cp: osdp.ControlPanel | None = None
        self._events: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self._pds: dict[str, _Peripheral] = {}
        self._by_index: dict[int, _Peripheral] = {}
        self._uncommissioned: dict[str, str] = {}
        self._opened_at = 0.0

    def reader_names(self) -> tuple[str, ...]:
        return tuple(pd.name for pd in self._settings.peripherals)

    def _requires_pin(self, reader: str) -> bool:
        pd = self._pds.get(reader)
        return pd is not None and pd.settings.require_pin

    # -- open / close ----------------------------------------------------------------------
    def _open(self) -> None:
        osdp = _import_osdp()
        settings = self._settings
        if not settings.secure_channel:
            log.warning(
                "OSDP Secure Channel is OFF ([hardware.reader] secure_channel = false): "
                "card numbers cross the bus in clear and can be sniffed and replayed"
            )
        infos: list[tuple[PeripheralSettings, bytes | None, list[int]]] = []
        self._pds.clear()
        self._by_index.clear()
        self._uncommissioned.clear()
        for i, pd in enumerate(settings.peripherals):
            flags = [osdp.LibFlag.EnableNotification]
            scbk = None
            if settings.secure_channel:
                assert pd.key_file is not None  # ReaderSettings requires it
                try:
                    scbk = read_key(pd.key_file, f"peripherals[{i}].key_file")
                except ValueError as exc:
                    # One reader without its key must not keep the others dark.
                    self._uncommissioned[pd.name] = str(exc)
                    log.error("reader %s left out: %s", pd.name, exc)
                    continue
                # Never clear, never SCBK-D: a reader that cannot do the Secure Channel
                # with its own key stays offline (libosdp's recommended production flag).
                flags.append(osdp.LibFlag.EnforceSecure)
            peripheral = _Peripheral(pd, len(infos))
            self._pds[pd.name] = peripheral
            self._by_index[peripheral.index] = peripheral
            infos.append((pd, scbk, flags))
        if not infos:
            problems = "; ".join(self._uncommissioned.values())
            raise BackendUnavailable(f"osdp reader: no reader can be used: {problems}")
        if self._given_channel is not None:
            inner = self._given_channel
        else:
            self._serial = SerialChannel(
                settings.port, settings.baud_rate, wait_for_port=self._wait_for_port
            )
            inner = self._serial
        self._channel = _WatchedChannel(inner)
        pd_infos = [
            osdp.PDInfo(pd.address, self._channel, scbk=scbk, flags=flags, name=pd.name)
            for pd, scbk, flags in infos
        ]
        level = osdp.LogLevel.Warning if self._log_level is None else self._log_level
        self._cp = osdp.ControlPanel(pd_infos, log_level=level, event_handler=self._on_event)
        self._opened_at = time.monotonic()
        for peripheral in self._pds.values():
            peripheral.attempt = self._opened_at
        self._cp.start()
        for name, why in self._uncommissioned.items():
            self._alarm(name, ReaderAlarmKind.INSECURE, True, f"not commissioned: {why}")

    def _close(self) -> None:
        cp, self._cp = self._cp, None
        if cp is not None:
            with contextlib.suppress(RuntimeError):
                cp.stop()
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    # -- events (libosdp's thread, its lock held: queue them, nothing else) ---------------
    def _on_event(self, pd: int, event: dict[str, Any]) -> int:
        osdp = _import_osdp()
        peripheral = self._by_index.get(pd)
        if peripheral is not None and event.get("event") == osdp.Event.Notification:
            kind = event.get("type")
            if kind == osdp.EventNotification.SecureChannelStatus:
                peripheral.sc_changes += 1
            elif kind == osdp.EventNotification.Command:  # answered: ACK (arg1 1) or not (0)
                peripheral.answered += 1
                peripheral.completions.append(
                    (peripheral.answered, int(event.get("arg0", 0)), bool(event.get("arg1")))
                )
        self._events.put((pd, event))
        self._wake.set()
        return 0

    def _tick(self, now: float) -> None:
        cp = self._cp
        if cp is None:
            return
        osdp = _import_osdp()
        while True:
            try:
                index, event = self._events.get_nowait()
            except queue.Empty:
                break
            peripheral = self._by_index.get(index)
            if peripheral is not None:
                self._handle(osdp, cp, peripheral, event)
        for pd in self._pds.values():
            # libosdp's ControlPanel also keeps every event in a queue of its own for
            # get_event(), unbounded: empty it, or it grows with every card and command.
            while cp.get_event(pd.address, timeout=-1) is not None:
                pass
        assert self._channel is not None
        online_mask = cp.status()
        sc_mask = cp.sc_status()
        for pd in self._pds.values():
            self._watch(
                cp, pd, now, bool(online_mask >> pd.index & 1), bool(sc_mask >> pd.index & 1)
            )

    def _secure(self, cp: Any, pd: _Peripheral) -> bool:
        return not self._settings.secure_channel or bool(cp.sc_status() >> pd.index & 1)

    def _handle(self, osdp: Any, cp: Any, pd: _Peripheral, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind in (osdp.Event.CardRead, osdp.Event.KeyPress) and not self._secure(cp, pd):
            # Enforced Secure Channel makes this unreachable; if it ever happens, a card
            # that crossed the bus in clear decides nothing.
            log.error("reader %s: input outside the Secure Channel ignored", pd.name)
            self._alarm(pd.name, ReaderAlarmKind.INSECURE, True, "input outside the Secure Channel")
            return
        if kind == osdp.Event.CardRead:
            self._card(self._card_read(osdp, pd, event))
        elif kind == osdp.Event.KeyPress:
            self._keys(pd.name, bytes(event.get("data", b"")))
        elif kind == osdp.Event.Status and event.get("type") == osdp.StatusReportType.Local:
            report = bytes(event.get("report", b""))
            tamper = bool(report[:1] and report[0])
            pd.tamper = tamper
            self._alarm(pd.name, ReaderAlarmKind.TAMPER, tamper, "the reader reports tamper")
            if len(report) > 1 and report[1]:
                log.warning("reader %s reports a power failure", pd.name)

    def _card_read(self, osdp: Any, pd: _Peripheral, event: dict[str, Any]) -> CardRead:
        data = bytes(event.get("data", b""))
        fmt = event.get("format")
        if fmt == osdp.CardFormat.ASCII:
            return CardRead(pd.name, "ascii", data=data, error=None if data else "empty read")
        bits = int(event.get("length", len(data) * 8))
        # libosdp hands the bits left-aligned in whole bytes: drop the padding.
        value = int.from_bytes(data, "big") >> max(0, len(data) * 8 - bits)
        raw = fmt != osdp.CardFormat.Wiegand
        return CardRead.from_bits(pd.name, value, bits, self._settings.wiegand_formats, raw=raw)

    def _watch(self, cp: Any, pd: _Peripheral, now: float, online: bool, sc: bool) -> None:
        assert self._channel is not None
        settings = self._settings
        if pd.rekeying:
            return  # KEYSET restarts the session on purpose: rekey() watches it
        last = self._channel.last_reply.get(pd.address)
        answering = last is not None and now - last < settings.offline_after_s
        if online:
            pd.down_since = None
        elif pd.down_since is None:
            pd.down_since = now
        # Not online since when: the last (re)start of the reader, or when it went down.
        since = max(pd.attempt, pd.down_since or pd.attempt)
        answered = last is not None and last >= since
        silent = f"no answer to polls for {settings.offline_after_s:g} s"
        if online and answering:
            self._alarm(pd.name, ReaderAlarmKind.OFFLINE, False)
            if sc or not settings.secure_channel:
                self._alarm(pd.name, ReaderAlarmKind.INSECURE, False)
            else:
                self._alarm(pd.name, ReaderAlarmKind.INSECURE, True, "the link is in clear")
        elif online:
            self._alarm(pd.name, ReaderAlarmKind.OFFLINE, True, silent)
        elif answered:
            if now - since >= SC_GRACE_S:
                # It answers the controller but was not brought online: with the Secure
                # Channel enforced that is a wrong key, a reader in install mode (a
                # factory-fresh or swapped reader) or one that cannot do it.
                self._alarm(pd.name, ReaderAlarmKind.OFFLINE, False)
                self._alarm(
                    pd.name,
                    ReaderAlarmKind.INSECURE,
                    True,
                    "the reader answers but the Secure Channel failed "
                    "(wrong key, install mode or no Secure Channel)",
                )
        elif now - since >= settings.offline_after_s:
            self._alarm(pd.name, ReaderAlarmKind.OFFLINE, True, silent)
        if not online and now - pd.attempt >= settings.retry_s:
            # libosdp waits 5 minutes before trying an offline reader again: restart it.
            pd.attempt = now
            cp.disable_pd(pd.address)
            cp.enable_pd(pd.address)

    # -- feedback ----------------------------------------------------------------------------
    def _send_feedback(self, reader: str, feedback: Feedback) -> None:
        cp = self._cp
        pd = self._pds.get(reader)
        if cp is None or pd is None:
            raise DeviceError(f"reader {reader} is not on the bus")
        for command in feedback_commands(feedback, self._settings.pin_timeout_s):
            if not cp.submit_command(pd.address, command):
                raise DeviceError(f"reader {reader} is offline")

    def submit(self, reader: str, command: dict[str, Any]) -> bool:
        """Send one libosdp command dict to ``reader`` (the self-test's LED and buzzer
        test). Returns False when the reader is offline."""
        pd = self._pds.get(reader)
        if self._cp is None or pd is None:
            raise DeviceError(f"reader {reader} is not on the bus")
        return bool(self._cp.submit_command(pd.address, command))

    def test_outputs(self, reader: str, timeout: float = 3.0) -> dict[str, bool | None]:
        """The installer's LED and buzzer test: red, green, amber for a second each, then
        two beeps. Returns whether the reader acknowledged the LED and the buzzer commands
        (None: no answer in ``timeout`` seconds)."""
        osdp = _import_osdp()
        pd = self._pds.get(reader)
        if pd is None:
            raise DeviceError(f"reader {reader} is not on the bus")
        color = osdp.CommandLEDColor
        seen = pd.answered
        sent = [
            self.submit(reader, _led(c, color.Black, 10, 0, 1.0))
            for c in (color.Red, color.Green, color.Amber)
        ]
        sent.append(self.submit(reader, _buzzer(3, 3, 2)))
        wanted = {osdp.Command.LED: "led", osdp.Command.Buzzer: "buzzer"}
        result: dict[str, bool | None] = {"led": None, "buzzer": None}
        if not all(sent):
            return result
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and None in result.values():
            for number, command, acked in list(pd.completions):
                if number > seen and command in wanted and result[wanted[command]] is not False:
                    result[wanted[command]] = acked
            time.sleep(0.02)
        return result

    # -- state -------------------------------------------------------------------------------
    def is_secure(self, reader: str) -> bool:
        """True when ``reader`` is online over an active Secure Channel."""
        pd = self._pds.get(reader)
        cp = self._cp
        if cp is None or pd is None:
            return False
        return bool(cp.status() >> pd.index & 1) and bool(cp.sc_status() >> pd.index & 1)

    def wait_secure(self, reader: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``reader`` to be online over Secure Channel."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_secure(reader):
                return True
            time.sleep(0.02)
        return self.is_secure(reader)

    def status(self) -> list[dict[str, Any]]:
        cp = self._cp
        online_mask = cp.status() if cp is not None else 0
        sc_mask = cp.sc_status() if cp is not None else 0
        now = time.monotonic()
        alarms = self.alarms()
        out = []
        for pd in self._settings.peripherals:
            state = self._pds.get(pd.name)
            last = None
            if state is not None and self._channel is not None:
                last = self._channel.last_reply.get(pd.address)
            out.append(
                {
                    "name": pd.name,
                    "address": pd.address,
                    "commissioned": pd.name not in self._uncommissioned,
                    "online": state is not None and bool(online_mask >> state.index & 1),
                    "secure_channel": state is not None and bool(sc_mask >> state.index & 1),
                    "last_reply_s": None if last is None else round(now - last, 3),
                    "require_pin": pd.require_pin,
                    "alarms": sorted(k for (r, k) in alarms if r == pd.name),
                }
            )
        return out

    # -- keys --------------------------------------------------------------------------------
    def rekey(self, reader: str, timeout: float = 5.0) -> None:
        """Give ``reader`` a new random SCBK with the KEYSET command, inside its running
        Secure Channel, and keep it in its key file once a new session proves it.

        The new key waits in ``<key_file>.pending`` while the reader takes it: if the
        agent stops half-way, that file holds the key the reader may now have.
        Raises :class:`CommissioningError` if the reader is not secure now or the new
        session does not come up in ``timeout`` seconds.
        """
        osdp = _import_osdp()
        pd = self._pds.get(reader)
        cp = self._cp
        if cp is None or pd is None or pd.settings.key_file is None:
            raise CommissioningError(f"reader {reader} is not on this bus with a key file")
        if not self.is_secure(reader):
            raise CommissioningError(f"reader {reader} has no Secure Channel now: cannot rekey")
        key_file = pd.settings.key_file
        new = secrets.token_bytes(KEY_BYTES)
        write_key(_pending(key_file), new)
        pd.rekeying = True
        try:
            before = pd.sc_changes
            if not cp.submit_command(
                pd.address, {"command": osdp.Command.Keyset, "type": 1, "data": new}
            ):
                _pending(key_file).unlink(missing_ok=True)
                raise CommissioningError(f"reader {reader} refused the KEYSET command")
            deadline = time.monotonic() + timeout
            # libosdp ends the session on the reader's ACK and starts one with the new key.
            while time.monotonic() < deadline:
                if pd.sc_changes >= before + 2 and self.is_secure(reader):
                    break
                time.sleep(0.02)
            else:
                raise CommissioningError(
                    f"reader {reader}: no Secure Channel with the new key in {timeout:g} s; "
                    f"the key it may hold is in {_pending(key_file)}",
                    key_may_be_set=True,
                )
            os.replace(_pending(key_file), key_file)
            log.info("reader %s has a new SCBK", reader)
        finally:
            pd.rekeying = False


def commission(
    settings: ReaderSettings,
    reader: str,
    *,
    channel: Any = None,
    timeout: float = 10.0,
    log_level: int | None = None,
) -> None:
    """Give a factory-fresh reader (in install mode) its own key; the only use of SCBK-D.

    The reader must be alone in install mode on the bus, and the agent stopped (it holds
    the port). A new random SCBK is written to ``<key_file>.pending``; libosdp opens a
    Secure Channel with the default key SCBK-D and sends the new key with KEYSET; a second
    session, with the new key only and the Secure Channel enforced, proves it; then the key
    file is written (0600). Returns None.

    Raises:
        CommissioningError: the reader already has a key file (install mode is refused
            once commissioned: rekey it instead), the Secure Channel is off, the reader
            came online in clear, or the key did not take in ``timeout`` seconds.
        BackendUnavailable: the port cannot be opened.
    """
    osdp = _import_osdp()
    pd = next((p for p in settings.peripherals if p.name == reader), None)
    if pd is None:
        raise CommissioningError(f"no reader named {reader!r} in [hardware.reader]")
    if not settings.secure_channel or pd.key_file is None:
        raise CommissioningError("commissioning sets a Secure Channel key: secure_channel is off")
    key_file = pd.key_file
    if key_file.exists():
        raise CommissioningError(
            f"reader {reader} is already commissioned ({key_file} exists): install mode is "
            "refused; rekey it, or remove the key file after a factory reset of the reader"
        )
    serial_channel = None
    if channel is None:
        serial_channel = SerialChannel(settings.port, settings.baud_rate)
        channel = serial_channel
    new = secrets.token_bytes(KEY_BYTES)
    write_key(_pending(key_file), new)
    level = osdp.LogLevel.Warning if log_level is None else log_level
    try:
        _take_key(osdp, pd, channel, new, timeout, level)
        _prove_key(osdp, pd, channel, new, timeout, level)
    except CommissioningError as exc:
        if not exc.key_may_be_set:
            _pending(key_file).unlink(missing_ok=True)
        raise
    finally:
        if serial_channel is not None:
            serial_channel.close()
    os.replace(_pending(key_file), key_file)
    log.info("reader %s commissioned: its key is in %s", reader, key_file)


def _take_key(
    osdp: Any, pd: PeripheralSettings, channel: Any, key: bytes, timeout: float, level: int
) -> None:
    """Run libosdp without ENFORCE_SECURE: its key fails, SCBK-D opens a session, libosdp
    sends KEYSET with the key and restarts the session with it."""
    notes: queue.Queue[dict[str, Any]] = queue.Queue()

    def on_event(_pd: int, event: dict[str, Any]) -> int:
        if event.get("event") == osdp.Event.Notification:
            notes.put(event)
        return 0

    cp = osdp.ControlPanel(
        [osdp.PDInfo(pd.address, channel, scbk=key, flags=[osdp.LibFlag.EnableNotification])],
        log_level=level,
        event_handler=on_event,
    )
    cp.start()
    try:
        used_default = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                note = notes.get(timeout=0.05)
            except queue.Empty:
                note = None
            if note is not None and note.get("type") == osdp.EventNotification.SecureChannelStatus:
                if note.get("arg0") and note.get("arg1"):
                    used_default = True  # a session with SCBK-D: KEYSET follows
                elif note.get("arg0") and used_default:
                    return  # a session with the new key after KEYSET
            if cp.is_online(pd.address) and not cp.is_sc_active(pd.address):
                raise CommissioningError(
                    f"reader {pd.name} came online without Secure Channel: it refuses the "
                    "install-mode key (not in install mode? already keyed?); nothing was set"
                )
        raise CommissioningError(
            f"reader {pd.name}: no install-mode session in {timeout:g} s (is it at address "
            f"{pd.address}, in install mode, wired and powered?)",
            key_may_be_set=used_default,
        )
    finally:
        cp.stop()


def _prove_key(
    osdp: Any, pd: PeripheralSettings, channel: Any, key: bytes, timeout: float, level: int
) -> None:
    """A fresh session with the new key only, Secure Channel enforced."""
    flags = [osdp.LibFlag.EnforceSecure, osdp.LibFlag.EnableNotification]
    cp = osdp.ControlPanel(
        [osdp.PDInfo(pd.address, channel, scbk=key, flags=flags)], log_level=level
    )
    cp.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cp.is_online(pd.address) and cp.is_sc_active(pd.address):
                return
            time.sleep(0.02)
        raise CommissioningError(
            f"reader {pd.name}: took a key but no session with it in {timeout:g} s; "
            "the key it may hold is kept in the .pending file",
            key_may_be_set=True,
        )
    finally:
        cp.stop()
