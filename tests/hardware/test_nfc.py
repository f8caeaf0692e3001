"""hardware.nfc: settings, the reader contract on the simulator, wedge parsing, backend choice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import ndef
import pytest
from evdev import InputEvent, ecodes
from hypothesis import given
from hypothesis import strategies as st

from hardware.errors import BackendUnavailable, DeviceError, UnknownBackend
from hardware.nfc import (
    BadgeRead,
    Card,
    CardGone,
    NfcSettings,
    NotIsoDep,
    ReaderClosed,
    open_reader,
    reader_class,
)
from hardware.nfc.base import check_device_path, parse_udp_path
from hardware.nfc.sim import SimReader
from hardware.nfc.wedge import WedgeDecoder, parse_events

# ---------------------------------------------------------------- settings


def test_default_settings_are_valid():
    settings = NfcSettings()
    assert settings.backend == "nfcpy"
    assert settings.device == "usb"


@pytest.mark.parametrize(
    "path",
    [
        "usb",
        "usb:072f",
        "usb:072f:2200",
        "usb:054C:06C3",
        "usb:001",
        "usb:001:004",
        "tty:USB0:pn532",
        "tty:AMA0",
        "tty:S0:arygon",
        "com:3:pn532",
        "udp",
        "udp:127.0.0.1",
        "udp:127.0.0.1:54321",
        "udp::5000",
        "udp:localhost:1",
    ],
)
def test_device_path_grammar_accepts(path):
    check_device_path(path)
    assert NfcSettings(device=path).device == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "usb:",
        "usb:72f:2200",
        "usb:072f:22000",
        "tty",
        "tty:USB0:nosuch",
        "udp:h:70000",
        "udp:h:x",
        "bluetooth",
        "/dev/ttyUSB0",
        "usb:072f:2200:1",
    ],
)
def test_device_path_grammar_rejects(path):
    with pytest.raises(ValueError, match=r"nfc\.device"):
        NfcSettings(device=path)


def test_parse_udp_path_defaults():
    assert parse_udp_path("udp") == ("localhost", 54321)
    assert parse_udp_path("udp:127.0.0.1") == ("127.0.0.1", 54321)
    assert parse_udp_path("udp::6000") == ("localhost", 6000)
    with pytest.raises(ValueError):
        parse_udp_path("udp:h:0")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("targets", ()),
        ("targets", ("106A", "106A")),
        ("targets", ("999Z",)),
        ("targets", "106A"),
        ("poll_interval", -1),
        ("poll_interval", float("nan")),
        ("apdu_timeout", 0),
        ("debounce", -0.1),
        ("debounce", "1"),
        ("read_ndef", 1),
        ("wedge_format", "octal"),
        ("wedge_byte_order", "little"),
        ("wedge_uid_length", 17),
        ("wedge_uid_length", True),
        ("wedge_key_gap", 0),
        ("wedge_device", ""),
        ("wedge_grab", "yes"),
    ],
)
def test_settings_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"nfc\.{field}"):
        NfcSettings(backend="sim", **{field: value})


def test_settings_are_frozen_and_targets_a_tuple():
    settings = NfcSettings(targets=["212F"])
    assert settings.targets == ("212F",)
    with pytest.raises(AttributeError):
        settings.debounce = 3  # type: ignore[misc]


def test_wedge_backend_needs_a_device():
    with pytest.raises(ValueError, match=r"nfc\.wedge_device"):
        NfcSettings(backend="wedge")
    assert NfcSettings(backend="wedge", wedge_name="Sycreader RFID").wedge_name


def test_unknown_backend():
    with pytest.raises(UnknownBackend, match=r"nfc\.backend"):
        NfcSettings(backend="pcsc")
    with pytest.raises(UnknownBackend):
        reader_class("pcsc")
    assert issubclass(UnknownBackend, ValueError)


@pytest.mark.processes
def test_import_has_no_driver_side_effects():
    code = (
        "import sys, hardware.nfc, hardware.nfc.nfcpy, hardware.nfc.wedge, hardware.nfc.sim, "
        "hardware.nfc.emulator\n"
        "bad = [m for m in ('nfc', 'evdev', 'ndef', 'usb1', 'serial') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- backend availability


@pytest.mark.parametrize("path", ["usb:ffff:fffe", "tty:USB99:pn532"])
def test_nfcpy_without_reader_is_unavailable_with_a_hint(path):
    # No such reader here (and, on this machine, no libusb either): both must
    # surface as BackendUnavailable with advice, never as a simulator.
    with pytest.raises(BackendUnavailable, match=r"libusb|no reader found"):
        open_reader(NfcSettings(device=path))


def test_wedge_without_device_is_unavailable(tmp_path):
    missing = tmp_path / "event99"
    with pytest.raises(BackendUnavailable, match="no input device"):
        open_reader(NfcSettings(backend="wedge", wedge_device=str(missing)))


# ---------------------------------------------------------------- BadgeRead and Card


def test_badge_read_validates_and_formats():
    badge = BadgeRead(uid=bytearray(b"\x0a\xbc"), technology="ISO14443A")
    assert badge.uid == b"\x0a\xbc" and isinstance(badge.uid, bytes)
    assert badge.uid_hex == "0ABC"
    with pytest.raises(ValueError):
        BadgeRead(uid=b"", technology="ISO14443A")
    with pytest.raises(ValueError):
        BadgeRead(uid=b"\x01", technology="bluetooth")


def test_card_checks_apdu_and_capability():
    card = Card(BadgeRead(uid=b"\x01\x02\x03\x04", technology="ISO14443A"))
    with pytest.raises(NotIsoDep):
        card.exchange_apdu(b"\x00\xa4\x04\x00")
    iso = Card(
        BadgeRead(uid=b"\x01\x02\x03\x04", technology="ISO14443A", iso_dep=True),
        transceive=lambda apdu, timeout: b"\x90\x00",
    )
    with pytest.raises(ValueError):
        iso.exchange_apdu(b"\x00\xa4")
    assert iso.exchange_apdu(b"\x00\xa4\x04\x00") == b"\x90\x00"
    iso.release()
    assert not iso.active
    with pytest.raises(CardGone):
        iso.exchange_apdu(b"\x00\xa4\x04\x00")
    assert issubclass(CardGone, DeviceError)


# ---------------------------------------------------------------- simulator


@pytest.fixture
def sim():
    reader = open_reader(NfcSettings(backend="sim", debounce=0))
    assert isinstance(reader, SimReader)
    yield reader
    reader.close()


def test_sim_present_from_another_thread(sim):
    records = [ndef.UriRecord("https://portier.example/b/7")]

    def tap():
        sim.present("0A0B0C0D", ndef=records, product="sim card")

    thread = threading.Thread(target=tap)
    thread.start()
    badge = sim.read(timeout=5)
    thread.join(5)
    assert badge is not None
    assert badge.uid == bytes.fromhex("0A0B0C0D")
    assert badge.technology == "ISO14443A"
    assert badge.ndef == tuple(records)
    assert badge.reader == "sim"
    assert badge.product == "sim card"
    assert not badge.iso_dep


def test_sim_read_times_out_without_card(sim):
    assert sim.read(timeout=0.05) is None
    assert sim.read(timeout=0) is None


def test_sim_apdu_exchange_only_during_the_handler(sim):
    seen = []

    def responder(apdu: bytes) -> bytes:
        seen.append(apdu)
        return apdu[::-1] + b"\x90\x00"

    tap = sim.present(b"\x11\x22\x33\x44\x55\x66\x77", apdu_responder=responder)
    kept: list[Card] = []
    responses = []

    def on_card(card: Card) -> None:
        assert card.active
        responses.append(card.exchange_apdu(b"\x00\xa4\x04\x00\x01\xaa"))
        kept.append(card)

    badge = sim.read(timeout=5, on_card=on_card)
    assert tap.wait(5) and tap.reported is True
    assert badge.iso_dep and badge.tag_type == "Type4Tag"
    assert seen == [b"\x00\xa4\x04\x00\x01\xaa"]
    assert responses == [b"\xaa\x01\x00\x04\xa4\x00\x90\x00"]
    assert not kept[0].active
    with pytest.raises(CardGone):
        kept[0].exchange_apdu(b"\x00\xa4\x04\x00")
    assert len(seen) == 1


def test_sim_non_iso_dep_card_refuses_apdus(sim):
    sim.present("01020304", technology="FeliCa")
    errors = []

    def on_card(card):
        try:
            card.exchange_apdu(b"\x00\xa4\x04\x00")
        except NotIsoDep as error:
            errors.append(error)

    assert sim.read(timeout=5, on_card=on_card).technology == "FeliCa"
    assert len(errors) == 1


def test_sim_handler_error_propagates_and_card_is_released(sim):
    sim.present("01020304", apdu_responder=lambda apdu: b"\x90\x00")
    kept = []

    def on_card(card):
        kept.append(card)
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError, match="handler bug"):
        sim.read(timeout=5, on_card=on_card)
    assert not kept[0].active


def test_sim_debounce_skips_the_same_uid():
    with open_reader(NfcSettings(backend="sim", debounce=60)) as reader:
        first = reader.present("01020304")
        again = reader.present("01020304")
        other = reader.present("05060708")
        calls = []
        assert reader.read(timeout=5, on_card=calls.append).uid_hex == "01020304"
        # The repeat is skipped inside the same read, which goes on to the next card.
        assert reader.read(timeout=5, on_card=calls.append).uid_hex == "05060708"
        assert (first.reported, again.reported, other.reported) == (True, False, True)
        assert [card.badge.uid_hex for card in calls] == ["01020304", "05060708"]
        reader.present("05060708")
        assert reader.read(timeout=0.05) is None


def test_sim_without_debounce_reports_every_tap(sim):
    for _ in range(3):
        sim.present("01020304")
    assert [sim.read(timeout=5).uid_hex for _ in range(3)] == ["01020304"] * 3


def test_sim_present_rejects_bad_input(sim):
    with pytest.raises(ValueError):
        sim.present("xyz")
    with pytest.raises(ValueError):
        sim.present("0102", technology="wedge")


def test_reader_lifecycle_is_idempotent():
    reader = reader_class("sim")(NfcSettings(backend="sim"))
    assert reader.closed
    with pytest.raises(ReaderClosed):
        reader.read(timeout=0)
    reader.open()
    reader.open()
    assert not reader.closed
    reader.close()
    reader.close()
    assert reader.closed
    with reader as same:
        assert same is reader and not reader.closed
    assert reader.closed


def test_close_from_another_thread_unblocks_read():
    reader = open_reader(NfcSettings(backend="sim"))
    result = []
    thread = threading.Thread(target=lambda: result.append(reader.read(timeout=30)))
    thread.start()
    reader.close()
    thread.join(10)
    assert not thread.is_alive()
    assert result == [None]


def test_close_drops_queued_taps():
    reader = open_reader(NfcSettings(backend="sim"))
    tap = reader.present("01020304")
    reader.close()
    assert tap.wait(1) and tap.reported is False


def test_taps_presented_before_open_are_kept():
    reader = reader_class("sim")(NfcSettings(backend="sim"))
    reader.present("0A0B0C0D")
    with reader:
        assert reader.read(timeout=5).uid_hex == "0A0B0C0D"


def test_run_until_stop(sim):
    stop = threading.Event()
    seen = []

    def on_badge(card):
        seen.append(card.badge.uid_hex)
        if len(seen) == 3:
            stop.set()

    taps = [sim.present(uid) for uid in ("01", "02", "03")]
    thread = threading.Thread(target=sim.run, args=(on_badge, stop), kwargs={"poll": 0.05})
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert seen == ["01", "02", "03"]
    assert all(tap.reported for tap in taps)


# ---------------------------------------------------------------- wedge parsing

_KEY_OF = {**{c: f"KEY_{c}" for c in "0123456789ABCDEF"}, "\n": "KEY_ENTER"}


def typed(
    text: str, start: float = 100.0, step: float = 0.004, keypad: bool = False, shift: bool = False
) -> list[InputEvent]:
    """The events a wedge reader sends while typing *text* (press, release, SYN)."""
    events = []
    t = start

    def emit(code, value):
        nonlocal t
        sec, usec = int(t), round((t % 1) * 1e6)
        events.append(InputEvent(sec, usec, ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000))
        events.append(InputEvent(sec, usec, ecodes.EV_KEY, code, value))
        events.append(InputEvent(sec, usec, ecodes.EV_SYN, ecodes.SYN_REPORT, 0))
        t += step

    for char in text:
        name = _KEY_OF.get(char.upper(), f"KEY_{char.upper()}") if char != " " else "KEY_SPACE"
        if keypad and char.isdigit():
            name = f"KEY_KP{char}"
        code = ecodes.ecodes[name]
        if shift and char.isalpha():
            emit(ecodes.KEY_LEFTSHIFT, 1)
        emit(code, 1)
        emit(code, 0)
        if shift and char.isalpha():
            emit(ecodes.KEY_LEFTSHIFT, 0)
    return events


def test_wedge_hex():
    assert list(parse_events(typed("04A1B2C3D4E5F6\n"))) == [bytes.fromhex("04A1B2C3D4E5F6")]


def test_wedge_hex_shifted_letters_and_keypad_digits():
    events = typed("0a1b2c3d\n", shift=True, keypad=True)
    assert list(parse_events(events)) == [bytes.fromhex("0A1B2C3D")]


def test_wedge_hex_reversed():
    events = typed("D4C3B2A1\n")
    assert list(parse_events(events, byte_order="reversed")) == [bytes.fromhex("A1B2C3D4")]


def test_wedge_decimal_four_bytes():
    # 0x12345678 == 305419896, typed zero-padded to 10 digits by most readers.
    assert list(parse_events(typed("0305419896\n"), fmt="decimal")) == [b"\x12\x34\x56\x78"]


def test_wedge_decimal_reversed():
    # A reader that prints the UID 12 34 56 78 LSB first types 0x78563412.
    line = f"{0x78563412:010d}\n"
    uids = list(parse_events(typed(line), fmt="decimal", byte_order="reversed"))
    assert uids == [b"\x12\x34\x56\x78"]


def test_wedge_decimal_length_inferred_and_fixed():
    seven = int.from_bytes(bytes.fromhex("04A1B2C3D4E5F6"), "big")
    assert list(parse_events(typed(f"{seven}\n"), fmt="decimal")) == [
        bytes.fromhex("04A1B2C3D4E5F6")
    ]
    assert list(parse_events(typed("42\n"), fmt="decimal", uid_length=7)) == [
        (42).to_bytes(7, "big")
    ]
    # Too large for the configured length: rejected, not truncated.
    assert list(parse_events(typed(f"{2**32}\n"), fmt="decimal", uid_length=4)) == []


def test_wedge_letters_are_junk_in_decimal():
    assert list(parse_events(typed("12AB\n0000000042\n"), fmt="decimal")) == [b"\x00\x00\x00\x2a"]


def test_wedge_junk_keys_reject_the_whole_line():
    events = typed("0A0B X0C0D\n") + typed("01020304\n", start=101.0)
    assert list(parse_events(events)) == [bytes.fromhex("01020304")]


def test_wedge_odd_hex_and_empty_lines():
    assert list(parse_events(typed("ABC\n\n\n0102\n"))) == [b"\x01\x02"]


def test_wedge_no_enter_yields_nothing():
    assert list(parse_events(typed("0A0B0C0D"))) == []


def test_wedge_gap_drops_a_partial_line():
    # An Enter lost after "0A0B" must not glue it onto the next badge.
    events = typed("0A0B", start=100.0) + typed("01020304\n", start=102.0)
    assert list(parse_events(events)) == [bytes.fromhex("01020304")]
    # Without the gap rule the two would be joined.
    joined = list(parse_events(events, key_gap=10))
    assert joined == [bytes.fromhex("0A0B01020304")]


def test_wedge_ignores_repeats_and_releases():
    events = typed("0102\n")
    repeat = InputEvent(100, 1000, ecodes.EV_KEY, ecodes.KEY_1, 2)
    assert list(parse_events([repeat, *events])) == [b"\x01\x02"]


def test_wedge_overlong_line_rejected():
    assert list(parse_events(typed("01" * 20 + "\n"))) == []


def test_wedge_decoder_is_incremental():
    decoder = WedgeDecoder()
    out = [decoder.feed(event) for event in typed("0102\n")]
    assert [uid for uid in out if uid is not None] == [b"\x01\x02"]


def test_wedge_decoder_rejects_bad_options():
    with pytest.raises(ValueError):
        WedgeDecoder(fmt="octal")
    with pytest.raises(ValueError):
        WedgeDecoder(byte_order="little")


@given(uid=st.binary(min_size=4, max_size=10), reverse=st.booleans())
def test_wedge_hex_round_trip(uid, reverse):
    shown = uid[::-1] if reverse else uid
    order = "reversed" if reverse else "as-typed"
    assert list(parse_events(typed(shown.hex() + "\n"), byte_order=order)) == [uid]


@given(uid=st.binary(min_size=1, max_size=10), reverse=st.booleans())
def test_wedge_decimal_round_trip(uid, reverse):
    shown = uid[::-1] if reverse else uid
    order = "reversed" if reverse else "as-typed"
    line = f"{int.from_bytes(shown, 'big')}\n"
    got = list(parse_events(typed(line), fmt="decimal", byte_order=order, uid_length=len(uid)))
    assert got == [uid]


@pytest.mark.skipif(not os.access("/dev/uinput", os.W_OK), reason="no /dev/uinput on this machine")
def test_wedge_reader_through_uinput():
    from evdev import UInput

    keys = [ecodes.ecodes[f"KEY_{c}"] for c in "0123456789ABCDEF"] + [ecodes.KEY_ENTER]
    with UInput({ecodes.EV_KEY: keys}, name="portier-test-wedge") as keyboard:
        settings = NfcSettings(backend="wedge", wedge_device=keyboard.device.path, debounce=0)
        with open_reader(settings) as reader:
            for char in "0A0B0C0D\n":
                code = ecodes.KEY_ENTER if char == "\n" else ecodes.ecodes[f"KEY_{char}"]
                keyboard.write(ecodes.EV_KEY, code, 1)
                keyboard.write(ecodes.EV_KEY, code, 0)
                keyboard.syn()
            badge = reader.read(timeout=5)
    assert badge is not None and badge.uid_hex == "0A0B0C0D" and badge.technology == "wedge"


class PipeKeyboard:
    """Stands in for the evdev InputDevice of a wedge reader (no /dev/input here).

    Real ``evdev.InputEvent`` objects go through a real pipe, so the reader's
    select/read loop runs as it would on the device's file descriptor.
    """

    name = "pipe keyboard"
    path = "pipe"

    def __init__(self):
        self._read_fd, self._write_fd = os.pipe()
        self._events: list[InputEvent] = []
        self._lock = threading.Lock()
        self.grabbed = False
        self.closed = False

    @property
    def fd(self):
        return self._read_fd

    def type(self, text: str, **options) -> None:
        with self._lock:
            self._events.extend(typed(text, **options))
        os.write(self._write_fd, b"x")

    def read(self):
        os.read(self._read_fd, 4096)
        with self._lock:
            events, self._events = self._events, []
        if not events:
            raise BlockingIOError
        return iter(events)

    def grab(self):
        self.grabbed = True

    def ungrab(self):
        self.grabbed = False

    def close(self):
        self.closed = True
        os.close(self._read_fd)
        os.close(self._write_fd)


def test_wedge_reader_reads_typed_badges():
    keyboard = PipeKeyboard()
    settings = NfcSettings(backend="wedge", wedge_name="pipe", wedge_byte_order="reversed")
    reader = reader_class("wedge")(settings, device=keyboard)
    with reader:
        assert keyboard.grabbed
        assert reader.read(timeout=0.05) is None
        keyboard.type("D4C3B2A1\n")
        badge = reader.read(timeout=5)
        assert badge.uid_hex == "A1B2C3D4"
        assert badge.technology == "wedge" and badge.reader == "wedge"
        assert not badge.iso_dep and badge.tag_type is None
        # Two badges in one burst of events: neither is lost.
        keyboard.type("01020304\n05060708\n", start=200.0)
        assert reader.read(timeout=5).uid_hex == "04030201"
        assert reader.read(timeout=5).uid_hex == "08070605"
        # The same badge again within the debounce window is not reported.
        keyboard.type("05060708\n", start=200.5)
        assert reader.read(timeout=0.2) is None
    assert keyboard.closed and not keyboard.grabbed


def test_wedge_reader_card_refuses_apdus():
    keyboard = PipeKeyboard()
    reader = reader_class("wedge")(NfcSettings(backend="wedge", wedge_name="pipe"), device=keyboard)
    refused = []

    def on_card(card):
        with pytest.raises(NotIsoDep):
            card.exchange_apdu(b"\x00\xa4\x04\x00")
        refused.append(card.badge.uid_hex)

    with reader:
        keyboard.type("0A0B0C0D\n")
        reader.read(timeout=5, on_card=on_card)
    assert refused == ["0A0B0C0D"]


def test_wedge_reader_close_from_another_thread():
    keyboard = PipeKeyboard()
    reader = reader_class("wedge")(NfcSettings(backend="wedge", wedge_name="pipe"), device=keyboard)
    reader.open()
    result = []
    thread = threading.Thread(target=lambda: result.append(reader.read(timeout=30)))
    thread.start()
    reader.close()
    thread.join(10)
    assert not thread.is_alive()
    assert result == [None]
