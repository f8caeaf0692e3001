"""OSDP readers: the agent's Control Panel against libosdp's own Peripheral Device emulator.

Both sides are libosdp's C core (the reader side is what runs in OSDP readers' firmware),
on an in-memory RS-485 bus or a real pty opened through pyserial, in this test run. Every
wait is bounded and polls for the condition, so the tests take well under a second or two
each and fail with a message instead of hanging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardware.errors import BackendUnavailable
from hardware.reader import (
    BUILTIN_FORMATS,
    Feedback,
    PeripheralSettings,
    ReaderAlarm,
    ReaderSettings,
    open_door_reader,
)
from hardware.reader.emulator import EmulatedBus, EmulatedReader, PtyEnd
from hardware.reader.osdp import (
    CommissioningError,
    OsdpReader,
    SerialChannel,
    commission,
    read_key,
    write_key,
)
from portier_common.settings import ConfigError, build

H10301 = BUILTIN_FORMATS["h10301"]
LED, BUZZER, KEYSET = 2, 3, 5
GREEN, RED, AMBER = 2, 1, 3


class Alarms:
    """The alarms a reader raised, with a bounded wait for one."""

    def __init__(self) -> None:
        self.items: list[tuple[float, ReaderAlarm]] = []
        self._cond = threading.Condition()

    def __call__(self, alarm: ReaderAlarm) -> None:
        with self._cond:
            self.items.append((time.monotonic(), alarm))
            self._cond.notify_all()

    def wait(self, reader: str, kind: str, active: bool = True, timeout: float = 3.0) -> float:
        """The monotonic time the alarm was raised (or cleared); fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, alarm in self.items:
                    if (alarm.reader, alarm.kind.value, alarm.active) == (reader, kind, active):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind} active={active} on {reader}: {self.items}")
                self._cond.wait(left)

    def kinds(self, reader: str) -> set[str]:
        with self._cond:
            return {a.kind.value for _, a in self.items if a.reader == reader and a.active}


def settings_for(tmp_path: Path, *readers: tuple[str, int], **overrides) -> ReaderSettings:
    pds = tuple(
        PeripheralSettings(name, address, tmp_path / f"{name}.scbk", require_pin=name == "pin")
        for name, address in readers
    )
    return ReaderSettings(backend="osdp", peripherals=pds, **overrides)


def keyed(tmp_path: Path, name: str) -> bytes:
    key = os.urandom(16)
    write_key(tmp_path / f"{name}.scbk", key)
    return key


@pytest.fixture
def bus() -> Iterator[EmulatedBus]:
    bus = EmulatedBus()
    yield bus


@pytest.fixture
def stop_later() -> Iterator[list]:
    """Things to stop at the end of the test, whatever happened."""
    items: list = []
    yield items
    for item in reversed(items):
        (item.close if hasattr(item, "close") else item.stop)()


def reader_on(bus: EmulatedBus, address: int, stop_later: list, **kw) -> EmulatedReader:
    emulated = EmulatedReader(bus, address, **kw).start()
    stop_later.append(emulated)
    return emulated


def controller(
    settings: ReaderSettings, bus: EmulatedBus, stop_later: list, alarms: Alarms | None = None
) -> OsdpReader:
    cp = open_door_reader(settings, on_alarm=alarms, channel=bus.controller_channel())
    stop_later.append(cp)
    assert isinstance(cp, OsdpReader)
    return cp


