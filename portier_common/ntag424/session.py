"""EV2 secure messaging, the host (PCD) side: AuthenticateEV2First/NonFirst, session keys and the
three communication modes (NT4H2421Gx §9.1, NXP AN12196 §5).

Everything here is pure: a :class:`Transport` (``transmit(apdu) -> response``, the response ending
in its two status bytes) is the only door to a card, and nothing happens at import. APDUs are the
ISO 7816-4 wrapped native commands the data sheet describes (``90 INS 00 00 Lc data 00``).

* :func:`authenticate_ev2_first` runs the three-pass mutual authentication with one AES key and
  returns an :class:`Ev2Session` (TI, SesAuthENCKey, SesAuthMACKey, command counter 0);
  :func:`authenticate_ev2_non_first` re-authenticates inside a session (TI and counter kept).
* :meth:`Ev2Session.command` builds a command APDU in CommMode.PLAIN, MAC or FULL and
  :meth:`Ev2Session.response` checks and opens the answer (the counter advances on 91 00).
* The same helpers (:func:`session_vector`, :func:`ev2_session_keys`, :func:`command_mac`,
  :func:`response_mac`, :func:`iso_pad`) serve the card side in :mod:`.card`.

Errors are :class:`CardError` subclasses: :class:`CardStatusError` (the card answered an error
status, with ``sw``) and its named cases, :class:`SecureMessagingError` (a MAC or a cryptogram
that does not verify: the card is not who it should be, or the channel was tampered with).
"""

from __future__ import annotations

import enum
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from portier_common.ntag424.crypto import _aes_ecb_decrypt, _aes_ecb_encrypt, _check_key, _cmac

__all__ = [
    "AdditionalFrame",
    "AuthenticationError",
    "CardError",
    "CardStatusError",
    "CommMode",
    "Ev2Session",
    "IntegrityError",
    "LengthError",
    "PermissionDenied",
    "SecureMessagingError",
    "Transport",
    "authenticate_ev2_first",
    "authenticate_ev2_non_first",
    "command_mac",
    "ev2_session_keys",
    "exchange",
    "iso_pad",
    "iso_unpad",
    "response_mac",
    "rotate_left",
    "session_vector",
]

#: Status words (NT4H2421Gx §10.2 Table 25 for 91xx, ISO 7816-4 for the rest).
SW_OK = 0x9100
SW_ADDITIONAL_FRAME = 0x91AF
SW_ISO_OK = 0x9000
STATUS_NAMES = {
    0x9100: "OK",
    0x91AF: "additional frame",
    0x911C: "illegal command code",
    0x911E: "integrity error (CRC or MAC does not match, or bad padding)",
    0x9140: "no such key",
    0x917E: "length error",
    0x919D: "permission denied",
    0x919E: "parameter error",
    0x91AD: "authentication delay",
    0x91AE: "authentication error",
    0x91BE: "boundary error",
    0x91CA: "command aborted",
    0x91EE: "memory error",
    0x91F0: "file not found",
    0x6700: "wrong length",
    0x6982: "security status not satisfied",
    0x6985: "conditions of use not satisfied",
    0x6A82: "file or application not found",
    0x6A86: "wrong P1/P2",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
}

_SV1_LABEL = bytes.fromhex("A55A")
_SV2_LABEL = bytes.fromhex("5AA5")
_CMD_IV_LABEL = bytes.fromhex("A55A")
_RESP_IV_LABEL = bytes.fromhex("5AA5")
_ZERO_IV = bytes(16)
_MAX_COUNTER = 0xFFFF


class Transport(Protocol):
    """One APDU to the card and its answer (data followed by SW1 SW2).

    A reader that loses the card raises (any exception); nothing here retries.
    """

    def transmit(self, apdu: bytes) -> bytes:
        """Send ``apdu`` and return the card's response, status bytes included."""
        ...


