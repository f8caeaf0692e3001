"""EV2 secure messaging and the host commands against NXP AN12196's worked examples.

Every expected value below is printed in NXP AN12196 "NTAG 424 DNA and NTAG 424 DNA TagTamper
features and hints", Rev. 2.0 table numbers (Rev. 1.8: each table one higher, §6/§7 for §5/§6).
We do not hold the PDF: the values were collected from public test suites that transcribe them
step by step, and each was checked against at least two of them, byte for byte:

* icedevml/ntag424-python (``comm.py`` self-test: Tables 14, 19, 7, 17, and "6.12", i.e. Table 21);
* pylibsdm (its test transport's APDU map: Tables 14, 18, 19, 21, 22, 23, 24, 25, 26);
* MxAshUp/ntag424-js (Table 14 as APDUs, "section 6.6");
* a Go suite that transcribes each table's numbered steps (Tables 14, 17, 18, 19, 23, 25, 26, 28,
  with SV1 of Tables 14/19/23, IVc of Tables 17/18 and the response MAC input of Table 18);
* a Kotlin suite (uk.co.mypina) listing Tables 7, 14, 17, 18, 19, 22-26 and 28 as APDUs;
* TypeScript, Rust and Java suites quoting Tables 19, 21 (with its IVc), 23, 24, 25 and 26.

Two notes those sources make and our results confirm: Table 17's CmdHeader carries length 800000
(the data really is 0x80 bytes; steps 4/12 print a stale 530000), and the data of Table 17, a
multiple of 16, gains a whole padding block.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from portier_common.ntag424.commands import (
    AccessRights,
    FileSettings,
    Ntag424,
    SdmSettings,
    change_key_data,
    jamcrc,
)
from portier_common.ntag424.session import (
    AuthenticationError,
    CommMode,
    Ev2Session,
    RandomSource,
    SecureMessagingError,
    authenticate_ev2_first,
    authenticate_ev2_non_first,
    data_iv,
    ev2_session_keys,
    iso_pad,
    iso_unpad,
    session_vector,
)

H = bytes.fromhex
ZERO = bytes(16)


class Script:
    """A transport that checks each APDU against a transcript and answers the card's part."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self._pairs: Iterator[tuple[str, str]] = iter(pairs)
        self.sent: list[str] = []

    def transmit(self, apdu: bytes) -> bytes:
        expected, answer = next(self._pairs)
        self.sent.append(apdu.hex().upper())
        assert apdu.hex().upper() == expected
        return H(answer)


def fixed(value: str) -> RandomSource:
    return lambda n: H(value)


# Session A: Table 14 (AuthenticateEV2First, key 0).
A_TI, A_ENC, A_MAC = (
    H("9D00C4DF"),
    H("1309C877509E5A215007FF0ED19CA564"),
    H("4C6626F5E72EA694202139295C7A7FC7"),
)
# Session B: TI of Table 19, keys of Table 23 (NonFirst): the ChangeKey examples run in it.
B_TI, B_ENC, B_MAC = (
    H("7614281A"),
    H("4CF3CB41A22583A61E89B158D252FC53"),
    H("5529860B2FC5FB6154B7F28361D30BF9"),
)


def session(ti: bytes, enc: bytes, mac: bytes, ctr: int, key_no: int = 0) -> Ev2Session:
    return Ev2Session(enc_key=enc, mac_key=mac, ti=ti, key_no=key_no, cmd_ctr=ctr)


# ------------------------------------------------------------------------------ authentication


def test_table14_authenticate_ev2_first() -> None:
    card = Script(
        ("9071000002000000", "A04C124213C186F22399D33AC2A3021591AF"),
        (
            "90AF00002035C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D00",
            "3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F081206639100",
        ),
    )
    s = authenticate_ev2_first(card, 0, ZERO, random=fixed("13C5DB8A5930439FC3DEF9A4C675360F"))
    assert (s.ti, s.enc_key, s.mac_key, s.cmd_ctr) == (A_TI, A_ENC, A_MAC, 0)
    assert s.pd_cap2 == s.pcd_cap2 == bytes(6)
    assert "1309" not in repr(s) and "4C66" not in repr(s)


def test_table14_session_vectors() -> None:
    rnd_a, rnd_b = H("13C5DB8A5930439FC3DEF9A4C675360F"), H("B9E2FC789B64BF237CCCAA20EC7E6E48")
    assert session_vector(H("A55A"), rnd_a, rnd_b) == H(
        "A55A0001008013C56268A548D8FBBF237CCCAA20EC7E6E48C3DEF9A4C675360F"
    )
    assert session_vector(H("5AA5"), rnd_a, rnd_b) == H(
        "5AA50001008013C56268A548D8FBBF237CCCAA20EC7E6E48C3DEF9A4C675360F"
    )


