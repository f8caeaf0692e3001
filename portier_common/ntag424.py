"""NTAG 424 DNA Secure Unique NFC (SUN) message verification.

A bare badge UID can be read and cloned by anyone with a phone. An NXP NTAG 424
DNA instead writes, on every tap, a fresh NDEF URL whose query string carries
the badge UID and its read counter (encrypted, or mirrored in clear) and a
truncated AES-CMAC computed with a key that never leaves the tag. This module
checks such a URL offline, following NXP AN12196 ("NTAG 424 DNA and NTAG 424
DNA TagTamper features and hints") and the NT4H2421Gx data sheet §9.3 (Secure
Dynamic Messaging):

1. :func:`parse_sun_url` splits the URL into its parts (parameter names are
   configurable with :class:`SunSettings`), or raises :class:`MalformedSun`.
2. Encrypted mode: :func:`decrypt_picc_data` decrypts PICCData with the SDM
   meta-read key (AES-128 CBC, zero IV) into PICCDataTag, UID (7 bytes) and
   SDMReadCtr (3 bytes, little-endian). Plain mode: UID and counter are read
   from their own parameters (the counter mirrored as big-endian hex).
3. :func:`session_keys` derives the SDM session keys from the SDM file-read
   key: ``KSesSDMFileReadMAC = CMAC(K, 3CC3 0001 0080 || UID || SDMReadCtr)``
   (SV2) and ``KSesSDMFileReadENC = CMAC(K, C33C 0001 0080 || ...)`` (SV1).
4. :func:`sdm_mac` computes the CMAC over the configured MAC input (empty, or
   the ASCII text from a parameter's value up to the MAC value) and keeps its
   8 odd-indexed bytes (MACt); the comparison is constant-time.
5. Only once the MAC verifies is encrypted file data (SDMENCFileData)
   decrypted (:func:`decrypt_file_data`).

:class:`SunVerifier` is the one entry point doing all of this; it returns a
:class:`SunTap` (UID, counter, file data) or raises a :class:`SunError` whose
``reason`` is an :class:`portier_common.reasons.Reason`. Replay protection is a
separate, pure decision (:func:`counter_verdict`, :class:`ReplayGuard`): the
last accepted counter per UID is stored by whoever owns durable storage and
injected here.

Per-card keys can be derived from a master key with AN10922 AES-128
diversification (:func:`diversify_aes128`, :class:`DiversifiedKeys`). Only the
file-read (MAC) key can be per card: the meta-read key must be shared by every
badge a door reads, because the UID is only known after decrypting with it.

LRP mode (the tag's alternative to AES for SDM) is not supported: its 24-byte
PICCData is refused as malformed.

:func:`emulate_sun_url` computes what a tag would write for given keys, UID and
counter; the simulators and the tests use it in place of a real tag.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from portier_common.reasons import Reason

log = logging.getLogger(__name__)

__all__ = [
    "KEY_SIZE",
    "MAC_SIZE",
    "MAX_COUNTER",
    "UID_SIZE",
    "BadSunMac",
    "DiversifiedKeys",
    "KeyLookup",
    "MalformedSun",
    "PiccData",
    "ReplayGuard",
    "ReplayedSun",
    "SunError",
    "SunMessage",
    "SunSettings",
    "SunTap",
    "SunVerifier",
    "UnknownBadge",
    "counter_verdict",
    "decrypt_file_data",
    "decrypt_picc_data",
    "diversify_aes128",
    "emulate_sun_url",
    "parse_sun_url",
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
_LRP_PICC_DATA_SIZE = 24
#: The NDEF file an NTAG 424 DNA mirrors into holds 256 bytes; phones add the
#: URI prefix back. Anything much longer is not from a tag, and capping it bounds
#: the work an attacker can make the verifier do.
MAX_URL_LENGTH = 1024
MAX_FILE_DATA_SIZE = 128

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

_HEX = re.compile(r"[0-9A-Fa-f]*")
_PARAM_NAME = re.compile(r"[A-Za-z0-9._~-]{1,32}")
_ZERO_BLOCK = bytes(16)


# --------------------------------------------------------------------------- errors


class SunError(ValueError):
    """A SUN message was refused; ``reason`` says why, as a :class:`Reason` code.

    Subclasses :class:`ValueError`, so a caller without SUN-specific handling
    still treats it as bad input. The message is for logs; it never contains
    key material.
    """

    reason: ClassVar[Reason] = Reason.MALFORMED


class MalformedSun(SunError):
    """The input is not a SUN message this verifier can read (``Reason.MALFORMED``)."""

    reason = Reason.MALFORMED


class BadSunMac(SunError):
    """The MAC or the encrypted PICCData does not verify (``Reason.BAD_SIGNATURE``).

    Raised for a forged or altered message, and also for a genuine tag keyed
    with other keys than the ones configured.
    """

    reason = Reason.BAD_SIGNATURE


class UnknownBadge(SunError):
    """No file-read key is known for the badge's UID (``Reason.UNKNOWN_BADGE``)."""

    reason = Reason.UNKNOWN_BADGE