# -- configuration and keys -------------------------------------------------------------------
def test_config_errors_name_the_key(tmp_path: Path) -> None:
    def error(table: dict) -> str:
        with pytest.raises(ConfigError) as info:
            build(ReaderSettings, table, "hardware.reader")
        return str(info.value)

    pd = {"name": "entry", "address": 1, "key_file": str(tmp_path / "k")}
    assert error({"peripherals": [pd]}).startswith("hardware.reader.backend: required")
    assert error({"backend": "rs232"}).startswith("hardware.reader.backend: unknown reader")
    assert error({"backend": "osdp", "peripherals": [{**pd, "address": 127}]}).startswith(
        "hardware.reader.peripherals[0].address: 127 must be an integer from 0 to 126"
    )
    assert "has no key_file (secure_channel is on)" in error(
        {"backend": "osdp", "peripherals": [{"name": "entry", "address": 1}]}
    )
    assert error({"backend": "osdp", "peripherals": [pd], "baud_rate": 1200}).startswith(
        "hardware.reader.baud_rate:"
    )
    assert error({"backend": "osdp", "peripherals": [pd, {**pd, "name": "exit"}]}).startswith(
        "hardware.reader.peripherals: two readers have address 1"
    )
    assert error({"backend": "osdp", "peripherals": [pd], "offline_after_s": 5000}).startswith(
        "hardware.reader.offline_after_s:"
    )
    good = build(ReaderSettings, {"backend": "osdp", "peripherals": [pd]}, "hardware.reader")
    assert good.secure_channel is True  # on unless the file says otherwise
    assert good.peripherals[0].key_file == tmp_path / "k"


def test_key_files_are_private_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "entry.scbk"
    key = os.urandom(16)
    write_key(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_key(path) == key
    path.chmod(0o640)
    with pytest.raises(ValueError, match=r"key_file: .*mode 640, others may read it") as info:
        read_key(path)
    assert key.hex() not in str(info.value)
    path.chmod(0o600)
    path.write_text("not a key\n")
    with pytest.raises(ValueError, match="not a 128-bit key"):
        read_key(path)
    path.write_text(bytes(range(0x30, 0x40)).hex())  # SCBK-D, published in the standard
    with pytest.raises(ValueError, match="default install-mode key"):
        read_key(path)
    with pytest.raises(ValueError, match="No such file"):
        read_key(tmp_path / "missing.scbk")


def test_no_port_is_unavailable_never_replaced(tmp_path: Path) -> None:
    keyed(tmp_path, "entry")
    settings = settings_for(tmp_path, ("entry", 1), port="/dev/does-not-exist")
    with pytest.raises(BackendUnavailable, match="cannot open /dev/does-not-exist"):
        open_door_reader(settings)


# -- Secure Channel, commissioning and keys ---------------------------------------------------
def test_secure_channel_card_read_decision_and_led_over_a_real_pty(tmp_path: Path) -> None:
    """The production path: pyserial opens a serial device (a pty), SC, a card, the LED."""
    key = keyed(tmp_path, "entry")
    pty = PtyEnd()
    emulated = EmulatedReader(None, 1, channel=pty, key=key).start()
    settings = settings_for(tmp_path, ("entry", 1), port=pty.port)
    try:
        with open_door_reader(settings) as readers:
            assert isinstance(readers, OsdpReader)
            assert readers.wait_secure("entry", 3.0)
            assert emulated.secure
            emulated.present_card(H10301.encode(42, 1001), 26)
            presented = readers.read(2.0)
            assert presented is not None and presented.card.decoded is not None
            assert (presented.card.decoded.facility, presented.card.decoded.number) == (42, 1001)
            readers.feedback("entry", Feedback.GRANT)
            led = emulated.wait_for(lambda c: c["command"] == LED)
            assert led is not None and led["on_color"] == GREEN and led["temporary"]
    finally:
        emulated.stop()
        pty.close()


def test_commissioning_sets_the_key_with_keyset_then_refuses_install_mode(
    tmp_path: Path, bus: EmulatedBus, stop_later: list
) -> None:
    settings = settings_for(tmp_path, ("entry", 1))
    fresh = reader_on(bus, 1, stop_later, install_mode=True)  # factory default: SCBK-D
    commission(settings, "entry", channel=bus.controller_channel(), timeout=5)
    key_file = tmp_path / "entry.scbk"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "entry.scbk.pending").exists()
    keysets = [c for c in fresh.commands() if c["command"] == KEYSET]
    assert len(keysets) == 1 and keysets[0]["type"] == 1  # SCBK, by the protocol's KEYSET
    assert keysets[0]["data"] == read_key(key_file) == fresh.key

    # Commissioned: install mode is refused, even asked for explicitly...
    with pytest.raises(CommissioningError, match="already commissioned"):
        commission(settings, "entry", channel=bus.controller_channel(), timeout=1)
    # ...and the door's own controller runs with the new key, Secure Channel enforced.
    readers = controller(settings, bus, stop_later)
    assert readers.wait_secure("entry", 3.0)