def test_table19_authenticate_key3() -> None:
    # Table 19 authenticates key 3 (factory zero); pylibsdm and the Go suite send 90 71 ... 03 00.
    card = Script(
        ("9071000002030000", "B875CEB0E66A6C5CD00898DC371F92D191AF"),
        (
            "90AF000020FF0306E47DFBC50087C4D8A78E88E62DE1E8BE457AA477C707E2F0874916A8B100",
            "0CC9A8094A8EEA683ECAAC5C7BF20584206D0608D477110FC6B3D5D3F65C3A6A9100",
        ),
    )
    s = authenticate_ev2_first(card, 3, ZERO, random=fixed("B98F4C50CF1C2E084FD150E33992B048"))
    assert s.ti == B_TI and s.key_no == 3
    assert s.enc_key == H("7A93D6571E4B180FCA6AC90C9A7488D4")
    assert s.mac_key == H("FC4AF159B62E549B5812394CAB1918CC")


def test_table23_authenticate_ev2_non_first_keeps_ti_and_counter() -> None:
    card = Script(
        ("90770000010000", "A6A2B3C572D06C097BB8DB70463E22DC91AF"),
        (
            "90AF000020BE7D45753F2CAB85F34BC60CE58B940763FE969658A532DF6D95EA2773F6E99100",
            "B888349C24B315EAB5B589E279C8263E9100",
        ),
    )
    before = session(
        B_TI, H("7A93D6571E4B180FCA6AC90C9A7488D4"), H("FC4AF159B62E549B5812394CAB1918CC"), 1, 3
    )
    s = authenticate_ev2_non_first(
        card, before, 0, ZERO, random=fixed("60BE759EDA560250AC57CDDC11743CF6")
    )
    assert (s.ti, s.enc_key, s.mac_key, s.cmd_ctr, s.key_no) == (B_TI, B_ENC, B_MAC, 1, 0)
    assert not before.valid
    assert session_vector(
        H("A55A"), H("60BE759EDA560250AC57CDDC11743CF6"), H("6924E8D09722659A2E7DEC68E66312B8")
    ) == H("A55A0001008060BE1CBA32869572659A2E7DEC68E66312B8AC57CDDC11743CF6")


def test_wrong_key_is_refused_twice_over() -> None:
    # The card refuses RndB' (91 AE) ...
    class Refusing:
        def __init__(self) -> None:
            self.n = 0

        def transmit(self, apdu: bytes) -> bytes:
            self.n += 1
            return H("A04C124213C186F22399D33AC2A3021591AF") if self.n == 1 else H("91AE")

    with pytest.raises(AuthenticationError, match="91AE"):
        authenticate_ev2_first(Refusing(), 0, H("01" * 16))
    # ... and a card answering 91 00 without proving the key (RndA' wrong) is refused by us.
    fake = Script(
        ("9071000002000000", "A04C124213C186F22399D33AC2A3021591AF"),
        (
            "90AF00002035C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D00",
            "00" * 32 + "9100",
        ),
    )
    with pytest.raises(SecureMessagingError, match="RndA"):
        authenticate_ev2_first(fake, 0, ZERO, random=fixed("13C5DB8A5930439FC3DEF9A4C675360F"))


def test_session_keys_of_three_handshakes() -> None:
    cases = [
        ("13C5DB8A5930439FC3DEF9A4C675360F", "B9E2FC789B64BF237CCCAA20EC7E6E48", A_ENC, A_MAC),
        (
            "B98F4C50CF1C2E084FD150E33992B048",
            "91517975190DCEA6104948EFA3085C1B",
            H("7A93D6571E4B180FCA6AC90C9A7488D4"),
            H("FC4AF159B62E549B5812394CAB1918CC"),
        ),
        ("60BE759EDA560250AC57CDDC11743CF6", "6924E8D09722659A2E7DEC68E66312B8", B_ENC, B_MAC),
    ]
    for rnd_a, rnd_b, enc, mac in cases:
        assert ev2_session_keys(ZERO, H(rnd_a), H(rnd_b)) == (enc, mac)


# ------------------------------------------------------------------------- secure messaging