class ReplayedSun(SunError):
    """The read counter did not increase since the last accepted tap (``Reason.REPLAYED``)."""

    reason = Reason.REPLAYED


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SunSettings:
    """How the badge's URL is laid out: it must match the tag's SDM configuration.

    Attributes:
        picc_param: query parameter holding encrypted PICCData (32 hex digits).
        enc_param: query parameter holding SDMENCFileData (hex), if mirrored.
        mac_param: query parameter holding the SDMMAC (16 hex digits).
        uid_param: query parameter of the plain UID mirror (14 hex digits).
        ctr_param: query parameter of the plain SDMReadCtr mirror (6 hex digits,
            most significant byte first, as the tag mirrors it).
        mac_input_from: ``None`` when the MAC is computed over an empty input
            (SDMMACInputOffset == SDMMACOffset); otherwise the name of the
            query parameter whose value starts the MAC input (SDMMACInputOffset
            pointing at it), which then runs up to the MAC value, separators and
            the ``cmac=`` text included. Encrypted file data must lie inside it.
        accept_plain: whether UID and counter mirrored in clear are accepted.
            They are as hard to forge as the encrypted form (the MAC is the
            same) but let any reader track the badge.

    Raises:
        ValueError: naming the field, when a name is not a plain URL query word
            or two parameters share a name.
    """

    picc_param: str = "picc_data"
    enc_param: str = "enc"
    mac_param: str = "cmac"
    uid_param: str = "uid"
    ctr_param: str = "ctr"
    mac_input_from: str | None = None
    accept_plain: bool = True

    def __post_init__(self) -> None:
        names = {
            "picc_param": self.picc_param,
            "enc_param": self.enc_param,
            "mac_param": self.mac_param,
            "uid_param": self.uid_param,
            "ctr_param": self.ctr_param,
        }
        seen: dict[str, str] = {}
        for field_name, value in names.items():
            if not isinstance(value, str) or not _PARAM_NAME.fullmatch(value):
                raise ValueError(
                    f"SunSettings.{field_name}: {value!r} is not a query parameter name "
                    "(1-32 of A-Z a-z 0-9 . _ ~ -)"
                )
            if value in seen:
                raise ValueError(
                    f"SunSettings.{field_name}: {value!r} is already used by {seen[value]}"
                )
            seen[value] = field_name
        if self.mac_input_from is not None:
            if not isinstance(self.mac_input_from, str) or not _PARAM_NAME.fullmatch(
                self.mac_input_from
            ):
                raise ValueError(
                    f"SunSettings.mac_input_from: {self.mac_input_from!r} is not a query "
                    "parameter name"
                )
            if self.mac_input_from == self.mac_param:
                raise ValueError(
                    "SunSettings.mac_input_from: the MAC input cannot start at the MAC itself; "
                    "use None for an empty MAC input"
                )
        if not isinstance(self.accept_plain, bool):
            raise ValueError(
                f"SunSettings.accept_plain: expected a bool, got {self.accept_plain!r}"
            )


_DEFAULT_SETTINGS = SunSettings()


# --------------------------------------------------------------------------- parsed data


@dataclass(frozen=True)
class SunMessage:
    """A SUN URL split into its parts; nothing in it is verified yet.

    Exactly one of ``picc_data`` (encrypted mode) or ``uid`` + ``counter``
    (plain mode) is set. ``mac_input`` is the exact ASCII text the tag MACed.
    """

    mac: bytes
    mac_input: bytes = b""
    picc_data: bytes | None = None
    uid: bytes | None = None
    counter: int | None = None
    enc_file_data: bytes | None = None

    @property
    def encrypted(self) -> bool:
        """Returns True when UID and counter travel encrypted (PICCData)."""
        return self.picc_data is not None


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