class CardError(Exception):
    """Talking to the card failed; the message names the command and what went wrong."""


class CardStatusError(CardError):
    """The card answered an error status word (``sw``, e.g. ``0x91AE``)."""

    status: ClassVar[int | None] = None

    def __init__(self, command: str, sw: int) -> None:
        self.command = command
        self.sw = sw
        name = STATUS_NAMES.get(sw, "unknown status")
        super().__init__(f"{command}: card answered {sw:04X} ({name})")


class AuthenticationError(CardStatusError):
    """91 AE: wrong key, or a command that needs an authentication the session does not have."""

    status = 0x91AE


class PermissionDenied(CardStatusError):
    """91 9D: the command is not allowed with the current authentication."""

    status = 0x919D


class IntegrityError(CardStatusError):
    """91 1E: the card found a wrong MAC, CRC or padding (for ChangeKey: a wrong old key)."""

    status = 0x911E


class LengthError(CardStatusError):
    """91 7E: the command's length is wrong for what it carries."""

    status = 0x917E


class AdditionalFrame(CardStatusError):
    """91 AF where a final answer was expected."""

    status = 0x91AF


_STATUS_CLASSES: dict[int, type[CardStatusError]] = {
    cls.status: cls
    for cls in (AuthenticationError, PermissionDenied, IntegrityError, LengthError, AdditionalFrame)
    if cls.status is not None
}


def status_error(command: str, sw: int) -> CardStatusError:
    """Returns the :class:`CardStatusError` subclass instance for ``sw``."""
    return _STATUS_CLASSES.get(sw, CardStatusError)(command, sw)


class SecureMessagingError(CardError):
    """A response MAC, cryptogram or padding does not verify: wrong card, wrong key or tampering."""


class CommMode(enum.IntEnum):
    """The communication modes (NT4H2421Gx §9.1.9); the value is FileOption's bits 1-0."""

    PLAIN = 0b00
    MAC = 0b01
    FULL = 0b11


def split_response(command: str, response: bytes) -> tuple[bytes, int]:
    """Returns ``(data, sw)`` of a response, or raises :class:`CardError` for one under 2 bytes."""
    if len(response) < 2:
        raise CardError(f"{command}: response of {len(response)} bytes has no status word")
    return bytes(response[:-2]), int.from_bytes(response[-2:], "big")


def exchange(transport: Transport, apdu: bytes, command: str) -> tuple[bytes, int]:
    """Send a native command and collect its answer over 91 AF additional frames.

    Returns:
        ``(data, sw)``: the frames' data concatenated and the final status word, which may be an
        error: the caller decides (an authentication step expects 91 AF, for instance).
    """
    data, sw = split_response(command, transport.transmit(bytes(apdu)))
    chunks = [data]
    while sw == SW_ADDITIONAL_FRAME and apdu[0] == 0x90 and apdu[1] not in (0x71, 0x77):
        more, sw = split_response(command, transport.transmit(bytes.fromhex("90AF000000")))
        chunks.append(more)
    return b"".join(chunks), sw


def native_apdu(ins: int, data: bytes = b"") -> bytes:
    """``90 INS 00 00 [Lc data] 00``: a native command wrapped in ISO 7816-4 (NT4H2421Gx §8.4)."""
    if len(data) > 255:
        raise ValueError(f"command data of {len(data)} bytes does not fit a short APDU")
    body = bytes([len(data)]) + data if data else b""
    return bytes([0x90, ins, 0x00, 0x00]) + body + b"\x00"


# ------------------------------------------------------------------------------------- primitives


def rotate_left(data: bytes) -> bytes:
    """Returns ``data`` rotated left by one byte (RndA', RndB' of the authentication)."""
    return bytes(data[1:]) + bytes(data[:1])


