"""The nfcpy backend end to end: the real nfcpy stack, reader and emulated card, over loopback UDP.

The reader is ``open_reader(NfcSettings(device="udp:127.0.0.1:PORT"))``; the card is a
:class:`hardware.nfc.emulator.UdpCardEmulator` thread running nfcpy's ``listen`` on the same
port (Type 3 through nfcpy's own emulation, Type 4 through our ISO-DEP card side).
UIDs avoid the 04 prefix so nfcpy does not probe NXP products.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import socket
import subprocess
import sys
import threading

import ndef
import psutil
import pytest

from hardware.nfc import Card, CardGone, NfcSettings, NotIsoDep, open_reader
from hardware.nfc.emulator import SW_OK, Type2Card, Type3Card, Type4Card, UdpCardEmulator

pytestmark = pytest.mark.timeout(60)

PORTIER_AID = b"\xf0PORTIER"


@pytest.fixture(autouse=True)
def no_leftover_threads():
    before = set(threading.enumerate())
    yield
    leftover = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not leftover, leftover


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def rig(card, targets, **settings):
    """An emulated card on a fresh loopback port and an open nfcpy reader polling it."""
    port = free_udp_port()
    emulator = UdpCardEmulator(card, port).start()
    try:
        reader = open_reader(
            NfcSettings(device=f"udp:127.0.0.1:{port}", targets=targets, **settings)
        )
        try:
            yield reader, emulator
        finally:
            reader.close()
    finally:
        emulator.stop()
    assert emulator.error is None


class ToyApplet:
    """A card application: SELECT by AID, then 80 10 00 00 Lc DATA returns SHA-256(DATA)[:8]."""

    def __init__(self):
        self.selected = False
        self.apdus: list[bytes] = []

    def __call__(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        if apdu[:4] == b"\x00\xa4\x04\x00":
            self.selected = apdu[5 : 5 + apdu[4]] == PORTIER_AID
            return SW_OK if self.selected else b"\x6a\x82"
        if apdu[:2] == b"\x80\x10":
            if not self.selected:
                return b"\x69\x85"
            return hashlib.sha256(apdu[5 : 5 + apdu[4]]).digest()[:8] + SW_OK
        if apdu[:2] == b"\x80\xee":  # echo, reversed: long data both ways
            return apdu[::-1] + SW_OK
        return b"\x6d\x00"


def select(aid: bytes) -> bytes:
    return b"\x00\xa4\x04\x00" + bytes([len(aid)]) + aid + b"\x00"


def test_type3_read_uid_and_ndef():
    records = [ndef.UriRecord("https://portier.example/badge/42"), ndef.TextRecord("Gate A")]
    card = Type3Card("0123456789ABCDEF", ndef=records)
    with rig(card, ("212F",), debounce=0) as (reader, emulator):
        badges = [reader.read(timeout=10) for _ in range(3)]
        assert emulator.activations >= 3  # more only if a frame was lost
    for badge in badges:
        assert badge is not None
        assert badge.uid == bytes.fromhex("0123456789ABCDEF")
        assert badge.uid_hex == "0123456789ABCDEF"
        assert badge.technology == "FeliCa"
        assert badge.tag_type == "Type3Tag"
        assert badge.ndef == tuple(records)
        assert not badge.iso_dep
        assert badge.reader == "nfcpy"


def test_type3_card_refuses_apdus_and_ndef_can_be_skipped():
    card = Type3Card("0A0B0C0D0E0F1011", ndef=[ndef.TextRecord("x")])
    errors = []

    def on_card(card: Card) -> None:
        with pytest.raises(NotIsoDep):
            card.exchange_apdu(select(PORTIER_AID))
        errors.append("checked")

    with rig(card, ("212F",), read_ndef=False) as (reader, _):
        badge = reader.read(timeout=10, on_card=on_card)
    assert badge.ndef == ()
    assert errors == ["checked"]


def test_type4_iso_dep_apdus_end_to_end():
    applet = ToyApplet()
    url = ndef.UriRecord("https://portier.example/sun?picc=EF963FF7828658A599F3041510671E88")
    card = Type4Card("11223344556677", responder=applet, ndef=[url])
    answers = {}
    kept: list[Card] = []

    def on_card(card: Card) -> None:
        kept.append(card)
        answers["before select"] = card.exchange_apdu(b"\x80\x10\x00\x00\x03abc")
        answers["select"] = card.exchange_apdu(select(PORTIER_AID))
        answers["challenge"] = card.exchange_apdu(b"\x80\x10\x00\x00\x03abc\x08")
        answers["unknown"] = card.exchange_apdu(b"\x80\x99\x00\x00")

    with rig(card, ("106A",)) as (reader, emulator):
        badge = reader.read(timeout=10, on_card=on_card)
        assert emulator.activations >= 1
    assert badge.uid == bytes.fromhex("11223344556677")
    assert badge.technology == "ISO14443A"
    assert badge.tag_type == "Type4Tag"
    assert badge.iso_dep
    # The NDEF message was read over ISO-DEP by nfcpy's Type 4 NDEF mapping.
    assert badge.ndef == (url,)
    assert answers["before select"] == b"\x69\x85"
    assert answers["select"] == SW_OK
    assert answers["challenge"] == hashlib.sha256(b"abc").digest()[:8] + SW_OK
    assert answers["unknown"] == b"\x6d\x00"
    # The applet saw exactly these APDUs (NDEF reads were answered by the NDEF application).
    assert applet.apdus[-3:] == [
        select(PORTIER_AID),
        b"\x80\x10\x00\x00\x03abc\x08",
        b"\x80\x99\x00\x00",
    ]
    # After the handler the card is released: no more APDUs through it.
    with pytest.raises(CardGone):
        kept[0].exchange_apdu(select(PORTIER_AID))


def test_type4_long_apdus_are_chained_both_ways():
    applet = ToyApplet()
    card = Type4Card("A1B2C3D4", responder=applet)  # 4-byte UID, no NDEF application
    command = b"\x80\xee\x00\x00\xff" + bytes(range(255))  # 260 bytes: more than one frame
    responses = []

    with rig(card, ("106A",)) as (reader, _):
        badge = reader.read(
            timeout=10, on_card=lambda c: responses.append(c.exchange_apdu(command))
        )
    assert badge.uid_hex == "A1B2C3D4"
    assert badge.ndef == ()
    assert applet.apdus[-1] == command
    assert responses == [command[::-1] + SW_OK]  # 262 bytes back: also chained


def test_card_gone_when_the_card_leaves_mid_handler():
    applet = ToyApplet()
    card = Type4Card("C0C1C2C3C4C5C6", responder=applet, fwi=8)
    outcome = []

    with rig(card, ("106A",), read_ndef=False) as (reader, emulator):

        def on_card(card: Card) -> None:
            assert card.exchange_apdu(select(PORTIER_AID)) == SW_OK
            emulator.stop()  # the badge is pulled away
            try:
                card.exchange_apdu(b"\x80\x10\x00\x00\x01z")
            except CardGone as error:
                outcome.append(error)

        reader.read(timeout=10, on_card=on_card)
    assert len(outcome) == 1


def test_no_card_in_the_field():
    port = free_udp_port()  # nobody listens there
    with open_reader(NfcSettings(device=f"udp:127.0.0.1:{port}", targets=("212F",))) as reader:
        assert reader.read(timeout=0) is None


def test_udp_sockets_stay_on_loopback():
    card = Type4Card("D0D1D2D3", responder=ToyApplet())
    addresses = {}

    def on_card(card: Card) -> None:
        addresses["reader"] = reader.frontend.device.socket.getsockname()
        addresses["all"] = [
            c.laddr for c in psutil.Process().net_connections(kind="udp4") if c.laddr
        ]

    with rig(card, ("106A",)) as (reader, emulator):
        reader.read(timeout=10, on_card=on_card)
        port = emulator.port
    assert addresses["reader"][0] == "127.0.0.1"
    listeners = [addr for addr in addresses["all"] if addr.port == port]
    assert listeners and all(addr.ip == "127.0.0.1" for addr in listeners)


def test_close_from_another_thread_stops_a_pending_read():
    port = free_udp_port()
    reader = open_reader(NfcSettings(device=f"udp:127.0.0.1:{port}", targets=("212F",)))
    result = []
    thread = threading.Thread(target=lambda: result.append(reader.read(timeout=30)))
    thread.start()
    reader.close()
    thread.join(10)
    assert not thread.is_alive()
    assert result == [None]


@pytest.mark.processes
def test_cli_reader_and_emulator_in_two_processes():
    port = free_udp_port()
    # The emulator stops on Ctrl-C, as a person at a terminal sends it. A test run started
    # as a background job (nohup ... &) ignores SIGINT, and a child inherits an ignored
    # signal (never a handler): handle it here while the child starts.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hardware.nfc",
            "emulate",
            "--port",
            str(port),
            "--type",
            "3",
            "--uid",
            "0102030405060708",
            "--uri",
            "https://portier.example/b/9",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    signal.signal(signal.SIGINT, previous)
    try:
        assert "card on udp:127.0.0.1" in emulator.stderr.readline()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "hardware.nfc",
                "read",
                "--device",
                f"udp:127.0.0.1:{port}",
                "--targets",
                "212F",
                "--count",
                "1",
            ],
            capture_output=True,
            check=False,
            text=True,
            timeout=30,
        )
    finally:
        emulator.send_signal(signal.SIGINT)
        try:
            emulator.wait(10)
        except subprocess.TimeoutExpired:
            emulator.kill()
            emulator.wait(10)
        emulator.stderr.close()
    assert result.returncode == 0, result.stderr
    badge = json.loads(result.stdout)
    assert badge["uid"] == "0102030405060708"
    assert badge["technology"] == "FeliCa"
    assert badge["ndef"][0]["type"] == "urn:nfc:wkt:U"
    assert "https://portier.example/b/9" in badge["ndef"][0]["text"]
    assert emulator.returncode == 0


@pytest.mark.processes
def test_cli_reports_a_missing_reader():
    result = subprocess.run(
        [sys.executable, "-m", "hardware.nfc", "read", "--device", "usb:ffff:fffe"],
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr


@pytest.mark.parametrize("uid", ["53A1B2C3D4E5F6", "04A1B2C3D4E5F6"])
def test_type2_read_uid_and_ndef(uid):
    # 04 is NXP's prefix: nfcpy then probes NXP commands and re-selects the tag.
    records = [ndef.UriRecord("https://portier.example/t2")]
    with rig(Type2Card(uid, ndef=records), ("106A",)) as (reader, _):
        badge = reader.read(timeout=10)
    assert badge.uid_hex == uid
    assert badge.technology == "ISO14443A"
    assert badge.tag_type == "Type2Tag"
    assert badge.ndef == tuple(records)
    assert not badge.iso_dep
