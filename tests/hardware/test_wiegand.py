"""Wiegand readers under gpiozero's MockFactory: pulse trains with a reader's timing, and noise.

The pins are gpiozero's MockPin with one change: an edge is stamped with a virtual clock
(the factory's ``ticks()``) that the test advances by the pulse widths and gaps a real
reader produces (50-100 µs low pulses, 1-2 ms apart, 30 ms of silence after a frame), so
the timing the decoder sees is exactly the one written here, whatever the load on the
machine.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPin, PinState

from hardware.reader import (
    BUILTIN_FORMATS,
    Feedback,
    Parity,
    ReaderAlarm,
    ReaderSettings,
    WiegandFormat,
    open_door_reader,
)
from hardware.reader.formats import ParityError, decode
from hardware.reader.wiegand import WiegandDecoder, WiegandReader, key_of_frame
from portier_common.settings import ConfigError, build

D0, D1 = 5, 6


class TimedPin(MockPin):
    """A MockPin whose edges carry the factory's virtual time."""

    _last_change: float
    _state: bool

    def _change_state(self, value: bool) -> bool:
        if self._state != value:
            now = self._factory.now
            self._state = value
            self.states.append(PinState(now - self._last_change, value))
            self._last_change = now
            return True
        return False


class TimedFactory(MockFactory):
    """MockFactory on a virtual clock (seconds)."""

    def __init__(self) -> None:
        super().__init__(pin_class=TimedPin)
        self.now = 1000.0

    def ticks(self) -> float:
        return self.now


class Wire:
    """Drives the DATA0/DATA1 lines the way a reader does."""

    def __init__(self, factory: TimedFactory, seed: int = 7) -> None:
        self.factory = factory
        self.d = (factory.pin(D0), factory.pin(D1))
        self.rng = random.Random(seed)

    def pulse(self, line: int, width: float | None = None) -> None:
        pin = self.d[line]
        pin.drive_low()
        self.factory.now += self.rng.uniform(50e-6, 100e-6) if width is None else width
        pin.drive_high()

    def gap(self) -> None:
        self.factory.now += self.rng.uniform(1e-3, 2e-3)

    def send(self, value: int, bits: int) -> None:
        for bit in format(value, f"0{bits}b"):
            self.pulse(int(bit))
            self.gap()
        self.silence()

    def silence(self, seconds: float = 0.03) -> None:
        """The end of a frame: nothing on the lines."""
        self.factory.now += seconds


@pytest.fixture
def factory() -> Iterator[TimedFactory]:
    factory = TimedFactory()
    yield factory
    factory.close()


def open_wiegand(factory: TimedFactory, **overrides) -> WiegandReader:
    settings = ReaderSettings(backend="wiegand", d0_pin=D0, d1_pin=D1, **overrides)
    reader = open_door_reader(settings, pin_factory=factory)
    assert isinstance(reader, WiegandReader)
    return reader


# -- formats ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "facility", "number"),
    [("h10301", 123, 45678), ("h10306", 5000, 65535), ("h10302", None, 34_359_738_367)],
)
def test_builtin_formats_round_trip_and_every_single_bit_error_is_caught(
    name: str, facility: int | None, number: int
) -> None:
    fmt = BUILTIN_FORMATS[name]
    value = fmt.encode(facility, number)
    card = decode(value, fmt.bits, tuple(BUILTIN_FORMATS.values()))
    assert (card.format, card.facility, card.number) == (name, facility, number)
    for bit in range(fmt.bits):  # flip each bit in turn: a parity must object
        with pytest.raises(ParityError):
            fmt.decode(value ^ 1 << bit, fmt.bits)


def test_known_h10301_vector() -> None:
    # Facility 1, card 1: 1 00000001 0000000000000001 0 (even, then odd parity)
    card = BUILTIN_FORMATS["h10301"].decode(0b1_00000001_0000000000000001_0, 26)
    assert (card.facility, card.number) == (1, 1)


def test_custom_format_from_the_configuration() -> None:
    table = {
        "backend": "wiegand",
        "formats": ["h10301", "corp35"],
        "custom_formats": [
            {
                "name": "corp35",
                "bits": 35,
                "facility_start": 2,
                "facility_length": 12,
                "number_start": 14,
                "number_length": 20,
                "parity": [
                    {"position": 1, "start": 2, "length": 16, "kind": "even"},
                    {"position": 34, "start": 1, "length": 33, "kind": "odd"},
                ],
            }
        ],
    }
    settings = build(ReaderSettings, table, "hardware.reader")
    fmt = settings.formats_by_name["corp35"]
    assert fmt.parity == (Parity(1, 2, 16, "even"), Parity(34, 1, 33, "odd"))
    value = fmt.encode(4000, 999_999)
    card = decode(value, 35, settings.wiegand_formats)
    assert (card.facility, card.number) == (4000, 999_999)
    with pytest.raises(ParityError):
        decode(value ^ 1 << 20, 35, settings.wiegand_formats)