def test_commissioning_a_reader_not_in_install_mode_sets_nothing(
    tmp_path: Path, bus: EmulatedBus, stop_later: list
) -> None:
    settings = settings_for(tmp_path, ("entry", 1))
    reader_on(bus, 1, stop_later, key=os.urandom(16))  # keyed elsewhere, refuses SCBK-D
    with pytest.raises(CommissioningError):
        commission(settings, "entry", channel=bus.controller_channel(), timeout=2)
    assert not (tmp_path / "entry.scbk").exists()
    assert not (tmp_path / "entry.scbk.pending").exists()


def test_a_reader_in_install_mode_is_never_keyed_by_the_running_door(
    tmp_path: Path, bus: EmulatedBus, stop_later: list
) -> None:
    """A reader swapped for a factory-fresh one (SCBK-D) after commissioning: alarm, no key
    handed out, no card read."""
    keyed(tmp_path, "entry")
    swapped = reader_on(bus, 1, stop_later, install_mode=True)
    alarms = Alarms()
    readers = controller(settings_for(tmp_path, ("entry", 1)), bus, stop_later, alarms)
    alarms.wait("entry", "reader_insecure", timeout=3)
    assert "reader_offline" not in alarms.kinds("entry")  # it answers: not a wiring fault
    assert not readers.is_secure("entry")
    assert [c for c in swapped.commands() if c["command"] == KEYSET] == []
    # libosdp's reader side may refuse the event while no controller takes it.
    with contextlib.suppress(RuntimeError):
        swapped.present_card(H10301.encode(1, 2), 26)
    assert readers.read(0.5) is None


def test_wrong_key_raises_insecure_and_reads_nothing(
    tmp_path: Path, bus: EmulatedBus, stop_later: list
) -> None:
    keyed(tmp_path, "entry")
    impostor = reader_on(bus, 1, stop_later, key=os.urandom(16))
    alarms = Alarms()
    readers = controller(settings_for(tmp_path, ("entry", 1)), bus, stop_later, alarms)
    raised = alarms.wait("entry", "reader_insecure", timeout=3)
    assert raised - readers._opened_at < 2.0
    assert not impostor.secure and not readers.is_secure("entry")
    assert readers.status()[0]["alarms"] == ["reader_insecure"]
    assert readers.read(0.2) is None


def test_rekey_with_keyset_inside_the_secure_channel(
    tmp_path: Path, bus: EmulatedBus, stop_later: list
) -> None:
    old = keyed(tmp_path, "entry")
    emulated = reader_on(bus, 1, stop_later, key=old)
    readers = controller(settings_for(tmp_path, ("entry", 1)), bus, stop_later)
    assert readers.wait_secure("entry", 3.0)
    readers.rekey("entry")
    new = read_key(tmp_path / "entry.scbk")
    assert new != old and emulated.key == new
    assert readers.is_secure("entry")
    emulated.present_card(H10301.encode(3, 4), 26)  # and cards still come through
    assert readers.read(2.0) is not None


