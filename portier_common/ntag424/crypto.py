"""The cryptography of SDM (NT4H2421Gx §9.3, AN12196): AES-128 and CMAC primitives,
PICCData decryption, session keys, the truncated MAC (MACt) and file-data decryption.

The names with a leading underscore are this package's own (the parser, the verifier and
the emulator share them); the rest is re-exported by :mod:`portier_common.ntag424`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from portier_common.ntag424.errors import BadSunMac, MalformedSun

__all__ = [
    "COUNTER_SIZE",
    "KEY_SIZE",
    "MAC_SIZE",
    "MAX_COUNTER",
    "PICC_DATA_SIZE",
    "UID_SIZE",
    "PiccData",
    "decrypt_file_data",
    "decrypt_picc_data",
    "sdm_mac",
    "session_keys",
    "truncate_mac",
]

KEY_SIZE = 16
UID_SIZE = 7
MAC_SIZE = 8
COUNTER_SIZE = 3
MAX_COUNTER = 0xFFFFFF
#: PICCData in AES mode is one AES block; LRP mode prefixes an 8-byte PICCRand.
PICC_DATA_SIZE = 16

# Session vector prefixes (NT4H2421Gx §9.3.9 / AN12196 §3.3): label, counter
# 0001h and length 0080h (128 bits) of the NIST SP 800-108 counter-mode KDF.
_SV1_PREFIX = bytes.fromhex("C33C00010080")
_SV2_PREFIX = bytes.fromhex("3CC300010080")

# PICCDataTag bits (NT4H2421Gx §9.3.4): bit 7 UID mirroring, bit 6 SDMReadCtr
# mirroring, bits 5-4 RFU, bits 3-0 UID length.
_TAG_UID_MIRROR = 0x80
_TAG_CTR_MIRROR = 0x40
_TAG_RFU = 0x30
_TAG_UID_LENGTH = 0x0F

_ZERO_BLOCK = bytes(16)


@dataclass(frozen=True)
class PiccData:
    """Decrypted PICCData: what the tag chose to mirror.

    ``uid`` is None unless UID mirroring is on, ``counter`` None unless
    SDMReadCtr mirroring is on.
    """

    tag: int
    uid: bytes | None
    counter: int | None

    @property
    def uid_mirrored(self) -> bool:
        """Returns PICCDataTag bit 7 (UID mirroring)."""
        return bool(self.tag & _TAG_UID_MIRROR)

    @property
    def counter_mirrored(self) -> bool:
        """Returns PICCDataTag bit 6 (SDMReadCtr mirroring)."""
        return bool(self.tag & _TAG_CTR_MIRROR)

    @property
    def uid_length(self) -> int:
        """Returns PICCDataTag bits 3-0 (the UID length in bytes)."""
        return self.tag & _TAG_UID_LENGTH


def _check_key(name: str, key: object) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview) or len(key) != KEY_SIZE:
        raise ValueError(f"{name}: expected a {KEY_SIZE}-byte AES-128 key")
    return bytes(key)


def _aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def _cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def _counter_bytes(counter: int) -> bytes:
    if not isinstance(counter, int) or not 0 <= counter <= MAX_COUNTER:
        raise ValueError(f"counter: expected an integer 0..{MAX_COUNTER}, got {counter!r}")
    return counter.to_bytes(COUNTER_SIZE, "little")


def _check_uid(uid: object) -> bytes:
    if not isinstance(uid, bytes | bytearray) or len(uid) != UID_SIZE:
        raise ValueError(f"uid: expected {UID_SIZE} bytes")
    return bytes(uid)


def decrypt_picc_data(meta_read_key: bytes, picc_data: bytes) -> PiccData:
    """Decrypt and parse encrypted PICCData (AES mode).

    PICCData is one AES block, CBC with a zero IV under the SDM meta-read key
    (AN12196 §3.4.2): PICCDataTag || UID || SDMReadCtr (little-endian) ||
    random padding.

    Returns:
        The parsed :class:`PiccData`.

    Raises:
        MalformedSun: ``picc_data`` is not 16 bytes.
        BadSunMac: the plaintext is not a consistent PICCData (RFU bits set, or
            a UID length other than 7): the data was altered or the key is wrong.
        ValueError: ``meta_read_key`` is not a 16-byte key.
    """
    key = _check_key("meta_read_key", meta_read_key)
    if len(picc_data) != PICC_DATA_SIZE:
        raise MalformedSun(f"PICCData: expected {PICC_DATA_SIZE} bytes, got {len(picc_data)}")
    # One block with a zero IV: CBC decryption is exactly ECB decryption.
    plain = _aes_ecb_decrypt(key, bytes(picc_data))
    tag = plain[0]
    if tag & _TAG_RFU:
        raise BadSunMac("PICCData does not decrypt to a valid PICCDataTag")
    offset = 1
    uid: bytes | None = None
    if tag & _TAG_UID_MIRROR:
        if tag & _TAG_UID_LENGTH != UID_SIZE:
            raise BadSunMac("PICCData does not decrypt to a valid PICCDataTag")
        uid = plain[offset : offset + UID_SIZE]
        offset += UID_SIZE
    counter: int | None = None
    if tag & _TAG_CTR_MIRROR:
        counter = int.from_bytes(plain[offset : offset + COUNTER_SIZE], "little")
    return PiccData(tag=tag, uid=uid, counter=counter)


def session_keys(file_read_key: bytes, uid: bytes, counter: int) -> tuple[bytes, bytes]:
    """Derive the SDM session keys for one tap (AN12196 §3.3).

    Returns:
        ``(KSesSDMFileReadENC, KSesSDMFileReadMAC)``: CMAC under the file-read
        key of SV1 = C33C 0001 0080 || UID || SDMReadCtr and of SV2 = 3CC3 0001
        0080 || UID || SDMReadCtr (counter little-endian).

    Raises:
        ValueError: a key that is not 16 bytes, a UID that is not 7 bytes or a
            counter outside 0..0xFFFFFF.
    """
    key = _check_key("file_read_key", file_read_key)
    tail = _check_uid(uid) + _counter_bytes(counter)
    return _cmac(key, _SV1_PREFIX + tail), _cmac(key, _SV2_PREFIX + tail)


def _session_mac_key(key: bytes, uid: bytes, counter: int) -> bytes:
    return _cmac(key, _SV2_PREFIX + uid + counter.to_bytes(COUNTER_SIZE, "little"))


def _session_enc_key(key: bytes, uid: bytes, counter: int) -> bytes:
    return _cmac(key, _SV1_PREFIX + uid + counter.to_bytes(COUNTER_SIZE, "little"))


def truncate_mac(full_mac: bytes) -> bytes:
    """Returns the 8 odd-indexed bytes (1, 3, ... 15) of a 16-byte CMAC: NXP's MACt."""
    if len(full_mac) != 16:
        raise ValueError("full_mac: expected 16 bytes")
    return bytes(full_mac[1::2])