def test_format_config_errors_name_the_key() -> None:
    def error(table: dict) -> str:
        with pytest.raises(ConfigError) as info:
            build(ReaderSettings, {"backend": "wiegand", **table}, "hardware.reader")
        return str(info.value)

    bad_field = {"name": "x", "bits": 26, "number_start": 20, "number_length": 10}
    assert error({"custom_formats": [bad_field]}).startswith(
        "hardware.reader.custom_formats[0].number_start: bits 20..29 do not fit in 26 bits"
    )
    parity = {"position": 3, "start": 0, "length": 5, "kind": "even"}
    assert "cannot cover itself" in error(
        {"custom_formats": [{**bad_field, "number_start": 1, "parity": [parity]}]}
    )
    assert error({"formats": ["h10301", "nope"]}).startswith(
        "hardware.reader.formats: unknown format 'nope'"
    )
    assert error({"d1_pin": 5}).startswith("hardware.reader.d1_pin: GPIO5 is already used")
    clash = {"name": "other26", "bits": 26, "number_start": 1, "number_length": 24}
    assert "both have 26 bits" in error(
        {"custom_formats": [clash], "formats": ["h10301", "other26"]}
    )


def test_keypad_frames() -> None:
    assert key_of_frame(0b0111, 4) == "7"
    assert key_of_frame(0b1011, 4) == "#"
    assert key_of_frame(0b1111_0000, 8) == "0"  # complement nibble, then the key
    assert key_of_frame(0b0101_1010, 8) == "*"
    assert key_of_frame(0b0000_0111, 8) is None  # the complement does not match
    assert key_of_frame(0b1111, 4) is None