@dataclass(frozen=True)
class SunTap:
    """A verified tap: the badge's UID, its read counter and any decrypted file data.

    The counter is authentic but not yet checked for replay: see :class:`ReplayGuard`.
    """

    uid: bytes
    counter: int
    file_data: bytes | None = None
    encrypted: bool = True

    @property
    def uid_hex(self) -> str:
        """Returns the UID as upper-case hex, the form the tag mirrors."""
        return self.uid.hex().upper()


# --------------------------------------------------------------------------- primitives


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


# --------------------------------------------------------------------------- AN10922


def _dbl(block: bytes) -> bytes:
    # Doubling in GF(2^128) as CMAC's subkey generation defines it (NIST SP 800-38B).
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value & ((1 << 128) - 1)) ^ 0x87
    return value.to_bytes(16, "big")


def _cmac_subkeys(key: bytes) -> tuple[bytes, bytes]:
    k1 = _dbl(_aes_ecb_encrypt(key, _ZERO_BLOCK))
    return k1, _dbl(k1)


def diversify_aes128(
    master_key: bytes,
    uid: bytes,
    application_id: bytes = b"",
    system_identifier: bytes = b"",
) -> bytes:
    """Derive a per-card AES-128 key from a master key (NXP AN10922 §2.2).

    The diversification input is M = UID || application id || system
    identifier (1 to 31 bytes). AN10922 CMACs ``01h || M`` padded to 32 bytes
    (not to 16 as RFC 4493 would for a short M), XORing the last block with the
    CMAC subkey K2 when padding was added and K1 when not.

    Returns:
        The 16-byte diversified key.

    Raises:
        ValueError: the master key is not 16 bytes or M is empty or over 31 bytes.
    """
    key = _check_key("master_key", master_key)
    data = bytes(uid) + bytes(application_id) + bytes(system_identifier)
    if not 1 <= len(data) <= 31:
        raise ValueError(
            "diversification input (uid + application_id + system_identifier) "
            f"must be 1..31 bytes, got {len(data)}"
        )
    block = b"\x01" + data
    k1, k2 = _cmac_subkeys(key)
    if len(block) < 32:
        block = (block + b"\x80").ljust(32, b"\x00")
        last_key = k2
    else:
        last_key = k1
    last = bytes(a ^ b for a, b in zip(block[16:], last_key, strict=True))
    encryptor = Cipher(algorithms.AES(key), modes.CBC(_ZERO_BLOCK)).encryptor()
    out = encryptor.update(block[:16] + last) + encryptor.finalize()
    return out[16:]


@dataclass(frozen=True, repr=False)
class DiversifiedKeys:
    """A file-read key lookup that diversifies a master key per UID (AN10922).

    Use an instance as :class:`SunVerifier`'s ``file_read_key``. It answers
    for every UID, so it never yields :class:`UnknownBadge`: whether the badge is
    enrolled is the credential cache's business. Pick a ``system_identifier``
    per site and key role so one master key never yields the same card key
    twice.

    Raises:
        ValueError: naming the field, for a master key that is not 16 bytes or
            identifiers too long to leave room for a 7-byte UID.
    """

    master_key: bytes
    application_id: bytes = b""
    system_identifier: bytes = b""

    def __post_init__(self) -> None:
        _check_key("DiversifiedKeys.master_key", self.master_key)
        if len(self.application_id) + len(self.system_identifier) > 31 - UID_SIZE:
            raise ValueError(
                "DiversifiedKeys.system_identifier: application_id + system_identifier must "
                f"be at most {31 - UID_SIZE} bytes"
            )

    def __call__(self, uid: bytes) -> bytes:
        """Returns the diversified key for ``uid``."""
        return diversify_aes128(self.master_key, uid, self.application_id, self.system_identifier)

    def __repr__(self) -> str:
        return f"DiversifiedKeys(system_identifier={self.system_identifier!r})"


# --------------------------------------------------------------------------- parsing


def _unhex(name: str, value: str, size: int | None = None) -> bytes:
    if not _HEX.fullmatch(value):
        raise MalformedSun(f"{name}: not hexadecimal")
    if size is not None and len(value) != 2 * size:
        raise MalformedSun(f"{name}: expected {2 * size} hex digits, got {len(value)}")
    if len(value) % 2:
        raise MalformedSun(f"{name}: odd number of hex digits")
    return bytes.fromhex(value)