def sdm_mac(session_mac_key: bytes, mac_input: bytes) -> bytes:
    """Compute the SDMMAC a tag mirrors.

    Returns:
        MACt (8 bytes) of the AES-CMAC of ``mac_input`` under
        KSesSDMFileReadMAC.

    Raises:
        ValueError: ``session_mac_key`` is not 16 bytes.
    """
    key = _check_key("session_mac_key", session_mac_key)
    return truncate_mac(_cmac(key, bytes(mac_input)))


def decrypt_file_data(session_enc_key: bytes, counter: int, enc_file_data: bytes) -> bytes:
    """Decrypt SDMENCFileData (AN12196 §3.4.3).

    AES-128 CBC under KSesSDMFileReadENC with IV = E(KSesSDMFileReadENC,
    SDMReadCtr || 13 zero bytes).

    Returns:
        The plaintext, as long as the ciphertext.

    Raises:
        MalformedSun: the data is empty or not a whole number of AES blocks.
        ValueError: a key that is not 16 bytes or a counter out of range.
    """
    key = _check_key("session_enc_key", session_enc_key)
    if not enc_file_data or len(enc_file_data) % 16:
        raise MalformedSun("SDMENCFileData: expected a non-empty multiple of 16 bytes")
    iv = _aes_ecb_encrypt(key, _counter_bytes(counter) + bytes(16 - COUNTER_SIZE))
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(bytes(enc_file_data)) + decryptor.finalize()