def test_table7_get_file_settings_comm_mode_mac() -> None:
    # Table 7 (AN12196 §5.3): only SesAuthMACKey and TI are given.
    mac_key, ti = H("8248134A386E86EB7FAF54A52E536CB6"), H("7A21085E")
    data = "0040EEEE000100D1FE001F00004400004400002000006A0000"
    card = Script(("90F5000009026597A457C8CD442C00", data + "2A474282E7A47986" + "9100"))
    tag = Ntag424(card)
    tag.session = session(ti, ZERO, mac_key, 0)
    settings = tag.get_file_settings(2)
    assert tag.session.cmd_ctr == 1
    assert settings.size == 256 and settings.access == AccessRights(0xE, 0xE, 0xE, 0xE)
    assert settings.sdm == SdmSettings(
        meta_read=0,
        file_read=0,
        counter_retrieval=0xE,
        picc_data_offset=0x1F,
        mac_input_offset=0x44,
        enc_offset=0x44,
        enc_length=0x20,
        mac_offset=0x6A,
    )
    assert settings.encode_get(256).hex().upper() == data


NDEF_0x80 = (
    "0051D1014D550463686F6F73652E75726C2E636F6D2F6E7461673432343F653D"
    + "30" * 32
    + "26633D"
    + "30" * 16
)
NDEF_0x80 += "00" * (0x80 - len(NDEF_0x80) // 2)


def test_table17_write_data_full() -> None:
    assert data_iv(A_ENC, H("A55A"), A_TI, 0) == H("D2CB7277A17841A06654A48188C1F8F5")
    cipher = (
        "421C73A27D827658AF481FDFF20A5025B559D0E3AA21E58D347F343CFFC768BFE596C706BC00F2176781D4B0242642"
        "A0FF5A42C461AAF894D9A1284B8C76BCFA658ACD40555D362E08DB15CF421B51283F9064BCBE20E96CAE545B40"
        "7C9D651A3315B27373772E5DA2367D2064AE054AF996C6F1F669170FA88CE8C4E3A4A7BBBEF0FD971FF532C3A802"
        "AF745660F2B4"
    )
    card = Script(
        ("908D00009F02000000800000" + cipher + "D1D9A8499661EBF300", "FC222E5F7A5424529100")
    )
    tag = Ntag424(card)
    tag.session = session(A_TI, A_ENC, A_MAC, 0)
    tag.write_data(2, 0, H(NDEF_0x80), CommMode.FULL)
    assert tag.session.cmd_ctr == 1


def test_table18_change_file_settings_sdm() -> None:
    assert data_iv(A_ENC, H("A55A"), A_TI, 1) == H("3E27082AB2ACC1EF55C57547934E9962")
    settings = FileSettings(
        comm_mode=CommMode.PLAIN,
        access=AccessRights(read=0xE, write=0, read_write=0, change=0),
        sdm=SdmSettings(
            meta_read=2,
            file_read=1,
            counter_retrieval=1,
            picc_data_offset=0x20,
            mac_input_offset=0x43,
            mac_offset=0x43,
        ),
    )
    assert settings.encode() == H("4000E0C1F121200000430000430000")
    assert FileSettings.decode_change(settings.encode()) == settings
    card = Script(
        ("905F0000190261B6D97903566E84C3AE5274467E89EAD799B7C1A0EF7A0400", "57BFF87B1241E93D9100")
    )
    tag = Ntag424(card)
    tag.session = session(A_TI, A_ENC, A_MAC, 1)
    tag.change_file_settings(2, settings)
    assert tag.session.cmd_ctr == 2


def test_table21_write_data_full_short() -> None:
    # "6.12" in icedevml's self-test: WriteData FULL on file 3 in Table 19's session, CmdCtr 0.
    assert data_iv(H("7A93D6571E4B180FCA6AC90C9A7488D4"), H("A55A"), B_TI, 0) == H(
        "4C651A64261A90307B6C293F611C7F7B"
    )
    card = Script(
        (
            "908D00001F030000000A00006B5E6804909962FC4E3FF5522CF0F8436C0C53315B9C73AA00",
            "C26D236E4A7C046D9100",
        )
    )
    tag = Ntag424(card)
    tag.session = session(
        B_TI, H("7A93D6571E4B180FCA6AC90C9A7488D4"), H("FC4AF159B62E549B5812394CAB1918CC"), 0, 3
    )
    tag.write_data(3, 0, H("0102030405060708090A"), CommMode.FULL)


def test_table24_write_data_plain_in_a_session_advances_the_counter() -> None:
    card = Script(("908D000019010E0000120000FF0506E1050080828300000000000000000000", "9100"))
    tag = Ntag424(card)
    tag.session = session(B_TI, B_ENC, B_MAC, 1)
    tag.write_data(1, 0x0E, H("FF0506E10500808283000000000000000000"), CommMode.PLAIN)
    assert tag.session.cmd_ctr == 2


def test_table25_change_key_other_key() -> None:
    assert jamcrc(H("F3847D627727ED3BC9C4CC050489B966")) == H("789DFADC")
    assert data_iv(B_ENC, H("A55A"), B_TI, 2) == H("307EDE1814707F30CFE603DD6CA62353")
    card = Script(
        (
            "90C4000029"
            "02"
            "2CF362B7BF4311FF3BE1DAA295E8C68DE09050560D19B9E16C2393AE9CD1FAC7"
            "5D0CE20BCD1D06E600",
            "203BB55D1089D5879100",
        )
    )
    tag = Ntag424(card)
    tag.session = session(B_TI, B_ENC, B_MAC, 2)
    tag.change_key(2, H("F3847D627727ED3BC9C4CC050489B966"), 0x01, old_key=ZERO)
    assert tag.session is not None and tag.session.cmd_ctr == 3


def test_table26_change_key_of_the_session_ends_it() -> None:
    assert data_iv(B_ENC, H("A55A"), B_TI, 3) == H("01602D579423B2797BE8B478B0B4D27B")
    card = Script(
        (
            "90C4000029"
            "00"
            "C0EB4DEEFEDDF0B513A03A95A75491818580503190D4D05053FF75668A01D6FD"
            "A6610234BDED643200",
            "9100",
        )
    )
    tag = Ntag424(card)
    tag.session = session(B_TI, B_ENC, B_MAC, 3)
    tag.change_key(0, H("5004BF991F408672B1EF00F08F9E8647"), 0x01)
    assert tag.session is None


def test_table28_get_card_uid_full_response() -> None:
    card = Script(
        ("90510000088E2C155ADDA99BE300", "70756055688505B52A5E26E59E329CD6595F672298EA41B79100")
    )
    tag = Ntag424(card)
    tag.session = session(
        H("DF055522"),
        H("2B4D963C014DC36F24F69A50A394F875"),
        H("379D32130CE61705DD5FD8C36B95D764"),
        0,
    )
    assert tag.get_card_uid() == H("04958CAA5C5E80")


def test_table22_select_ndef_application() -> None:
    tag = Ntag424(Script(("00A4040C07D276000085010100", "9000")))
    tag.select_application()


def test_response_mac_tampering_is_refused_and_drops_the_session() -> None:
    card = Script(
        ("905F0000190261B6D97903566E84C3AE5274467E89EAD799B7C1A0EF7A0400", "57BFF87B1241E93E9100")
    )
    tag = Ntag424(card)
    tag.session = session(A_TI, A_ENC, A_MAC, 1)
    with pytest.raises(SecureMessagingError, match="MAC"):
        tag.change_file_settings(2, FileSettings.decode_change(H("4000E0C1F121200000430000430000")))
    assert tag.session is None


def test_padding_round_trip_and_refusal() -> None:
    for n in range(0, 40):
        data = bytes(range(n))
        padded = iso_pad(data)
        assert len(padded) % 16 == 0 and len(padded) > n
        assert iso_unpad(padded) == data
    with pytest.raises(SecureMessagingError):
        iso_unpad(bytes(16))


def test_change_key_data_forms() -> None:
    assert change_key_data(0, 0, H("11" * 16), 1, None) == H("11" * 16 + "01")
    other = change_key_data(1, 0, H("11" * 16), 2, H("10" * 16))
    assert other == H("01" * 16 + "02") + jamcrc(H("11" * 16))
    with pytest.raises(ValueError, match="old_key"):
        change_key_data(1, 0, H("11" * 16), 2, None)


def test_sdm_settings_refuse_inconsistent_fields() -> None:
    with pytest.raises(ValueError, match="picc_data_offset"):
        SdmSettings(meta_read=1, file_read=2, mac_input_offset=1, mac_offset=1)
    with pytest.raises(ValueError, match="uid_offset"):
        SdmSettings(meta_read=0xE, file_read=0xF, counter_offset=1)
    plain = SdmSettings(
        meta_read=0xE,
        file_read=2,
        uid_offset=10,
        counter_offset=30,
        mac_input_offset=40,
        mac_offset=40,
    )
    assert SdmSettings.decode(plain.encode()) == (plain, len(plain.encode()))
