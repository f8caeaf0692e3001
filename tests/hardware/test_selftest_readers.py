"""The installer self-test on OSDP wall readers (libosdp's PD emulator) and a Wiegand one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from hardware.reader import PeripheralSettings, ReaderSettings, open_door_reader
from hardware.reader.emulator import EmulatedBus, EmulatedReader
from hardware.reader.osdp import write_key
from hardware.selftest import SelfTest, SimulatedInstaller, Status


def by_check(report):
    return {(r.component, r.check): r for r in report.results}


@pytest.fixture
def bus_with_reader(tmp_path: Path) -> Iterator[tuple[EmulatedBus, EmulatedReader, bytes]]:
    key = os.urandom(16)
    write_key(tmp_path / "entry.scbk", key)
    bus = EmulatedBus()
    emulated = EmulatedReader(bus, 1, key=key).start()
    yield bus, emulated, key
    emulated.stop()


def osdp_settings(tmp_path: Path) -> ReaderSettings:
    return ReaderSettings(
        backend="osdp", peripherals=(PeripheralSettings("entry", 1, tmp_path / "entry.scbk"),)
    )


def test_osdp_reader_passes_secure_channel_led_buzzer_and_card(tmp_path, bus_with_reader):
    bus, emulated, _ = bus_with_reader
    with open_door_reader(osdp_settings(tmp_path), channel=bus.controller_channel()) as readers:
        report = SelfTest(
            operator=SimulatedInstaller(wall_reader=emulated),
            door_reader=readers,
            step_timeout_s=3.0,
        ).run()
    checks = by_check(report)
    assert checks[("reader:entry", "secure_channel")].status is Status.PASS
    assert checks[("reader:entry", "led_buzzer")].status is Status.PASS
    card = checks[("reader:entry", "card_read")]
    assert card.status is Status.PASS and card.data == {"bits": 26, "format": "h10301"}
    colors = [c["on_color"] for c in emulated.commands() if c["command"] == 2]
    assert colors[:3] == [1, 2, 3]  # the LED test: red, green, amber
    assert any(c["command"] == 3 for c in emulated.commands())  # and the buzzer


def test_wrong_key_fails_the_secure_channel_check(tmp_path, bus_with_reader):
    bus, _, _ = bus_with_reader
    write_key(tmp_path / "entry.scbk", os.urandom(16))  # not the reader's key
    with open_door_reader(osdp_settings(tmp_path), channel=bus.controller_channel()) as readers:
        report = SelfTest(
            operator=SimulatedInstaller(), door_reader=readers, step_timeout_s=3.0
        ).run()
    result = by_check(report)[("reader:entry", "secure_channel")]
    assert result.status is Status.FAIL and "reader_insecure" in result.detail
    assert ("reader:entry", "card_read") not in by_check(report)
    assert not report.ok


def test_nobody_presents_a_card(tmp_path, bus_with_reader):
    bus, _, _ = bus_with_reader
    with open_door_reader(osdp_settings(tmp_path), channel=bus.controller_channel()) as readers:
        report = SelfTest(
            operator=SimulatedInstaller(), door_reader=readers, step_timeout_s=0.5
        ).run()
    assert by_check(report)[("reader:entry", "card_read")].status is Status.FAIL


def test_wiegand_is_flagged_insecure_not_passed():
    factory = MockFactory()
    settings = ReaderSettings(backend="wiegand")
    try:
        with open_door_reader(settings, pin_factory=factory) as readers:
            report = SelfTest(
                operator=SimulatedInstaller(), door_reader=readers, interactive=False
            ).run()
    finally:
        factory.close()
    result = by_check(report)[("reader:door", "secure_channel")]
    assert result.status is Status.SKIPPED and result.detail.startswith("INSECURE")


def test_reader_that_cannot_open_fails():
    report = SelfTest(operator=SimulatedInstaller(), unavailable={"reader": "no port"}).run()
    assert by_check(report)[("reader", "wall_reader")].status is Status.FAIL