# -- pulse trains ----------------------------------------------------------------------------
def test_card_read_from_pulse_trains(
    factory: TimedFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with open_wiegand(factory) as reader:
        assert "sniffed and replayed" in caplog.text  # said at every start
        wire = Wire(factory)
        for name, facility, number in (
            ("h10301", 12, 3456),
            ("h10306", 4321, 9),
            ("h10302", None, 7),
        ):
            fmt = BUILTIN_FORMATS[name]
            wire.send(fmt.encode(facility, number), fmt.bits)
            presented = reader.read(1.0)
            assert presented is not None and presented.card.error is None, presented
            assert presented.card.decoded is not None
            assert (presented.card.decoded.format, presented.card.decoded.number) == (name, number)
            assert presented.card.decoded.facility == facility
        assert reader.status()[0]["secure_channel"] is False
        assert reader.read(0.1) is None


def test_glitches_are_ignored(factory: TimedFactory) -> None:
    fmt = BUILTIN_FORMATS["h10301"]
    with open_wiegand(factory) as reader:
        wire = Wire(factory, seed=3)
        for i, bit in enumerate(format(fmt.encode(99, 31337), "026b")):
            wire.pulse(int(bit))
            factory.now += 0.0005
            if i % 5 == 0:
                wire.pulse(1 - int(bit), width=3e-6)  # a 3 µs spike on the other line
            wire.gap()
        wire.silence()
        presented = reader.read(1.0)
        assert presented is not None and presented.card.error is None
        assert presented.card.decoded is not None and presented.card.decoded.number == 31337
        assert reader.status()[0]["glitches"] == 6


def test_a_lost_bit_or_a_flipped_bit_is_refused(factory: TimedFactory) -> None:
    fmt = BUILTIN_FORMATS["h10301"]
    bits = format(fmt.encode(99, 31337), "026b")
    with open_wiegand(factory) as reader:
        wire = Wire(factory)
        for i, bit in enumerate(bits):  # bit 11 never arrives
            if i != 11:
                wire.pulse(int(bit))
            wire.gap()
        wire.silence()
        lost = reader.read(1.0)
        assert lost is not None and lost.card.bit_length == 25
        assert lost.card.error is not None and "no configured format has 25 bits" in lost.card.error
        flipped = bits[:7] + ("1" if bits[7] == "0" else "0") + bits[8:]  # crosstalk
        wire.send(int(flipped, 2), 26)
        bad = reader.read(1.0)
        assert bad is not None and bad.card.error is not None and "parity" in bad.card.error
        assert reader.status()[0]["refused"] == 2


def test_a_lost_bit_and_a_noise_pulse_counted_as_a_bit_fail_parity(factory: TimedFactory) -> None:
    """26 bits arrive, but bit 11 was lost and a 60 µs noise pulse on DATA0 at the end was
    counted: the shifted bits fail the odd parity. (Two parity bits catch such a shift three
    times in four, not always: docs/readers.md says so.)"""
    fmt = BUILTIN_FORMATS["h10301"]
    bits = format(fmt.encode(99, 31337), "026b")
    with open_wiegand(factory) as reader:
        wire = Wire(factory)
        for i, bit in enumerate(bits):
            if i != 11:
                wire.pulse(int(bit))
            wire.gap()
        wire.pulse(0, width=60e-6)  # interference long enough to pass for a bit
        wire.silence()
        shifted = reader.read(1.0)
        assert shifted is not None and shifted.card.bit_length == 26
        assert shifted.card.error is not None and "odd parity at bit 25" in shifted.card.error


def test_both_lines_low_or_a_long_pulse_spoils_the_frame(factory: TimedFactory) -> None:
    fmt = BUILTIN_FORMATS["h10301"]
    with open_wiegand(factory) as reader:
        wire = Wire(factory)
        value = fmt.encode(1, 2)
        bits = format(value, "026b")
        for i, bit in enumerate(bits):
            wire.pulse(int(bit), width=5e-3 if i == 3 else None)
            wire.gap()
        wire.silence()
        spoiled = reader.read(1.0)
        assert spoiled is not None and spoiled.card.error is not None
        assert "ms pulse" in spoiled.card.error


def test_card_and_pin_from_a_wiegand_keypad(factory: TimedFactory) -> None:
    fmt = BUILTIN_FORMATS["h10301"]
    with open_wiegand(factory, require_pin=True, pin_timeout_s=1) as reader:
        wire = Wire(factory)
        wire.send(fmt.encode(5, 55), 26)
        assert reader.read(0.2) is None  # waits for the PIN
        for key in "2580":
            index = "0123456789*#".index(key)
            wire.send((index ^ 0xF) << 4 | index, 8)  # 8-bit keypad mode
            factory.now += 0.3  # a person's pace
            assert reader.read(0.05) is None
        wire.send(0b1011, 4)  # '#' from a 4-bit keypad
        presented = reader.read(1.0)
        assert presented is not None and presented.pin == "2580"
        assert presented.card.decoded is not None and presented.card.decoded.number == 55


def test_stuck_line_raises_an_alarm(factory: TimedFactory) -> None:
    alarms: list[ReaderAlarm] = []
    settings = ReaderSettings(backend="wiegand", d0_pin=D0, d1_pin=D1)
    with open_door_reader(settings, on_alarm=alarms.append, pin_factory=factory) as reader:
        factory.pin(D1).drive_low()  # shorted to ground
        factory.now += 0.2
        for _ in range(100):
            if alarms:
                break
            reader.read(0.01)
        assert [(a.kind.value, a.active) for a in alarms] == [("reader_offline", True)]
        factory.pin(D1).drive_high()
        for _ in range(100):
            if len(alarms) == 2:
                break
            reader.read(0.01)
        assert (alarms[-1].kind.value, alarms[-1].active) == ("reader_offline", False)


def test_led_and_beeper_feedback(factory: TimedFactory) -> None:
    with open_wiegand(factory, led_pin=13, beeper_pin=19) as reader:
        led, beeper = factory.pin(13), factory.pin(19)
        assert led.state and beeper.state  # active low: idle high
        reader.feedback("door", Feedback.DENY)
        for _ in range(200):
            if len([s for s in beeper.states if not s.state]) >= 3:
                break
            reader.read(0.005)
        assert len([s for s in beeper.states if not s.state]) == 3  # three beeps
        reader.feedback("door", Feedback.GRANT)
        for _ in range(200):
            if not led.state:
                break
            reader.read(0.005)
        assert not led.state  # lit (pulled low)
        with pytest.raises(ValueError, match="no reader named"):
            reader.feedback("elsewhere", Feedback.GRANT)


def test_decoder_does_not_end_a_frame_mid_pulse() -> None:
    decoder = WiegandDecoder(frame_gap_s=0.025)
    decoder.edge(0, True, 0.0)
    assert decoder.frames(0.05) == []  # still low: a pulse under way (or a stuck line)
    assert decoder.stuck(0.05) is None and decoder.stuck(0.2) == 0
    decoder.edge(0, False, 80e-6)
    assert decoder.frames(0.02) == []  # not yet silent for a whole gap
    assert decoder.frames(0.03) == [(0, 1, None)]


def test_wiegand_format_rejects_bad_layouts() -> None:
    with pytest.raises(ValueError, match="bits: 200"):
        WiegandFormat("big", 200, number_start=1, number_length=10)
    with pytest.raises(ValueError, match="kind"):
        Parity(0, 1, 4, "mark")
