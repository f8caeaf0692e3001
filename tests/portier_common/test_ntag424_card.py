"""The emulated NTAG 424 DNA: the card side of AN12196's examples, state, status words and SUN.

The card is driven with the application note's own randoms (RndB, TI) so that its answers can be
compared byte for byte with the published ones (sources: see test_ntag424_session.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portier_common.ntag424 import SunSettings, SunVerifier
from portier_common.ntag424.card import EmulatedNtag424
from portier_common.ntag424.commands import (
    FREE,
    NDEF_FILE,
    AccessRights,
    FileSettings,
    Ntag424,
    SdmSettings,
)
from portier_common.ntag424.personalise import decode_uri_record
from portier_common.ntag424.session import (
    AuthenticationError,
    CardStatusError,
    CommMode,
    IntegrityError,
    LengthError,
    PermissionDenied,
    RandomSource,
)

H = bytes.fromhex
ZERO = bytes(16)


def feed(*values: str) -> RandomSource:
    """The given values in turn, then seeded random bytes (PICCData padding...)."""
    queue: Iterator[str] = iter(values)
    rest = random.Random(1).randbytes
    return lambda n: H(next(queue, "")) or rest(n)


def seeded(seed: int = 7) -> RandomSource:
    return random.Random(seed).randbytes


class Recorder:
    def __init__(self, card: EmulatedNtag424) -> None:
        self.card = card
        self.log: list[tuple[str, str]] = []

    def transmit(self, apdu: bytes) -> bytes:
        answer = self.card.transmit(apdu)
        self.log.append((apdu.hex().upper(), answer.hex().upper()))
        return answer


def test_card_answers_an12196_tables_14_17_18_byte_for_byte() -> None:
    # RndB and TI of Table 14 from the card, RndA of Table 14 from the host.
    card = EmulatedNtag424(
        uid=H("04DE5F1EACC040"),
        random=feed("B9E2FC789B64BF237CCCAA20EC7E6E48", "9D00C4DF", "0102030405"),
    )
    # Table 17 writes file 2 in CommMode.FULL with key 0: give the file those settings first.
    card.files[2].settings = FileSettings(
        comm_mode=CommMode.FULL, access=AccessRights(FREE, 0, 0, 0)
    )
    wire = Recorder(card)
    tag = Ntag424(wire, random=lambda n: H("13C5DB8A5930439FC3DEF9A4C675360F"))
    tag.select_application()
    tag.authenticate(0, ZERO)
    ndef = H(
        "0051D1014D550463686F6F73652E75726C2E636F6D2F6E7461673432343F653D"
        + "30" * 32
        + "26633D"
        + "30" * 16
    )
    tag.write_data(2, 0, ndef + bytes(0x80 - len(ndef)), CommMode.FULL)
    tag.change_file_settings(2, FileSettings.decode_change(H("4000E0C1F121200000430000430000")))
    assert [answer for _, answer in wire.log] == [
        "9000",  # Table 22
        "A04C124213C186F22399D33AC2A3021591AF",  # Table 14 step 7
        "3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F081206639100",  # step 16
        "FC222E5F7A5424529100",  # Table 17
        "57BFF87B1241E93D9100",  # Table 18
    ]
    # And the card now writes the SUN of that configuration (meta-read key 2, file-read key 1,
    # both still zero), which the doors' verifier accepts, counter 1 then 2.
    verifier = SunVerifier(
        file_read_key=ZERO, meta_read_key=ZERO, settings=SunSettings(picc_param="e", mac_param="c")
    )
    for counter in (1, 2):
        url = decode_uri_record(tag.read_ndef_message())
        assert url is not None and url.startswith("https://choose.url.com/ntag424?e=")
        tap = verifier.verify(url)
        assert (tap.uid, tap.counter) == (H("04DE5F1EACC040"), counter)


def test_card_answers_table_25_26_change_keys() -> None:
    # Session B: Table 19 (key 3 -> TI 7614281A), then NonFirst key 0 (Table 23), Table 24 at
    # counter 1 (here a plain write of the CC file), then ChangeKey 2 and 0 (Tables 25, 26).
    card = EmulatedNtag424(
        uid=H("04958CAA5C5E80"),
        random=feed(
            "91517975190DCEA6104948EFA3085C1B", "7614281A", "6924E8D09722659A2E7DEC68E66312B8"
        ),
    )
    randoms = iter(["B98F4C50CF1C2E084FD150E33992B048", "60BE759EDA560250AC57CDDC11743CF6"])
    wire = Recorder(card)
    tag = Ntag424(wire, random=lambda n: H(next(randoms)))
    tag.select_application()
    tag.authenticate(3, ZERO)
    # Table 21 (WriteData FULL on file 3, key 3 may write it) at counter 0.
    tag.write_data(3, 0, H("0102030405060708090A"), CommMode.FULL)
    tag.authenticate(0, ZERO, first=False)
    tag.write_data(1, 0x0E, H("FF0506E10500808283000000000000000000"), CommMode.PLAIN)
    tag.change_key(2, H("F3847D627727ED3BC9C4CC050489B966"), 1, old_key=ZERO)
    tag.change_key(0, H("5004BF991F408672B1EF00F08F9E8647"), 1)
    answers = [answer for _, answer in wire.log]
    assert answers[1:] == [
        "B875CEB0E66A6C5CD00898DC371F92D191AF",  # Table 19 step 7
        "0CC9A8094A8EEA683ECAAC5C7BF20584206D0608D477110FC6B3D5D3F65C3A6A9100",  # step 16
        "C26D236E4A7C046D9100",  # Table 21 ("6.12")
        "A6A2B3C572D06C097BB8DB70463E22DC91AF",  # Table 23 step 7
        "B888349C24B315EAB5B589E279C8263E9100",
        "9100",  # Table 24
        "203BB55D1089D5879100",  # Table 25
        "9100",  # Table 26
    ]
    assert card.keys[2] == H("F3847D627727ED3BC9C4CC050489B966") and card.key_versions[2] == 1
    assert card.keys[0] == H("5004BF991F408672B1EF00F08F9E8647")
    assert card.files[3].data[:10] == H("0102030405060708090A")


def test_factory_state() -> None:
    card = EmulatedNtag424(random=seeded())
    tag = Ntag424(card)
    tag.select_application()
    assert len(tag.get_version()) == 28
    ndef = tag.get_file_settings(NDEF_FILE[0])
    assert (
        ndef.access == AccessRights(FREE, FREE, FREE, 0) and ndef.sdm is None and ndef.size == 256
    )
    assert tag.get_file_settings(3).comm_mode is CommMode.FULL
    assert [tag.get_key_version(k) for k in range(5)] == [0] * 5
    assert tag.read_ndef_message() == b""
    tag.authenticate(0, ZERO)
    assert tag.get_card_uid() == card.uid
    assert len(tag.get_version()) == 28  # MAC mode inside the session, across three frames
    assert tag.get_key_version(4) == 0


def test_status_words() -> None:
    card = EmulatedNtag424(random=seeded())
    tag = Ntag424(card)
    tag.select_application()
    with pytest.raises(AuthenticationError):
        tag.authenticate(0, H("01" * 16))
    assert card.transmit(H("9071000002050000")) == H("9140")  # no key 5
    assert card.transmit(H("905100000000"))[-2:] == H("917E")  # Lc 0 with data framing: length
    assert card.transmit(H("9051000000")) == H("91AE")  # GetCardUID needs an authentication
    tag.authenticate(3, ZERO)
    with pytest.raises(PermissionDenied):
        tag.change_key(1, H("22" * 16), 1, old_key=ZERO)  # only key 0 changes keys
    tag.authenticate(0, ZERO)
    with pytest.raises(IntegrityError):
        tag.change_key(1, H("22" * 16), 1, old_key=H("33" * 16))  # the CRC proves the old key
    assert tag.session is None  # the error ended the authentication on both sides
    session = tag.authenticate(0, ZERO)
    apdu = bytearray(session.command(0x64, b"\x01", mode=CommMode.MAC))
    apdu[-2] ^= 1
    assert card.transmit(bytes(apdu)) == H("911E")  # a tampered command MAC
    tag.session = None
    tag.authenticate(0, ZERO)
    with pytest.raises(LengthError):
        tag.write_data(2, 0, b"", CommMode.PLAIN)
    tag.authenticate(0, ZERO)
    with pytest.raises(CardStatusError, match="91BE"):
        tag.write_data(2, 250, bytes(10), CommMode.PLAIN)
    assert card.transmit(H("00A4040C07D276000085010200")) == H("6A82")


def test_sdm_plain_mirroring_and_counter_per_selection() -> None:
    card = EmulatedNtag424(uid=H("041E3C8A2D6B80"), random=seeded())
    tag = Ntag424(card)
    tag.select_application()
    tag.authenticate(0, ZERO)
    url = "https://x.example/t?uid=" + "0" * 14 + "&ctr=" + "0" * 6 + "&cmac=" + "0" * 16
    payload = b"\x04" + url[8:].encode()
    message = b"\xd1\x01" + bytes([len(payload)]) + b"U" + payload
    content = len(message).to_bytes(2, "big") + message
    tag.write_data(2, 0, content, CommMode.PLAIN)
    base = 7 + url[8:].index("uid=") + 4
    sdm = SdmSettings(
        meta_read=FREE,
        file_read=0,
        uid_offset=base,
        counter_offset=base + 14 + 5,
        mac_input_offset=base + 14 + 5 + 6 + 6,
        mac_offset=base + 14 + 5 + 6 + 6,
    )
    tag.change_file_settings(2, FileSettings(access=AccessRights(FREE, 0, 0, 0), sdm=sdm))
    verifier = SunVerifier(file_read_key=ZERO)
    tag.select_application()
    tag.select_file(0xE104)
    head = tag.read_binary(0, 2)
    body = tag.read_binary(2, int.from_bytes(head, "big"))  # same selection: same counter
    tap = verifier.verify(decode_uri_record(body) or "")
    assert (tap.uid, tap.counter, tap.encrypted) == (card.uid, 1, False)
    assert verifier.verify(decode_uri_record(tag.read_ndef_message()) or "").counter == 2


def test_sdm_settings_the_card_refuses() -> None:
    card = EmulatedNtag424(random=seeded())
    tag = Ntag424(card)
    tag.select_application()
    tag.authenticate(0, ZERO)
    overlapping = SdmSettings(
        meta_read=1, file_read=2, picc_data_offset=40, mac_input_offset=50, mac_offset=50
    )
    with pytest.raises(CardStatusError, match="919E"):
        tag.change_file_settings(2, FileSettings(sdm=overlapping))
    tag.authenticate(0, ZERO)
    beyond = SdmSettings(
        meta_read=1, file_read=2, picc_data_offset=10, mac_input_offset=250, mac_offset=250
    )
    with pytest.raises(CardStatusError, match="919E"):
        tag.change_file_settings(2, FileSettings(sdm=beyond))


def test_random_id() -> None:
    card = EmulatedNtag424(random=seeded())
    tag = Ntag424(card)
    tag.select_application()
    assert card.anticollision_uid() == card.uid
    tag.authenticate(0, ZERO)
    tag.enable_random_id()
    assert card.random_id
    seen = {card.anticollision_uid() for _ in range(5)}
    assert all(len(u) == 4 and u[0] == 0x08 for u in seen) and len(seen) > 1
    tag.select_application()
    assert tag.get_version()[14:21] == bytes(7)  # unauthenticated GetVersion hides the UID
    tag.authenticate(0, ZERO)
    assert tag.get_card_uid() == card.uid


@pytest.mark.parametrize("mode", [CommMode.FULL, CommMode.MAC, CommMode.PLAIN])
def test_read_write_round_trip_in_every_mode(mode: CommMode) -> None:
    """Host and card agree on padding, IVs and MACs for every length the file takes."""
    card = EmulatedNtag424(random=seeded())
    tag = Ntag424(card, random=seeded(9))
    tag.select_application()
    tag.authenticate(0, ZERO)
    tag.change_file_settings(3, FileSettings(comm_mode=mode, access=AccessRights(2, 3, 3, 0)))
    tag.authenticate(3, ZERO)
    rng = random.Random(5)
    for length in (1, 15, 16, 17, 31, 32, 33, 100, 128):
        data = rng.randbytes(length)
        tag.write_data(3, 0, data, mode)
        assert tag.read_data(3, 0, length, mode) == data
    assert tag.read_data(3, 0, 0, mode) == data  # 0: to the end of the file
    assert tag.session is not None and tag.session.cmd_ctr == 19


@settings(max_examples=300, deadline=None)
@given(apdus=st.lists(st.binary(max_size=40), max_size=6), authenticated=st.booleans())
def test_any_apdu_gets_a_status_word_never_an_exception(
    apdus: list[bytes], authenticated: bool
) -> None:
    card = EmulatedNtag424(uid=H("04112233445566"), random=seeded())
    tag = Ntag424(card, random=seeded(2))
    tag.select_application()
    if authenticated:
        tag.authenticate(0, ZERO)
    for apdu in apdus:
        for candidate in (apdu, b"\x90" + apdu, b"\x00" + apdu):
            assert len(card.transmit(candidate)) >= 2
    assert card.keys == [ZERO] * 5  # nothing without the session keys changes the card