def test_keys_never_reach_the_logs(
    tmp_path: Path, bus: EmulatedBus, stop_later: list, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(tmp_path, ("entry", 1))
    reader_on(bus, 1, stop_later, install_mode=True)
    commission(settings, "entry", channel=bus.controller_channel(), timeout=5)
    key = read_key(tmp_path / "entry.scbk")
    readers = controller(settings, bus, stop_later)
    assert readers.wait_secure("entry", 3.0)
    readers.rekey("entry")
    new = read_key(tmp_path / "entry.scbk")
    text = caplog.text + repr(readers.status()) + repr(settings)
    for secret in (key, new):
        assert secret.hex() not in text.lower() and secret.hex().upper() not in text
    assert "commissioned" in caplog.text  # the log was captured at all


# -- cards, decisions, feedback ---------------------------------------------------------------
def test_two_readers_on_one_bus_card_decision_feedback(
    tmp_path: Path, bus: EmulatedBus, stop_later: list
) -> None:
    entry = reader_on(bus, 1, stop_later, key=keyed(tmp_path, "entry"))
    exit_ = reader_on(bus, 2, stop_later, key=keyed(tmp_path, "exit"))
    readers = controller(settings_for(tmp_path, ("entry", 1), ("exit", 2)), bus, stop_later)
    assert readers.wait_secure("entry", 3.0) and readers.wait_secure("exit", 3.0)
    allowed = {(42, 1001)}

    def decide_and_show() -> tuple[str, bool]:
        presented = readers.read(2.0)
        assert presented is not None and presented.card.decoded is not None
        decoded = presented.card.decoded
        granted = (decoded.facility, decoded.number) in allowed
        readers.feedback(presented.reader, Feedback.GRANT if granted else Feedback.DENY)
        return presented.reader, granted

    exit_.present_card(H10301.encode(42, 1001), 26)
    assert decide_and_show() == ("exit", True)
    led = exit_.wait_for(lambda c: c["command"] == LED)
    assert led is not None and led["on_color"] == GREEN
    assert exit_.wait_for(lambda c: c["command"] == BUZZER) is not None
    assert [c for c in entry.commands() if c["command"] == LED] == []  # by address

    entry.present_card(H10301.encode(42, 1002), 26)
    assert decide_and_show() == ("entry", False)
    led = entry.wait_for(lambda c: c["command"] == LED)
    assert led is not None and led["on_color"] == RED and led["off_count"] > 0  # flashing
    beeps = entry.wait_for(lambda c: c["command"] == BUZZER)
    assert beeps is not None and beeps["rep_count"] == 3

    assert readers._cp is not None  # libosdp's own event queues do not grow without end
    assert all(q.qsize() <= 2 for q in readers._cp.event_queue)
    seen = len(entry.commands())
    readers.feedback("entry", Feedback.LOCKDOWN)
    led = entry.wait_for(lambda c: c["command"] == LED, after=seen)
    assert led is not None and led["on_color"] == RED and not led["temporary"]  # at rest


def test_bad_and_raw_reads(tmp_path: Path, bus: EmulatedBus, stop_later: list) -> None:
    emulated = reader_on(bus, 1, stop_later, key=keyed(tmp_path, "entry"))
    readers = controller(settings_for(tmp_path, ("entry", 1)), bus, stop_later)
    assert readers.wait_secure("entry", 3.0)
    emulated.present_card(H10301.encode(42, 1001) ^ 1 << 5, 26)  # one bit flipped
    bad = readers.read(2.0)
    assert bad is not None and bad.card.error is not None and "parity" in bad.card.error
    emulated.present_card(0x04A1B2C3, 32, wiegand=False)  # a reader sending the card's UID
    raw = readers.read(2.0)
    assert raw is not None and raw.card.error is None and raw.card.format == "raw"
    assert raw.card.uid == bytes.fromhex("04A1B2C3")


def test_card_and_pin(tmp_path: Path, bus: EmulatedBus, stop_later: list) -> None:
    emulated = reader_on(bus, 1, stop_later, key=keyed(tmp_path, "pin"))
    settings = settings_for(tmp_path, ("pin", 1), pin_timeout_s=1)
    readers = controller(settings, bus, stop_later)
    assert readers.wait_secure("pin", 3.0)
    emulated.present_card(H10301.encode(7, 77), 26)
    prompt = emulated.wait_for(lambda c: c["command"] == LED)
    assert prompt is not None and prompt["on_color"] == AMBER
    assert readers.read(0.2) is None  # the card alone is not presented
    emulated.type_keys("99*12")
    emulated.type_keys("34#")
    presented = readers.read(2.0)
    assert presented is not None and presented.pin == "1234"  # '*' started it again
    assert "pin=" not in repr(presented)  # a log line with the presentation never shows it
    assert presented.card.decoded is not None and presented.card.decoded.number == 77

    # A PIN never finished: the reader shows a deny and the card comes without a PIN,
    # marked timed out (for the door's journal), the digits typed so far dropped.
    seen = len(emulated.commands())
    emulated.present_card(H10301.encode(7, 77), 26)
    emulated.type_keys("12")
    assert readers.read(0.5) is None
    late = readers.read(1.6)
    assert late is not None and late.pin_timed_out and late.pin is None
    assert late.card.decoded is not None and late.card.decoded.number == 77
    deny = emulated.wait_for(lambda c: c["command"] == LED and c["on_color"] == RED, after=seen)
    assert deny is not None
    emulated.type_keys("#")  # too late: belongs to no card
    assert readers.read(0.3) is None

    # The door shows the lockdown while a PIN is typed: the card is presented at once,
    # marked interrupted (the door journals its refusal), without the digits typed so far.
    emulated.present_card(H10301.encode(7, 77), 26)
    emulated.type_keys("12")
    assert readers.read(0.2) is None
    readers.feedback("pin", Feedback.LOCKDOWN)
    cut = readers.read(0.5)
    assert cut is not None and cut.pin_interrupted and cut.pin is None
    assert not cut.pin_timed_out and cut.card.decoded is not None
    emulated.type_keys("34#")  # the rest belongs to no card, and no timeout follows
    assert readers.read(1.3) is None
    # Feedback for a reader waiting for no PIN presents nothing.
    readers.feedback("pin", Feedback.LOCKDOWN)
    assert readers.read(0.2) is None
    assert cut.interrupted_by == "lockdown"

    # Back to rest (a lockdown lifted) while a PIN is typed: presented interrupted, too.
    emulated.present_card(H10301.encode(7, 77), 26)
    emulated.type_keys("12")
    assert readers.read(0.2) is None
    readers.feedback("pin", Feedback.IDLE)
    rest = readers.read(0.5)
    assert rest is not None and rest.pin_interrupted and rest.interrupted_by == "idle"
    assert rest.pin is None

    # Another card before the first one's '#': the first is presented interrupted, the
    # second waits for its own PIN.
    emulated.present_card(H10301.encode(7, 77), 26)
    emulated.type_keys("12")
    assert readers.read(0.2) is None
    emulated.present_card(H10301.encode(7, 78), 26)
    first = readers.read(0.5)
    assert first is not None and first.pin_interrupted and first.interrupted_by == "card"
    assert first.pin is None and first.card.decoded is not None
    assert first.card.decoded.number == 77
    # An earlier card's outcome shown now does not end the second card's wait.
    seen = len(emulated.commands())
    readers.feedback("pin", Feedback.GRANT)
    again = emulated.wait_for(
        lambda c: c["command"] == LED and c["on_color"] == AMBER, timeout=3.0, after=seen
    )
    assert again is not None  # the prompt again after the grant was shown
    emulated.type_keys("56#")
    second = readers.read(1.0)
    assert second is not None and second.pin == "56" and not second.pin_interrupted
    assert second.card.decoded is not None and second.card.decoded.number == 78


# -- alarms ------------------------------------------------------------------------------------
def test_tamper_raises_and_clears_within_a_second(
    tmp_path: Path, bus: EmulatedBus, stop_later: list
) -> None:
    emulated = reader_on(bus, 1, stop_later, key=keyed(tmp_path, "entry"))
    alarms = Alarms()
    readers = controller(settings_for(tmp_path, ("entry", 1)), bus, stop_later, alarms)
    assert readers.wait_secure("entry", 3.0)
    opened = time.monotonic()
    emulated.tamper(True)
    assert alarms.wait("entry", "reader_tamper", timeout=2) - opened < 1.0
    closed = time.monotonic()
    emulated.tamper(False)
    assert alarms.wait("entry", "reader_tamper", active=False, timeout=2) - closed < 1.0


def test_reader_gone_raises_offline_within_a_second_and_clears_when_back(
    tmp_path: Path, bus: EmulatedBus, stop_later: list
) -> None:
    key = keyed(tmp_path, "entry")
    emulated = reader_on(bus, 1, stop_later, key=key)
    alarms = Alarms()
    settings = settings_for(tmp_path, ("entry", 1), retry_s=0.5)
    readers = controller(settings, bus, stop_later, alarms)
    assert readers.wait_secure("entry", 3.0)
    cut = time.monotonic()
    emulated.stop()  # wire cut, reader pulled off
    assert alarms.wait("entry", "reader_offline", timeout=2) - cut < 1.0
    assert readers.status()[0]["alarms"] == ["reader_offline"]
    reader_on(bus, 1, stop_later, key=key)  # rewired
    alarms.wait("entry", "reader_offline", active=False, timeout=12)
    assert readers.wait_secure("entry", 3.0)


def test_a_reader_without_its_key_is_left_out_not_run_in_clear(
    tmp_path: Path, bus: EmulatedBus, stop_later: list
) -> None:
    reader_on(bus, 1, stop_later, key=keyed(tmp_path, "entry"))
    reader_on(bus, 2, stop_later, install_mode=True)
    alarms = Alarms()
    settings = settings_for(tmp_path, ("entry", 1), ("exit", 2))  # exit.scbk missing
    readers = controller(settings, bus, stop_later, alarms)
    alarms.wait("exit", "reader_insecure", timeout=1)
    assert readers.wait_secure("entry", 3.0)
    assert {s["name"]: s["commissioned"] for s in readers.status()} == {
        "entry": True,
        "exit": False,
    }


def test_a_reader_online_without_secure_channel_is_caught_and_its_cards_dropped(
    tmp_path: Path, bus: EmulatedBus, stop_later: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: libosdp's ENFORCE_SECURE keeps a reader in clear offline (its own
    Peripheral Device always offers the Secure Channel, so no emulator can even try). Were
    libosdp ever to report a reader online with the Secure Channel down, the watcher raises
    ``reader_insecure`` and no card from it is presented."""
    emulated = reader_on(bus, 1, stop_later, key=keyed(tmp_path, "entry"))
    alarms = Alarms()
    readers = controller(settings_for(tmp_path, ("entry", 1)), bus, stop_later, alarms)
    assert readers.wait_secure("entry", 3.0)
    assert readers._cp is not None
    monkeypatch.setattr(readers._cp, "sc_status", lambda: 0)  # libosdp says: in clear
    alarms.wait("entry", "reader_insecure", timeout=1)
    emulated.present_card(H10301.encode(42, 1001), 26)
    assert readers.read(0.5) is None
    assert any(
        "outside the Secure Channel" in a.detail or "in clear" in a.detail for _, a in alarms.items
    )


def test_adapter_unplugged_and_plugged_back(
    tmp_path: Path, stop_later: list, caplog: pytest.LogCaptureFixture
) -> None:
    """The USB adapter goes (the pty behind the by-id style link closes): offline alarm,
    one log line, not one per poll; it comes back at the same path: the port is opened
    again and the reader is back over the Secure Channel."""
    caplog.set_level(logging.WARNING, logger="hardware.reader.osdp")
    key = keyed(tmp_path, "entry")
    link = tmp_path / "usb-FTDI_RS485-if00-port0"
    first = PtyEnd()
    stop_later.append(first)
    link.symlink_to(first.port)
    emulated = EmulatedReader(None, 1, channel=first, key=key).start()
    stop_later.append(emulated)
    alarms = Alarms()
    settings = settings_for(tmp_path, ("entry", 1), port=str(link), retry_s=0.5)
    readers = open_door_reader(settings, on_alarm=alarms)
    stop_later.append(readers)
    assert isinstance(readers, OsdpReader) and readers.wait_secure("entry", 3.0)

    unplugged = time.monotonic()
    emulated.stop()
    first.close()
    assert alarms.wait("entry", "reader_offline", timeout=2) - unplugged < 1.0
    time.sleep(0.5)
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1

    second = PtyEnd()  # plugged back: a new tty behind the same stable name
    stop_later.append(second)
    link.unlink()
    link.symlink_to(second.port)
    back = EmulatedReader(None, 1, channel=second, key=key).start()
    stop_later.append(back)
    alarms.wait("entry", "reader_offline", active=False, timeout=12)
    assert readers.wait_secure("entry", 3.0)
    assert any("is back" in r.getMessage() for r in caplog.records)


def test_an_adapter_missing_at_start_is_waited_for(
    tmp_path: Path, stop_later: list, caplog: pytest.LogCaptureFixture
) -> None:
    """The RS-485 adapter is not plugged in when the agent starts: with ``wait_for_port``
    (the agent's readers) the readers are offline (alarm) and the port is tried again until
    it appears, then the reader comes up over the Secure Channel; without it (commissioning,
    the self-test) the open fails at once with a hint."""
    caplog.set_level(logging.WARNING, logger="hardware.reader.osdp")
    key = keyed(tmp_path, "entry")
    link = tmp_path / "usb-FTDI_RS485-if00-port0"  # udev's by-id link: absent while unplugged
    settings = settings_for(tmp_path, ("entry", 1), port=str(link), retry_s=0.5)
    with pytest.raises(BackendUnavailable, match="is the RS-485 adapter plugged in"):
        open_door_reader(settings)
    alarms = Alarms()
    readers = open_door_reader(settings, on_alarm=alarms, wait_for_port=True)
    stop_later.append(readers)
    alarms.wait("entry", "reader_offline", timeout=2)
    assert sum("is not there" in r.getMessage() for r in caplog.records) == 1
    time.sleep(SerialChannel.REOPEN_S + 0.5)  # tried again meanwhile: still one log line
    assert sum("is not there" in r.getMessage() for r in caplog.records) == 1

    pty = PtyEnd()  # plugged in
    stop_later.append(pty)
    link.symlink_to(pty.port)
    emulated = EmulatedReader(None, 1, channel=pty, key=key).start()
    stop_later.append(emulated)
    alarms.wait("entry", "reader_offline", active=False, timeout=12)
    assert readers.wait_secure("entry", 3.0)
    assert any("is back" in r.getMessage() for r in caplog.records)
    emulated.present_card(H10301.encode(42, 1001), 26)
    presented = readers.read(2.0)
    assert presented is not None and presented.card.decoded is not None


def test_a_channel_that_raises_does_not_hang_the_control_panel(
    tmp_path: Path, bus: EmulatedBus, stop_later: list, caplog: pytest.LogCaptureFixture
) -> None:
    """libosdp's bindings call the channel from C and leave an exception set: a pyserial
    port whose adapter vanished raises termios.error (not an OSError) from flush, and that
    once hung the control panel's thread for good. The bus wrapper swallows every error,
    logs it once, and the reader comes back when the channel does."""
    import termios

    caplog.set_level(logging.ERROR, logger="hardware.reader.osdp")

    class Vanishing:
        id = 0

        def __init__(self, inner: object) -> None:
            self.inner = inner
            self.gone = False

        def read(self, n: int) -> bytes:
            if self.gone:
                raise termios.error(5, "Input/output error")
            return self.inner.read(n)  # type: ignore[attr-defined]

        def write(self, buf: bytes) -> int:
            if self.gone:
                raise ValueError("I/O operation on closed file")
            return self.inner.write(buf)  # type: ignore[attr-defined]

        def flush(self) -> None:
            if self.gone:
                raise termios.error(5, "Input/output error")

    reader_on(bus, 1, stop_later, key=keyed(tmp_path, "entry"))
    channel = Vanishing(bus.controller_channel())
    alarms = Alarms()
    readers = open_door_reader(
        settings_for(tmp_path, ("entry", 1), retry_s=0.5), on_alarm=alarms, channel=channel
    )
    stop_later.append(readers)
    assert isinstance(readers, OsdpReader) and readers.wait_secure("entry", 3.0)
    channel.gone = True
    alarms.wait("entry", "reader_offline", timeout=2)
    answered = threading.Event()
    threading.Thread(target=lambda: (readers.status(), answered.set()), daemon=True).start()
    assert answered.wait(2.0), "the control panel's lock is held for good"
    assert len([r for r in caplog.records if "osdp bus" in r.getMessage()]) == 1
    channel.gone = False
    alarms.wait("entry", "reader_offline", active=False, timeout=12)
