"""NTAG 424 DNA SUN verification against published vectors, tampering and replay.

Where the vectors come from (values checked against public sources quoting them):

* NXP AN12196 "NTAG 424 DNA and NTAG 424 DNA TagTamper features and hints".
  Table numbers follow Rev. 2.0; Rev. 1.x prints the same examples on pages
  12-18 with each table numbered one higher (PICCData Table 3, SDMENCFileData
  Table 4, empty-input MAC Table 5, MAC over file data Table 6).
* NXP AN10922 "Symmetric key diversifications", §2.2.1 (AES-128 example).
* The plain-mirroring URL and the non-zero-key message are not in AN12196:
  they are the examples of the public reference backend nfc-developer/sdm-backend
  (README "UID and Read Counter Plaintext mirroring"; tests/test_libsdm.py
  ``test_plain_sdm`` and ``test_sun3_custom``).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from portier_common import ntag424
from portier_common.ntag424 import (
    BadSunMac,
    DiversifiedKeys,
    MalformedSun,
    SunError,
    SunSettings,
    SunTap,
    SunVerifier,
    UnknownBadge,
    counter_verdict,
    decrypt_file_data,
    decrypt_picc_data,
    diversify_aes128,
    emulate_sun_url,
    parse_sun_url,
    sdm_mac,
    session_keys,
    truncate_mac,
)
from portier_common.reasons import Reason

ZERO_KEY = bytes(16)
H = bytes.fromhex

# AN12196 §3.4.2 Table 2 and §3.4.4.2.1 Table 4 (zero keys, empty MAC input).
AN_PICC_URL = (
    "https://www.my424dna.com/?picc_data=EF963FF7828658A599F3041510671E88&cmac=94EED9EE65337086"
)
# AN12196 §3.4.4.2.2 Table 5 (Rev. 1.x page 18): MAC over "<enc>&cmac=".
AN_MAC_INPUT_URL = (
    "https://www.my424dna.com/?picc_data=FD91EC264309878BE6345CBE53BADF40"
    "&enc=CEE9A53E3E463EF1F459635736738962&cmac=ECC1E7F6C6C73BF6"
)
# AN12196 §3.4.3 Table 3 (SDMENCFileData decryption, Rev. 1.x page 13).
AN_ENC_URL = (
    "https://my424dna.com/?picc_data=FDE4AFA99B5C820A2C1BB0F1C792D0EB"
    "&enc=94592FDE69FA06E8E3B6CA686A22842B&cmac=C48B89C17A233B2C"
)
# nfc-developer/sdm-backend README, plaintext UID and counter mirroring.
PLAIN_URL = "https://sdm.nfcdeveloper.com/tagpt?uid=041E3C8A2D6B80&ctr=000006&cmac=4B00064004B0B3D3"

ENC_SETTINGS = SunSettings(mac_input_from="enc")


@pytest.fixture
def zero_verifier() -> SunVerifier:
    return SunVerifier(file_read_key=ZERO_KEY, meta_read_key=ZERO_KEY)


@pytest.fixture
def enc_verifier() -> SunVerifier:
    return SunVerifier(file_read_key=ZERO_KEY, meta_read_key=ZERO_KEY, settings=ENC_SETTINGS)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def replace_param(url: str, name: str, value: str) -> str:
    head, _, tail = url.partition(f"{name}=")
    old, amp, rest = tail.partition("&")
    assert old, f"{name} not in {url}"
    return f"{head}{name}={value}{amp}{rest}"


def param(url: str, name: str) -> str:
    return url.split(f"{name}=", 1)[1].split("&", 1)[0]


# ----------------------------------------------------------------------------- NXP vectors


def test_an12196_table1_session_keys() -> None:
    # AN12196 §3.3 Table 1: SDM session key generation with a non-zero key.
    enc, mac = session_keys(H("5ACE7E50AB65D5D51FD5BF5A16B8205B"), H("04C767F2066180"), 1)
    assert enc == H("66DA61797E23DECA5D8ECA13BBADF7A9")  # SV1 = C33C00010080 04C767F2066180 010000
    assert mac == H("3A3E8110E05311F7A3FCF0D969BF2B48")  # SV2 = 3CC300010080 04C767F2066180 010000


def test_an12196_table2_picc_data_decryption() -> None:
    # AN12196 §3.4.2 Table 2: PICCData C7 04DE5F1EACC040 3D0000 DA5CF60941.
    picc = decrypt_picc_data(ZERO_KEY, H("EF963FF7828658A599F3041510671E88"))
    assert picc.tag == 0xC7
    assert picc.uid_mirrored and picc.counter_mirrored and picc.uid_length == 7
    assert picc.uid == H("04DE5F1EACC040")
    assert picc.counter == 0x3D


def test_an12196_table3_enc_file_data() -> None:
    # AN12196 §3.4.3 Table 3: UID 04958CAA5C5E80, SDMReadCtr 010000,
    # KSesSDMFileReadENC 8097D73344D53F963B09E23E03B62336, plaintext 16 x "x".
    picc = decrypt_picc_data(ZERO_KEY, H("FDE4AFA99B5C820A2C1BB0F1C792D0EB"))
    assert (picc.uid, picc.counter) == (H("04958CAA5C5E80"), 1)
    enc_key, _ = session_keys(ZERO_KEY, picc.uid, picc.counter)
    assert enc_key == H("8097D73344D53F963B09E23E03B62336")
    plain = decrypt_file_data(enc_key, 1, H("94592FDE69FA06E8E3B6CA686A22842B"))
    assert plain == b"xxxxxxxxxxxxxxxx"


def test_an12196_table3_full_url(enc_verifier: SunVerifier) -> None:
    tap = enc_verifier.verify(AN_ENC_URL)
    assert tap == SunTap(uid=H("04958CAA5C5E80"), counter=1, file_data=b"x" * 16)


def test_an12196_table4_mac_over_empty_input() -> None:
    # AN12196 §3.4.4.2.1 Table 4: SV2 3CC30001008004DE5F1EACC0403D0000,
    # KSesSDMFileReadMAC 3FB5F6E3A807A03D5E3570ACE393776F, MACt 94EED9EE65337086.
    _, mac_key = session_keys(ZERO_KEY, H("04DE5F1EACC040"), 0x3D)
    assert mac_key == H("3FB5F6E3A807A03D5E3570ACE393776F")
    assert sdm_mac(mac_key, b"") == H("94EED9EE65337086")


def test_an12196_table4_full_url(zero_verifier: SunVerifier) -> None:
    tap = zero_verifier.verify(AN_PICC_URL)
    assert tap.uid == H("04DE5F1EACC040")
    assert tap.uid_hex == "04DE5F1EACC040"
    assert tap.counter == 61
    assert tap.file_data is None
    assert tap.encrypted


def test_an12196_table5_mac_over_file_data() -> None:
    # AN12196 §3.4.4.2.2 Table 5: UID 04958CAA5C5E80, SDMReadCtr 080000,
    # KSesSDMFileReadMAC 3ED0920E5E6A0320D823D5987FEAFBB1,
    # CMAC("CEE9A53E3E463EF1F459635736738962&cmac=") = 81EC45C175E72FF6FAC61BC7AB3BAEF6.
    picc = decrypt_picc_data(ZERO_KEY, H("FD91EC264309878BE6345CBE53BADF40"))
    assert (picc.uid, picc.counter) == (H("04958CAA5C5E80"), 8)
    _, mac_key = session_keys(ZERO_KEY, picc.uid, picc.counter)
    assert mac_key == H("3ED0920E5E6A0320D823D5987FEAFBB1")
    assert truncate_mac(H("81EC45C175E72FF6FAC61BC7AB3BAEF6")) == H("ECC1E7F6C6C73BF6")
    assert sdm_mac(mac_key, b"CEE9A53E3E463EF1F459635736738962&cmac=") == H("ECC1E7F6C6C73BF6")


def test_an12196_table5_full_url(enc_verifier: SunVerifier) -> None:
    tap = enc_verifier.verify(AN_MAC_INPUT_URL)
    assert (tap.uid, tap.counter) == (H("04958CAA5C5E80"), 8)
    # The decrypted content as the sdm-backend test_sun2 states it.
    assert tap.file_data == b"xxxxxxxxxxxxxxxx"


def test_an12196_short_parameter_names() -> None:
    # The same Table 2/4 message as NXP's own demo URL lays it out (e= and c=).
    verifier = SunVerifier(
        file_read_key=ZERO_KEY,
        meta_read_key=ZERO_KEY,
        settings=SunSettings(picc_param="e", mac_param="c"),
    )
    tap = verifier.verify(
        "https://ntag.nxp.com/424?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"
    )
    assert (tap.uid_hex, tap.counter) == ("04DE5F1EACC040", 61)


def test_plain_mirroring_vector(zero_verifier: SunVerifier) -> None:
    # sdm-backend test_plain_sdm; the counter is mirrored most significant byte first.
    tap = zero_verifier.verify(PLAIN_URL)
    assert tap == SunTap(uid=H("041E3C8A2D6B80"), counter=6, encrypted=False)
    # ... and test_plain_sdm_wrong.
    with pytest.raises(BadSunMac):
        zero_verifier.verify(replace_param(PLAIN_URL, "cmac", "AB00064004B0B3AB"))


def test_plain_mirroring_needs_no_meta_key() -> None:
    assert SunVerifier(file_read_key=ZERO_KEY).verify(PLAIN_URL).counter == 6


def test_non_zero_keys_vector() -> None:
    # sdm-backend test_sun3_custom: distinct meta-read and file-read keys, MAC
    # over the encrypted file data immediately followed by the MAC.
    meta = H("42aff114f2cb3b6141be6dc95dfc5416")
    file_key = H("b62a9baf092439bd43c62aee96b970c5")
    picc = decrypt_picc_data(meta, H("8ACADDEF0A9B62CDAE39A16B83FC14DE"))
    assert (picc.uid, picc.counter) == (H("041d3c8a2d6b80"), 291)
    enc_key, mac_key = session_keys(file_key, picc.uid, picc.counter)
    assert sdm_mac(mac_key, b"B8436E11F627BB7F543FCC0C1E0D1A89") == H("238B2543A8DEBAD8")
    plain = decrypt_file_data(enc_key, picc.counter, H("B8436E11F627BB7F543FCC0C1E0D1A89"))
    assert plain == H("4e545858716e6f5f6f42467077792d56")


def test_emulation_reproduces_an12196_urls() -> None:
    # Given the random padding the tag drew (Table 2 / Table 3 plaintexts), the
    # emulator writes the application note's URLs byte for byte.
    assert (
        emulate_sun_url(
            "https://www.my424dna.com/",
            uid=H("04DE5F1EACC040"),
            counter=61,
            file_read_key=ZERO_KEY,
            meta_read_key=ZERO_KEY,
            picc_padding=H("DA5CF60941"),
        )
        == AN_PICC_URL
    )
    assert (
        emulate_sun_url(
            "https://my424dna.com/",
            uid=H("04958CAA5C5E80"),
            counter=1,
            file_read_key=ZERO_KEY,
            meta_read_key=ZERO_KEY,
            file_data=b"x" * 16,
            settings=ENC_SETTINGS,
            picc_padding=H("851ECB67D4"),
        )
        == AN_ENC_URL
    )
    assert (
        emulate_sun_url(
            "https://sdm.nfcdeveloper.com/tagpt",
            uid=H("041E3C8A2D6B80"),
            counter=6,
            file_read_key=ZERO_KEY,
        )
        == PLAIN_URL
    )


# ----------------------------------------------------------------------------- AN10922


def test_an10922_aes128_diversification() -> None:
    # AN10922 §2.2.1: M = UID 04782E21801D80 || AID 3042F5 || "NXP Abu".
    key = diversify_aes128(
        H("00112233445566778899AABBCCDDEEFF"),
        H("04782E21801D80"),
        application_id=H("3042F5"),
        system_identifier=b"NXP Abu",
    )
    assert key == H("A8DD63A3B89D54B37CA802473FDA9175")


def test_an10922_cmac_subkeys() -> None:
    # AN10922 §2.2.1 steps 3 and 4 (K1, K2 of the master key).
    k1, k2 = ntag424.diversify._cmac_subkeys(H("00112233445566778899AABBCCDDEEFF"))
    assert k1 == H("FBC9F75C9413C041DFEE452D3F0706D1")
    assert k2 == H("F793EEB928278083BFDC8A5A7E0E0D25")


@pytest.mark.parametrize("length", [16, 17, 20, 30, 31])
def test_an10922_matches_rfc4493_when_padding_agrees(length: int) -> None:
    # For 01h || M longer than one block, AN10922's pad-to-32 is RFC 4493's own
    # padding, so the library's CMAC must agree.
    master = bytes(range(16))
    data = bytes((7 * i + 3) & 0xFF for i in range(length))
    reference = CMAC(algorithms.AES(master))
    reference.update(b"\x01" + data)
    assert diversify_aes128(master, data) == reference.finalize()


def test_diversification_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="master_key"):
        diversify_aes128(bytes(15), H("04782E21801D80"))
    with pytest.raises(ValueError, match=r"1\.\.31 bytes"):
        diversify_aes128(ZERO_KEY, b"")
    with pytest.raises(ValueError, match=r"1\.\.31 bytes"):
        diversify_aes128(ZERO_KEY, bytes(7), system_identifier=bytes(25))
    with pytest.raises(ValueError, match="system_identifier"):
        DiversifiedKeys(ZERO_KEY, system_identifier=bytes(25))
    with pytest.raises(ValueError, match="master_key"):
        DiversifiedKeys(b"short")


def test_diversified_keys_end_to_end() -> None:
    master = H("00112233445566778899AABBCCDDEEFF")
    keys = DiversifiedKeys(master, system_identifier=b"portier-door")
    meta = bytes(range(16, 32))
    uid = H("04A1B2C3D4E5F6")
    url = emulate_sun_url(
        "https://badge.example/t", uid=uid, counter=9, file_read_key=keys(uid), meta_read_key=meta
    )
    verifier = SunVerifier(file_read_key=keys, meta_read_key=meta)
    assert verifier.verify(url).uid == uid
    # The card key of another UID, or of another system identifier, does not verify.
    other_uid = emulate_sun_url(
        "https://badge.example/t",
        uid=uid,
        counter=9,
        file_read_key=keys(H("04A1B2C3D4E5F7")),
        meta_read_key=meta,
    )
    with pytest.raises(BadSunMac):
        verifier.verify(other_uid)
    other_site = SunVerifier(
        file_read_key=DiversifiedKeys(master, system_identifier=b"portier-gate"),
        meta_read_key=meta,
    )
    with pytest.raises(BadSunMac):
        other_site.verify(url)
    assert master.hex() not in repr(keys).lower()


# ----------------------------------------------------------------------------- parsing


def test_parse_keeps_parts_and_mac_input() -> None:
    message = parse_sun_url(AN_MAC_INPUT_URL, ENC_SETTINGS)
    assert message.encrypted
    assert message.picc_data == H("FD91EC264309878BE6345CBE53BADF40")
    assert message.enc_file_data == H("CEE9A53E3E463EF1F459635736738962")
    assert message.mac == H("ECC1E7F6C6C73BF6")
    assert message.mac_input == b"CEE9A53E3E463EF1F459635736738962&cmac="
    plain = parse_sun_url(PLAIN_URL)
    assert not plain.encrypted
    assert (plain.uid, plain.counter, plain.mac_input) == (H("041E3C8A2D6B80"), 6, b"")


def test_parse_accepts_lowercase_fragment_bytes_and_extra_params(
    zero_verifier: SunVerifier,
) -> None:
    assert zero_verifier.verify(AN_PICC_URL.lower()).counter == 61
    assert zero_verifier.verify(AN_PICC_URL + "#top").counter == 61
    assert zero_verifier.verify(AN_PICC_URL.encode("ascii")).counter == 61
    reordered = (
        "https://x.example/p?v=2&cmac=94EED9EE65337086&picc_data=EF963FF7828658A599F3041510671E88"
    )
    assert zero_verifier.verify(reordered).counter == 61


def test_mac_input_from_any_parameter() -> None:
    # SDMMACInputOffset may point before the mirrored data, e.g. at a static
    # parameter: everything from there up to the MAC value is MACed.
    settings = SunSettings(mac_input_from="v")
    url = emulate_sun_url(
        "https://badge.example/t?v=1",
        uid=H("04A1B2C3D4E5F6"),
        counter=3,
        file_read_key=ZERO_KEY,
        meta_read_key=ZERO_KEY,
        settings=settings,
    )
    assert parse_sun_url(url, settings).mac_input.startswith(b"1&picc_data=")
    verifier = SunVerifier(file_read_key=ZERO_KEY, meta_read_key=ZERO_KEY, settings=settings)
    assert verifier.verify(url).counter == 3
    with pytest.raises(BadSunMac):
        verifier.verify(url.replace("v=1", "v=2"))
    # The default (empty input) does not match what this tag MACed.
    with pytest.raises(BadSunMac):
        SunVerifier(file_read_key=ZERO_KEY, meta_read_key=ZERO_KEY).verify(url)


MALFORMED = [
    pytest.param("", id="empty"),
    pytest.param("https://www.my424dna.com/", id="no-query"),
    pytest.param(
        "https://a/#?picc_data=EF963FF7828658A599F3041510671E88&cmac=94EED9EE65337086",
        id="query-in-fragment",
    ),
    pytest.param("https://a/?picc_data=EF963FF7828658A599F3041510671E88", id="no-mac"),
    pytest.param("https://a/?cmac=94EED9EE65337086", id="no-picc-nor-uid"),
    pytest.param(
        AN_PICC_URL.replace("cmac=94EED9EE65337086", "cmac=94EED9EE6533708"), id="mac-short"
    ),
    pytest.param(
        AN_PICC_URL.replace("cmac=94EED9EE65337086", "cmac=94EED9EE6533708G"), id="mac-not-hex"
    ),
    pytest.param(
        AN_PICC_URL.replace("cmac=94EED9EE65337086", "cmac=94EED9EE 5337086"), id="mac-space"
    ),
    pytest.param(AN_PICC_URL.replace("cmac=", "cmac"), id="mac-no-equals"),
    pytest.param(AN_PICC_URL.replace("EF963FF7", "EF963FF"), id="picc-odd"),
    pytest.param(AN_PICC_URL.replace("EF963FF7", "EF963FF7AA"), id="picc-long"),
    pytest.param(AN_PICC_URL.replace("EF963FF7", "EF963FF7" + "00" * 8), id="picc-lrp"),
    pytest.param(AN_PICC_URL.replace("EF963FF7", "EF963FF٧"), id="non-ascii-digit"),
    pytest.param(AN_PICC_URL + "&cmac=94EED9EE65337086", id="duplicate-mac"),
    pytest.param(AN_PICC_URL + "&picc_data=EF963FF7828658A599F3041510671E88", id="duplicate-picc"),
    pytest.param(AN_PICC_URL + "&uid=041E3C8A2D6B80&ctr=000006", id="picc-and-plain"),
    pytest.param(PLAIN_URL.replace("ctr=000006&", ""), id="plain-no-ctr"),
    pytest.param(PLAIN_URL.replace("uid=041E3C8A2D6B80&", ""), id="plain-no-uid"),
    pytest.param(PLAIN_URL.replace("ctr=000006", "ctr=0006"), id="plain-ctr-short"),
    pytest.param(PLAIN_URL.replace("uid=041E3C8A2D6B80", "uid=041E3C8A2D6B"), id="plain-uid-short"),
    pytest.param(AN_PICC_URL.replace("&cmac", "&enc=00&cmac"), id="enc-not-block"),
    pytest.param(
        AN_PICC_URL.replace("&cmac", "&enc=" + "00" * 16 + "&cmac"), id="enc-outside-mac-input"
    ),
    pytest.param("https://a/?" + "x" * 2000 + AN_PICC_URL.split("?")[1], id="too-long"),
    pytest.param(None, id="none"),
    pytest.param(42, id="int"),
    pytest.param(b"\xff\xfe?cmac=00", id="non-ascii-bytes"),
]


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_input_is_refused_with_reason(zero_verifier: SunVerifier, url: object) -> None:
    with pytest.raises(MalformedSun) as caught:
        zero_verifier.verify(url)
    assert caught.value.reason is Reason.MALFORMED
    assert isinstance(caught.value, ValueError)


def test_mac_input_parameter_missing_or_after_mac(enc_verifier: SunVerifier) -> None:
    with pytest.raises(MalformedSun, match="start the MAC input"):
        enc_verifier.verify(AN_PICC_URL)
    after = (
        "https://a/?picc_data=FD91EC264309878BE6345CBE53BADF40&cmac=ECC1E7F6C6C73BF6"
        "&enc=CEE9A53E3E463EF1F459635736738962"
    )
    with pytest.raises(MalformedSun, match="comes after"):
        enc_verifier.verify(after)


def test_encrypted_message_without_meta_key_is_malformed() -> None:
    with pytest.raises(MalformedSun, match="meta-read key"):
        SunVerifier(file_read_key=ZERO_KEY).verify(AN_PICC_URL)


def test_plain_mirroring_can_be_refused() -> None:
    verifier = SunVerifier(file_read_key=ZERO_KEY, settings=SunSettings(accept_plain=False))
    with pytest.raises(MalformedSun, match="plain"):
        verifier.verify(PLAIN_URL)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"picc_param": ""}, "picc_param"),
        ({"mac_param": "c&d"}, "mac_param"),
        ({"enc_param": "picc_data"}, "enc_param"),
        ({"uid_param": "x" * 33}, "uid_param"),
        ({"mac_input_from": "cmac"}, "mac_input_from"),
        ({"mac_input_from": "a=b"}, "mac_input_from"),
        ({"accept_plain": "yes"}, "accept_plain"),
    ],
)
def test_settings_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"SunSettings.{field}"):
        SunSettings(**kwargs)  # type: ignore[arg-type]


def test_verifier_argument_errors() -> None:
    with pytest.raises(ValueError, match="meta_read_key"):
        SunVerifier(file_read_key=ZERO_KEY, meta_read_key=bytes(8))
    with pytest.raises(ValueError, match="file_read_key"):
        SunVerifier(file_read_key=bytes(17))
    with pytest.raises(ValueError, match="file_read_key"):
        SunVerifier(file_read_key=42)  # type: ignore[arg-type]
    verifier = SunVerifier(file_read_key=ZERO_KEY, meta_read_key=ZERO_KEY)
    assert ZERO_KEY.hex() not in repr(verifier)


# ----------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("bit", range(128))
def test_every_picc_data_bit_flip_is_refused(zero_verifier: SunVerifier, bit: int) -> None:
    picc = H(param(AN_PICC_URL, "picc_data"))
    url = replace_param(AN_PICC_URL, "picc_data", flip_bit(picc, bit).hex().upper())
    with pytest.raises(BadSunMac) as caught:
        zero_verifier.verify(url)
    assert caught.value.reason is Reason.BAD_SIGNATURE


def test_every_mac_bit_flip_is_refused(zero_verifier: SunVerifier) -> None:
    mac = H(param(AN_PICC_URL, "cmac"))
    for bit in range(64):
        url = replace_param(AN_PICC_URL, "cmac", flip_bit(mac, bit).hex().upper())
        with pytest.raises(BadSunMac):
            zero_verifier.verify(url)


def test_every_file_data_bit_flip_is_refused(enc_verifier: SunVerifier) -> None:
    for url in (AN_MAC_INPUT_URL, AN_ENC_URL):
        enc = H(param(url, "enc"))
        for bit in range(128):
            tampered = replace_param(url, "enc", flip_bit(enc, bit).hex().upper())
            with pytest.raises(BadSunMac):
                enc_verifier.verify(tampered)


def test_file_data_text_is_macced_exactly(enc_verifier: SunVerifier) -> None:
    # Same bytes, other letter case: the MAC covers the ASCII the tag wrote.
    enc = param(AN_MAC_INPUT_URL, "enc")
    with pytest.raises(BadSunMac):
        enc_verifier.verify(replace_param(AN_MAC_INPUT_URL, "enc", enc.lower()))


def test_every_plain_uid_and_counter_bit_flip_is_refused(zero_verifier: SunVerifier) -> None:
    for name in ("uid", "ctr"):
        value = H(param(PLAIN_URL, name))
        for bit in range(len(value) * 8):
            url = replace_param(PLAIN_URL, name, flip_bit(value, bit).hex().upper())
            with pytest.raises(BadSunMac):
                zero_verifier.verify(url)


def test_wrong_keys_are_refused() -> None:
    other = bytes(range(16))
    with pytest.raises(BadSunMac):
        SunVerifier(file_read_key=other, meta_read_key=ZERO_KEY).verify(AN_PICC_URL)
    with pytest.raises(BadSunMac):
        SunVerifier(file_read_key=ZERO_KEY, meta_read_key=other).verify(AN_PICC_URL)


def test_picc_data_without_uid_and_counter_is_refused() -> None:
    # A tag byte without UID and counter mirroring cannot identify a badge.
    for tag in (0x00, 0x40, 0x87):
        plain = bytes([tag]) + bytes(15)
        picc = ntag424.crypto._aes_ecb_encrypt(ZERO_KEY, plain)
        url = replace_param(AN_PICC_URL, "picc_data", picc.hex().upper())
        with pytest.raises(BadSunMac, match="UID and counter"):
            SunVerifier(file_read_key=ZERO_KEY, meta_read_key=ZERO_KEY).verify(url)
    for tag in (0xC4, 0xF7, 0xD7):  # wrong UID length, RFU bits set
        picc = ntag424.crypto._aes_ecb_encrypt(ZERO_KEY, bytes([tag]) + bytes(15))
        with pytest.raises(BadSunMac, match="PICCDataTag"):
            decrypt_picc_data(ZERO_KEY, picc)


# ----------------------------------------------------------------------------- key lookup


def test_unknown_badge_from_mapping_and_callable() -> None:
    known = {H("04DE5F1EACC040"): ZERO_KEY}
    by_mapping = SunVerifier(file_read_key=known, meta_read_key=ZERO_KEY)
    assert by_mapping.verify(AN_PICC_URL).counter == 61
    with pytest.raises(UnknownBadge) as caught:
        by_mapping.verify(PLAIN_URL)
    assert caught.value.reason is Reason.UNKNOWN_BADGE
    assert "041E3C8A2D6B80" in str(caught.value)

    asked: list[bytes] = []

    def lookup(uid: bytes) -> bytes | None:
        asked.append(uid)
        return None

    with pytest.raises(UnknownBadge):
        SunVerifier(file_read_key=lookup, meta_read_key=ZERO_KEY).verify(AN_PICC_URL)
    assert asked == [H("04DE5F1EACC040")]


def test_lookup_returning_a_bad_key_is_a_configuration_error() -> None:
    verifier = SunVerifier(file_read_key=lambda _uid: b"short", meta_read_key=ZERO_KEY)
    with pytest.raises(ValueError, match="file_read_key") as caught:
        verifier.verify(AN_PICC_URL)
    assert not isinstance(caught.value, SunError)


# ----------------------------------------------------------------------------- replay


@pytest.mark.parametrize(
    ("last", "counter", "verdict"),
    [
        (None, 0, None),
        (None, 61, None),
        (60, 61, None),
        (61, 61, Reason.REPLAYED),
        (62, 61, Reason.REPLAYED),
        (0xFFFFFE, 0xFFFFFF, None),
        (0xFFFFFF, 0, Reason.REPLAYED),
    ],
)
def test_counter_verdict(last: int | None, counter: int, verdict: Reason | None) -> None:
    assert counter_verdict(last, counter) is verdict


# ----------------------------------------------------------------------------- emulator


def test_emulator_refuses_layouts_a_tag_cannot_produce() -> None:
    common = {"uid": H("04A1B2C3D4E5F6"), "counter": 1, "file_read_key": ZERO_KEY}
    with pytest.raises(ValueError, match="mac_input_from"):
        emulate_sun_url("https://a/", file_data=bytes(16), **common)
    with pytest.raises(ValueError, match="file_data"):
        emulate_sun_url("https://a/", file_data=bytes(15), settings=ENC_SETTINGS, **common)
    with pytest.raises(ValueError, match="counter"):
        emulate_sun_url("https://a/", **{**common, "counter": 1 << 24})
    with pytest.raises(ValueError, match="uid"):
        emulate_sun_url("https://a/", **{**common, "uid": bytes(4)})
    with pytest.raises(ValueError, match="picc_padding"):
        emulate_sun_url("https://a/", meta_read_key=ZERO_KEY, picc_padding=bytes(4), **common)
    with pytest.raises(ValueError, match="fragment"):
        emulate_sun_url("https://a/#x", **common)


def test_emulated_padding_is_random() -> None:
    urls = {
        emulate_sun_url(
            "https://a/",
            uid=H("04A1B2C3D4E5F6"),
            counter=1,
            file_read_key=ZERO_KEY,
            meta_read_key=ZERO_KEY,
        )
        for _ in range(4)
    }
    assert len(urls) == 4