def _query_params(url: str, wanted: set[str]) -> dict[str, tuple[int, str]]:
    """Returns {name: (offset of the value in url, value)} for the wanted names."""
    hash_at = url.find("#")
    base = url if hash_at < 0 else url[:hash_at]
    query_at = base.find("?")
    if query_at < 0:
        raise MalformedSun("no query string")
    found: dict[str, tuple[int, str]] = {}
    position = query_at + 1
    for piece in base[query_at + 1 :].split("&"):
        name, separator, value = piece.partition("=")
        if name in wanted:
            if name in found:
                # Two copies would let an attacker choose which one each step reads.
                raise MalformedSun(f"parameter {name!r} appears more than once")
            found[name] = (position + len(name) + len(separator), value)
        position += len(piece) + 1
    return found


def parse_sun_url(url: object, settings: SunSettings | None = None) -> SunMessage:
    """Split a SUN URL into its parts, without any cryptography.

    Accepts the URL as text (or ASCII bytes). Parameters are found by name in
    the query string; the values are kept exactly as the tag wrote them (no
    percent-decoding: the MAC covers the raw text).

    Returns:
        A :class:`SunMessage`.

    Raises:
        MalformedSun: for anything that is not a well-formed SUN URL under
            ``settings``: no query string, a missing, repeated, non-hex or
            wrong-length parameter, both or neither of the encrypted and plain
            forms, plain mirroring when not accepted, LRP-mode PICCData, or
            encrypted file data outside the MAC input.
    """
    settings = settings or _DEFAULT_SETTINGS
    if isinstance(url, bytes | bytearray):
        try:
            url = bytes(url).decode("ascii")
        except UnicodeDecodeError:
            raise MalformedSun("URL is not ASCII") from None
    if not isinstance(url, str):
        raise MalformedSun(f"expected the URL as text, got {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        raise MalformedSun(f"URL longer than {MAX_URL_LENGTH} characters")
    if not url.isascii():
        raise MalformedSun("URL is not ASCII")

    wanted = {
        settings.picc_param,
        settings.enc_param,
        settings.mac_param,
        settings.uid_param,
        settings.ctr_param,
    }
    if settings.mac_input_from is not None:
        wanted.add(settings.mac_input_from)
    params = _query_params(url, wanted)

    if settings.mac_param not in params:
        raise MalformedSun(f"no {settings.mac_param!r} parameter (SDMMAC)")
    mac_at, mac_text = params[settings.mac_param]
    mac = _unhex(settings.mac_param, mac_text, MAC_SIZE)

    if settings.mac_input_from is None:
        input_at = mac_at
    else:
        if settings.mac_input_from not in params:
            raise MalformedSun(f"no {settings.mac_input_from!r} parameter to start the MAC input")
        input_at = params[settings.mac_input_from][0]
        if input_at > mac_at:
            raise MalformedSun(
                f"{settings.mac_input_from!r} comes after {settings.mac_param!r}: "
                "the MAC input would be negative"
            )
    mac_input = url[input_at:mac_at].encode("ascii")

    enc_file_data: bytes | None = None
    if settings.enc_param in params:
        enc_at, enc_text = params[settings.enc_param]
        enc_file_data = _unhex(settings.enc_param, enc_text)
        if not enc_file_data or len(enc_file_data) % 16 or len(enc_file_data) > MAX_FILE_DATA_SIZE:
            raise MalformedSun(
                f"{settings.enc_param}: expected 16 to {MAX_FILE_DATA_SIZE} bytes in whole "
                "AES blocks"
            )
        if not (input_at <= enc_at and enc_at + len(enc_text) <= mac_at):
            # The data sheet requires this; without it the file data would be
            # unauthenticated and could be swapped freely.
            raise MalformedSun(
                f"{settings.enc_param}: encrypted file data is outside the MAC input"
            )

    has_plain = settings.uid_param in params or settings.ctr_param in params
    if settings.picc_param in params:
        if has_plain:
            raise MalformedSun("both encrypted PICCData and a plain UID/counter mirror")
        picc_text = params[settings.picc_param][1]
        if len(picc_text) == 2 * _LRP_PICC_DATA_SIZE and _HEX.fullmatch(picc_text):
            raise MalformedSun("LRP-mode PICCData is not supported; configure the tag for AES")
        picc_data = _unhex(settings.picc_param, picc_text, PICC_DATA_SIZE)
        return SunMessage(
            mac=mac, mac_input=mac_input, picc_data=picc_data, enc_file_data=enc_file_data
        )
    if not has_plain:
        raise MalformedSun(
            f"neither {settings.picc_param!r} nor {settings.uid_param!r}/{settings.ctr_param!r}"
        )
    if not settings.accept_plain:
        raise MalformedSun("plain UID/counter mirroring is not accepted here")
    if settings.uid_param not in params or settings.ctr_param not in params:
        raise MalformedSun(
            f"plain mirroring needs both {settings.uid_param!r} and {settings.ctr_param!r}"
        )
    uid = _unhex(settings.uid_param, params[settings.uid_param][1], UID_SIZE)
    # The tag mirrors the counter most significant byte first, unlike in SV1/SV2.
    counter = int.from_bytes(
        _unhex(settings.ctr_param, params[settings.ctr_param][1], COUNTER_SIZE), "big"
    )
    return SunMessage(
        mac=mac, mac_input=mac_input, uid=uid, counter=counter, enc_file_data=enc_file_data
    )


# --------------------------------------------------------------------------- verification

#: Returns the SDM file-read key for a 7-byte UID, or None when the badge is unknown.
KeyLookup = Callable[[bytes], bytes | None]


class SunVerifier:
    """Verifies SUN URLs against one door's keys and URL layout.

    Args:
        file_read_key: the SDM file-read (MAC) key: one key for every badge,
            a ``Mapping`` from UID bytes to key, or a callable ``uid -> key |
            None`` (e.g. :class:`DiversifiedKeys`, or a credential-cache query).
        meta_read_key: the SDM meta-read key that decrypts PICCData; ``None``
            accepts plain mirroring only.
        settings: the URL layout (:class:`SunSettings`).

    Raises:
        ValueError: naming the argument, for a key that is not 16 bytes or a
            lookup of the wrong type.

    The verifier is stateless and thread-safe as long as the lookup is.
    """

    def __init__(
        self,
        *,
        file_read_key: bytes | Mapping[bytes, bytes] | KeyLookup,
        meta_read_key: bytes | None = None,
        settings: SunSettings | None = None,
    ) -> None:
        self._meta_read_key = (
            None if meta_read_key is None else _check_key("meta_read_key", meta_read_key)
        )
        if isinstance(file_read_key, bytes | bytearray):
            static = _check_key("file_read_key", file_read_key)
            self._lookup: KeyLookup = lambda _uid: static
        elif isinstance(file_read_key, Mapping):
            self._lookup = file_read_key.get
        elif callable(file_read_key):
            self._lookup = file_read_key
        else:
            raise ValueError(
                "file_read_key: expected a 16-byte key, a Mapping of UID to key or a callable"
            )
        if settings is not None and not isinstance(settings, SunSettings):
            raise ValueError("settings: expected a SunSettings")
        self.settings = settings or _DEFAULT_SETTINGS

    def __repr__(self) -> str:
        return (
            f"SunVerifier(settings={self.settings!r}, encrypted={self._meta_read_key is not None})"
        )

    def verify(self, url: object) -> SunTap:
        """Parse and verify a SUN URL.

        Returns:
            The verified :class:`SunTap`. Its counter is not yet checked for
            replay (:class:`ReplayGuard`).

        Raises:
            MalformedSun: unreadable input (see :func:`parse_sun_url`), or
                encrypted PICCData when no meta-read key is configured.
            BadSunMac: PICCData or MAC does not verify.
            UnknownBadge: the key lookup does not know the UID.
            ValueError: (not a :class:`SunError`) the key lookup returned
                something that is not a 16-byte key: a configuration error.
        """
        return self.verify_message(parse_sun_url(url, self.settings))

    def verify_message(self, message: SunMessage) -> SunTap:
        """Verify an already parsed message; returns and raises as :meth:`verify`."""
        if message.picc_data is not None:
            if self._meta_read_key is None:
                raise MalformedSun("encrypted PICCData but no meta-read key is configured")
            picc = decrypt_picc_data(self._meta_read_key, message.picc_data)
            if picc.uid is None or picc.counter is None:
                # Without both, a tap cannot name its badge or be checked for replay;
                # random plaintext from a wrong key or altered data lands here too.
                raise BadSunMac(
                    "PICCData does not decrypt to a UID and counter (altered, wrong meta-read "
                    "key, or tag without UID and counter mirroring)"
                )
            uid, counter = picc.uid, picc.counter
        elif message.uid is not None and message.counter is not None:
            uid, counter = message.uid, message.counter
        else:
            raise MalformedSun("message carries neither PICCData nor a plain UID and counter")

        key = self._lookup(uid)
        if key is None:
            raise UnknownBadge(f"no file-read key for badge {uid.hex().upper()}")
        key = _check_key("file_read_key (from the lookup)", key)

        expected = truncate_mac(_cmac(_session_mac_key(key, uid, counter), message.mac_input))
        if not hmac.compare_digest(expected, message.mac):
            log.debug("SUN MAC mismatch for badge %s", uid.hex().upper())
            raise BadSunMac("SDMMAC does not verify")

        file_data = None
        if message.enc_file_data is not None:
            file_data = decrypt_file_data(
                _session_enc_key(key, uid, counter), counter, message.enc_file_data
            )
        return SunTap(uid=uid, counter=counter, file_data=file_data, encrypted=message.encrypted)


# --------------------------------------------------------------------------- replay


def counter_verdict(last_accepted: int | None, counter: int) -> Reason | None:
    """Decide whether a tap's read counter is fresh.

    Returns:
        None when ``counter`` is strictly greater than ``last_accepted`` (or no
        tap of this badge was accepted before); ``Reason.REPLAYED`` otherwise.
    """
    if last_accepted is None or counter > last_accepted:
        return None
    return Reason.REPLAYED


class ReplayGuard:
    """Refuses SUN taps whose read counter did not strictly increase.

    Persistence is injected, so this stays pure:

    Args:
        last_accepted: the last accepted counter per UID, as a ``Mapping``
            (``uid -> int``) or a callable ``uid -> int | None``.
        record: optional callable ``(uid, counter) -> bool | None`` that stores
            an accepted counter. The store should make it a compare-and-set
            (update only if the stored counter is lower) and return False when
            it did not update, so two concurrent taps of one message cannot both
            pass; False is then reported as a replay.
    """

    def __init__(
        self,
        last_accepted: Mapping[bytes, int] | Callable[[bytes], int | None],
        record: Callable[[bytes, int], bool | None] | None = None,
    ) -> None:
        if isinstance(last_accepted, Mapping):
            self._last: Callable[[bytes], int | None] = last_accepted.get
        elif callable(last_accepted):
            self._last = last_accepted
        else:
            raise ValueError("last_accepted: expected a Mapping or a callable")
        if record is not None and not callable(record):
            raise ValueError("record: expected a callable or None")
        self._record = record

    def check(self, uid: bytes, counter: int) -> Reason | None:
        """Returns None when ``counter`` is fresh for ``uid``, ``Reason.REPLAYED`` otherwise.

        Reads only; records nothing.
        """
        return counter_verdict(self._last(uid), counter)

    def check_and_record(self, tap: SunTap) -> Reason | None:
        """Check a verified tap and, when fresh, record its counter.

        Returns:
            None when the tap is fresh (and recorded, if a ``record`` callable was
            given and did not return False); ``Reason.REPLAYED`` otherwise.
        """
        verdict = self.check(tap.uid, tap.counter)
        if verdict is not None:
            return verdict
        if self._record is not None and self._record(tap.uid, tap.counter) is False:
            return Reason.REPLAYED
        return None

    def require_fresh(self, tap: SunTap) -> None:
        """Like :meth:`check_and_record`, but raises instead of returning a reason.

        Raises:
            ReplayedSun: the counter did not increase.
        """
        if self.check_and_record(tap) is not None:
            raise ReplayedSun(f"badge {tap.uid_hex} counter {tap.counter} was already seen")


# --------------------------------------------------------------------------- emulation


def emulate_sun_url(
    base_url: str,
    *,
    uid: bytes,
    counter: int,
    file_read_key: bytes,
    meta_read_key: bytes | None = None,
    file_data: bytes | None = None,
    settings: SunSettings | None = None,
    picc_padding: bytes | None = None,
) -> str:
    """Build the URL an NTAG 424 DNA would write for one tap, for simulators and tests.

    With ``meta_read_key`` the UID and counter are encrypted into PICCData
    (PICCDataTag C7h, then ``picc_padding`` or 5 random bytes, as the tag
    pads); without it they are mirrored in clear. ``file_data`` (whole AES
    blocks) is encrypted as SDMENCFileData and needs ``settings.mac_input_from``
    so that the MAC covers it. Parameters are appended to ``base_url`` in the
    order PICCData or UID/counter, file data, MAC.

    Returns:
        The URL, hex in upper case as the tag writes it.

    Raises:
        ValueError: bad keys, UID, counter, padding or file data, or a layout
            the tag could not produce.
    """
    settings = settings or _DEFAULT_SETTINGS
    if "#" in base_url:
        raise ValueError("base_url: a tag's URL has no fragment")
    key = _check_key("file_read_key", file_read_key)
    uid = _check_uid(uid)
    counter_le = _counter_bytes(counter)
    parts: list[str] = []
    if meta_read_key is not None:
        meta = _check_key("meta_read_key", meta_read_key)
        padding = os.urandom(5) if picc_padding is None else bytes(picc_padding)
        if len(padding) != PICC_DATA_SIZE - 1 - UID_SIZE - COUNTER_SIZE:
            raise ValueError("picc_padding: expected 5 bytes")
        tag = _TAG_UID_MIRROR | _TAG_CTR_MIRROR | UID_SIZE
        picc = _aes_ecb_encrypt(meta, bytes([tag]) + uid + counter_le + padding)
        parts.append(f"{settings.picc_param}={picc.hex().upper()}")
    else:
        parts.append(f"{settings.uid_param}={uid.hex().upper()}")
        parts.append(f"{settings.ctr_param}={counter:06X}")
    if file_data is not None:
        if not file_data or len(file_data) % 16 or len(file_data) > MAX_FILE_DATA_SIZE:
            raise ValueError(
                f"file_data: expected 16 to {MAX_FILE_DATA_SIZE} bytes in whole blocks"
            )
        if settings.mac_input_from is None:
            raise ValueError("file_data needs settings.mac_input_from so the MAC covers it")
        enc_key = _session_enc_key(key, uid, counter)
        iv = _aes_ecb_encrypt(enc_key, counter_le + bytes(16 - COUNTER_SIZE))
        encryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
        encrypted = encryptor.update(bytes(file_data)) + encryptor.finalize()
        parts.append(f"{settings.enc_param}={encrypted.hex().upper()}")
    separator = "&" if "?" in base_url else "?"
    url = f"{base_url}{separator}{'&'.join(parts)}&{settings.mac_param}="
    if settings.mac_input_from is None:
        mac_input = b""
    else:
        found = _query_params(url, {settings.mac_input_from})
        if settings.mac_input_from not in found:
            raise ValueError(
                f"settings.mac_input_from: {settings.mac_input_from!r} is not in the URL"
            )
        mac_input = url[found[settings.mac_input_from][0] :].encode("ascii")
    mac = truncate_mac(_cmac(_session_mac_key(key, uid, counter), mac_input))
    return url + mac.hex().upper()


# -- the keys, as the agent's [ntag424] table and the central's keys file give them ------
@dataclass(frozen=True)
class Ntag424Section:
    """Keys for NTAG 424 DNA SUN messages (hex). Keep this file mode 0600."""

    meta_read_key: str | None = None
    file_read_key: str | None = None
    #: Per-card file read keys diversified from this master key (AN10922), instead.
    file_read_master_key: str | None = None
    picc_param: str = "picc_data"
    mac_param: str = "cmac"

    def __post_init__(self) -> None:
        for name in ("meta_read_key", "file_read_key", "file_read_master_key"):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(r"[0-9A-Fa-f]{32}", value):
                raise ValueError(f"{name}: must be 32 hex digits (an AES-128 key)")
        if self.file_read_key and self.file_read_master_key:
            raise ValueError("file_read_master_key: set either it or file_read_key, not both")

    @property
    def configured(self) -> bool:
        """True when SUN messages can be verified."""
        return bool(self.file_read_key or self.file_read_master_key)

    def verifier(self) -> SunVerifier | None:
        """The SUN verifier of these keys (None when none are configured): the one way
        the agent and the central build it."""
        if not self.configured:
            return None
        file_key: bytes | DiversifiedKeys
        if self.file_read_master_key:
            file_key = DiversifiedKeys(bytes.fromhex(self.file_read_master_key))
        else:
            file_key = bytes.fromhex(self.file_read_key or "")
        meta = bytes.fromhex(self.meta_read_key) if self.meta_read_key else None
        layout = SunSettings(picc_param=self.picc_param, mac_param=self.mac_param)
        return SunVerifier(file_read_key=file_key, meta_read_key=meta, settings=layout)