def session_vector(label: bytes, rnd_a: bytes, rnd_b: bytes) -> bytes:
    """SV1 (label A55A) or SV2 (5AA5) of NT4H2421Gx §9.1.7.

    ``label || 00 01 00 80 || RndA[15..14] || (RndA[13..8] XOR RndB[15..10]) || RndB[9..0] ||
    RndA[7..0]``, byte 15 being the first one sent.
    """
    if len(rnd_a) != 16 or len(rnd_b) != 16:
        raise ValueError("RndA and RndB are 16 bytes")
    mixed = bytes(a ^ b for a, b in zip(rnd_a[2:8], rnd_b[0:6], strict=True))
    return bytes(label) + b"\x00\x01\x00\x80" + rnd_a[0:2] + mixed + rnd_b[6:16] + rnd_a[8:16]


def ev2_session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    """Returns ``(SesAuthENCKey, SesAuthMACKey)``: CMAC under ``key`` of SV1 and SV2."""
    key = _check_key("key", key)
    return (
        _cmac(key, session_vector(_SV1_LABEL, rnd_a, rnd_b)),
        _cmac(key, session_vector(_SV2_LABEL, rnd_a, rnd_b)),
    )


def iso_pad(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2: 80h then zeros to a whole block, always at least one byte
    (so data already a multiple of 16 gains a whole block, as AN12196 Table 17 shows)."""
    data = bytes(data) + b"\x80"
    return data + bytes(-len(data) % 16)


def iso_unpad(data: bytes) -> bytes:
    """Undo :func:`iso_pad`, or raise :class:`SecureMessagingError` for a malformed padding."""
    stripped = bytes(data).rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) > 15:
        raise SecureMessagingError("padding of the decrypted data is malformed")
    return stripped[:-1]


def mac_t(key: bytes, data: bytes) -> bytes:
    """MACt: the 8 odd-indexed bytes of the AES-CMAC (NT4H2421Gx §9.1.3)."""
    return _cmac(key, bytes(data))[1::2]


def _counter(ctr: int) -> bytes:
    return struct.pack("<H", ctr)


def command_mac(mac_key: bytes, ins: int, ctr: int, ti: bytes, header: bytes, data: bytes) -> bytes:
    """MACt over ``Cmd || CmdCtr || TI || CmdHeader || CmdData`` (CmdCtr little-endian)."""
    return mac_t(mac_key, bytes([ins]) + _counter(ctr) + ti + header + data)


def response_mac(mac_key: bytes, status: int, ctr: int, ti: bytes, data: bytes) -> bytes:
    """MACt over ``RC || CmdCtr || TI || RespData``, CmdCtr being the incremented counter."""
    return mac_t(mac_key, bytes([status]) + _counter(ctr) + ti + data)


def data_iv(enc_key: bytes, label: bytes, ti: bytes, ctr: int) -> bytes:
    """IVc (label A55A) or IVr (5AA5): E(SesAuthENCKey, label || TI || CmdCtr || 0^8)."""
    return _aes_ecb_encrypt(enc_key, label + ti + _counter(ctr) + bytes(8))


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


# ---------------------------------------------------------------------------------- the session


@dataclass(repr=False)
class Ev2Session:
    """An authenticated EV2 session: its keys, transaction identifier and command counter.

    ``cmd_ctr`` is the counter the next command is sent with; :meth:`response` advances it when
    the card answers 91 00. ``valid`` turns False once the card has dropped the authentication
    (an error status, or a ChangeKey of the key that opened the session).
    """

    enc_key: bytes
    mac_key: bytes
    ti: bytes
    key_no: int
    cmd_ctr: int = 0
    pd_cap2: bytes = bytes(6)
    pcd_cap2: bytes = bytes(6)
    valid: bool = field(default=True)

    def __repr__(self) -> str:
        return (
            f"Ev2Session(key_no={self.key_no}, ti={self.ti.hex().upper()}, cmd_ctr={self.cmd_ctr})"
        )

    def command(
        self, ins: int, header: bytes = b"", data: bytes = b"", mode: CommMode = CommMode.PLAIN
    ) -> bytes:
        """Build the APDU of a command sent in this session.

        PLAIN sends header and data as they are; MAC appends MACt; FULL encrypts the data
        (AES-CBC under SesAuthENCKey, IVc, ISO padding) and appends MACt over the ciphertext. The
        header is never encrypted.

        Raises:
            CardError: the session was dropped or its counter is exhausted.
        """
        if not self.valid:
            raise CardError("the card dropped this authentication; authenticate again")
        if self.cmd_ctr >= _MAX_COUNTER:
            raise CardError("command counter exhausted; authenticate again")
        header, data = bytes(header), bytes(data)
        if mode is CommMode.PLAIN:
            return native_apdu(ins, header + data)
        if mode is CommMode.FULL and data:
            iv = data_iv(self.enc_key, _CMD_IV_LABEL, self.ti, self.cmd_ctr)
            data = cbc_encrypt(self.enc_key, iv, iso_pad(data))
        mac = command_mac(self.mac_key, ins, self.cmd_ctr, self.ti, header, data)
        return native_apdu(ins, header + data + mac)

    def response(
        self, command: str, data: bytes, sw: int, mode: CommMode = CommMode.PLAIN
    ) -> bytes:
        """Check and open a response to a command built by :meth:`command`.

        Returns:
            The response data (decrypted and unpadded in FULL mode).

        Raises:
            CardStatusError: an error status; the card has dropped the authentication.
            SecureMessagingError: the response MAC or padding does not verify.
        """
        if sw != SW_OK:
            self.valid = False
            raise status_error(command, sw)
        self.cmd_ctr += 1
        if mode is CommMode.PLAIN:
            return bytes(data)
        if len(data) < 8:
            self.valid = False
            raise SecureMessagingError(f"{command}: response too short to carry its MAC")
        body, mac = bytes(data[:-8]), bytes(data[-8:])
        expected = response_mac(self.mac_key, 0x00, self.cmd_ctr, self.ti, body)
        if not hmac.compare_digest(expected, mac):
            self.valid = False
            raise SecureMessagingError(f"{command}: response MAC does not verify")
        if mode is CommMode.MAC or not body:
            return body
        if len(body) % 16:
            self.valid = False
            raise SecureMessagingError(f"{command}: encrypted response is not whole blocks")
        iv = data_iv(self.enc_key, _RESP_IV_LABEL, self.ti, self.cmd_ctr)
        return iso_unpad(cbc_decrypt(self.enc_key, iv, body))

    def transceive(
        self,
        transport: Transport,
        name: str,
        ins: int,
        header: bytes = b"",
        data: bytes = b"",
        mode: CommMode = CommMode.PLAIN,
        response_mode: CommMode | None = None,
    ) -> bytes:
        """:meth:`command`, send (with additional frames), :meth:`response`: one command."""
        apdu = self.command(ins, header, data, mode)
        answer, sw = exchange(transport, apdu, name)
        return self.response(name, answer, sw, mode if response_mode is None else response_mode)


RandomSource = Callable[[int], bytes]


def _auth_part2(
    transport: Transport, name: str, key: bytes, encrypted_rnd_b: bytes, rnd_a: bytes
) -> tuple[bytes, bytes]:
    """Returns ``(RndB, response data)`` of the second pass; raises on any error status."""
    if len(encrypted_rnd_b) != 16:
        raise SecureMessagingError(
            f"{name}: expected 16 bytes of E(K, RndB), got {len(encrypted_rnd_b)}"
        )
    rnd_b = _aes_ecb_decrypt(key, encrypted_rnd_b)  # one block, zero IV: CBC is ECB
    cryptogram = cbc_encrypt(key, _ZERO_IV, rnd_a + rotate_left(rnd_b))
    data, sw = split_response(name, transport.transmit(native_apdu(0xAF, cryptogram)))
    if sw != SW_OK:
        raise status_error(name, sw)
    return rnd_b, data


def authenticate_ev2_first(
    transport: Transport, key_no: int, key: bytes, *, random: RandomSource = os.urandom
) -> Ev2Session:
    """AuthenticateEV2First (INS 71h) with AES key ``key_no`` (NT4H2421Gx §9.1.5).

    Pass 1 ``90 71 00 00 02 KeyNo 00 00`` gets E(K, RndB); pass 2 sends E(K, RndA || RndB') and
    gets E(K, TI || RndA' || PDcap2 || PCDcap2). RndA' is checked, so a card that does not hold
    the key is refused even if it answers 91 00.

    Raises:
        AuthenticationError: 91 AE: the card does not hold ``key`` in slot ``key_no``.
        CardStatusError: another error status (91 40: no such key...).
        SecureMessagingError: the card's answer does not prove it holds the key.
    """
    key = _check_key("key", key)
    if not 0 <= key_no <= 4:
        raise ValueError(f"key_no: expected 0..4, got {key_no}")
    name = f"AuthenticateEV2First(key {key_no})"
    data, sw = split_response(name, transport.transmit(native_apdu(0x71, bytes([key_no, 0x00]))))
    if sw != SW_ADDITIONAL_FRAME:
        raise status_error(name, sw)
    rnd_a = random(16)
    rnd_b, answer = _auth_part2(transport, name, key, data, rnd_a)
    if len(answer) != 32:
        raise SecureMessagingError(f"{name}: expected 32 bytes in the last pass, got {len(answer)}")
    plain = cbc_decrypt(key, _ZERO_IV, answer)
    if not hmac.compare_digest(plain[4:20], rotate_left(rnd_a)):
        raise SecureMessagingError(
            f"{name}: the card's RndA' does not match: it does not hold the key"
        )
    enc_key, mac_key = ev2_session_keys(key, rnd_a, rnd_b)
    return Ev2Session(
        enc_key=enc_key,
        mac_key=mac_key,
        ti=plain[0:4],
        key_no=key_no,
        pd_cap2=plain[20:26],
        pcd_cap2=plain[26:32],
    )


def authenticate_ev2_non_first(
    transport: Transport,
    session: Ev2Session,
    key_no: int,
    key: bytes,
    *,
    random: RandomSource = os.urandom,
) -> Ev2Session:
    """AuthenticateEV2NonFirst (INS 77h) inside ``session``: new session keys, TI and command
    counter kept (NT4H2421Gx §9.1.6). Raises as :func:`authenticate_ev2_first`."""
    key = _check_key("key", key)
    if not session.valid:
        raise CardError("AuthenticateEV2NonFirst needs a live session; use AuthenticateEV2First")
    name = f"AuthenticateEV2NonFirst(key {key_no})"
    data, sw = split_response(name, transport.transmit(native_apdu(0x77, bytes([key_no]))))
    if sw != SW_ADDITIONAL_FRAME:
        session.valid = False
        raise status_error(name, sw)
    rnd_a = random(16)
    try:
        rnd_b, answer = _auth_part2(transport, name, key, data, rnd_a)
    except CardStatusError:
        session.valid = False
        raise
    session.valid = False  # the old keys are gone whatever happens next
    if len(answer) != 16 or not hmac.compare_digest(
        cbc_decrypt(key, _ZERO_IV, answer), rotate_left(rnd_a)
    ):
        raise SecureMessagingError(
            f"{name}: the card's RndA' does not match: it does not hold the key"
        )
    enc_key, mac_key = ev2_session_keys(key, rnd_a, rnd_b)
    return Ev2Session(
        enc_key=enc_key,
        mac_key=mac_key,
        ti=session.ti,
        key_no=key_no,
        cmd_ctr=session.cmd_ctr,
        pd_cap2=session.pd_cap2,
        pcd_cap2=session.pcd_cap2,
    )
