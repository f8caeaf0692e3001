"""NTAG 424 DNA commands, the host side: :class:`Ntag424` over a :class:`~.session.Transport`,
and :class:`FileSettings` / :class:`SdmSettings` with their byte layout (NT4H2421Gx §10).

The commands the Pass Office's personalisation needs: ISOSelectFile (the NDEF application and its
files), ISOReadBinary (what a phone or a door reads), AuthenticateEV2First/NonFirst, GetVersion,
GetCardUID, GetKeyVersion, GetFileSettings, ChangeFileSettings (SDM), ChangeKey, ReadData,
WriteData and SetConfiguration (Random ID). Inside a session every command goes through
:class:`~.session.Ev2Session`; the communication mode of each is the data sheet's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

from portier_common.ntag424.crypto import _check_key
from portier_common.ntag424.session import (
    SW_ISO_OK,
    SW_OK,
    CardError,
    CommMode,
    Ev2Session,
    RandomSource,
    Transport,
    authenticate_ev2_first,
    authenticate_ev2_non_first,
    exchange,
    native_apdu,
    split_response,
    status_error,
)

__all__ = [
    "CC_FILE",
    "FREE",
    "NDEF_AID",
    "NDEF_FILE",
    "NEVER",
    "PROPRIETARY_FILE",
    "AccessRights",
    "FileSettings",
    "Ntag424",
    "SdmSettings",
    "change_key_data",
    "jamcrc",
]

#: The NDEF application's DF name (NFC Forum Type 4 Tag) and its three files: (file number, ISO id).
NDEF_AID = bytes.fromhex("D2760000850101")
CC_FILE = (0x01, 0xE103)
NDEF_FILE = (0x02, 0xE104)
PROPRIETARY_FILE = (0x03, 0xE105)
#: Access condition values besides key numbers 0-4: free access and no access.
FREE = 0xE
NEVER = 0xF

_OPT_SDM = 0x40
_SDM_UID = 0x80
_SDM_CTR = 0x40
_SDM_CTR_LIMIT = 0x20
_SDM_ENC_FILE = 0x10
_SDM_ASCII = 0x01


def _u24(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFF:
        raise ValueError(f"{value} does not fit 3 bytes")
    return value.to_bytes(3, "little")


def _nibble(name: str, value: int) -> int:
    if not 0 <= value <= 0xF or 5 <= value <= 0xD:
        raise ValueError(
            f"{name}: expected a key number 0-4, 0xE (free) or 0xF (never), got {value}"
        )
    return value


@dataclass(frozen=True)
class AccessRights:
    """A file's access conditions: a key number 0-4, :data:`FREE` or :data:`NEVER` each.

    On the wire (two bytes): ``RW << 4 | Change`` then ``Read << 4 | Write`` (AN12196 Table 18
    writes ``00E0``: read free, the rest key 0).
    """

    read: int = FREE
    write: int = FREE
    read_write: int = FREE
    change: int = 0x0

    def __post_init__(self) -> None:
        for name in ("read", "write", "read_write", "change"):
            _nibble(f"AccessRights.{name}", getattr(self, name))

    def encode(self) -> bytes:
        return bytes([self.read_write << 4 | self.change, self.read << 4 | self.write])

    @classmethod
    def decode(cls, data: bytes) -> AccessRights:
        return cls(
            read=data[1] >> 4, write=data[1] & 0xF, read_write=data[0] >> 4, change=data[0] & 0xF
        )

    def grants_read(self, key_no: int | None) -> bool:
        """Whether reading is allowed to the holder of ``key_no`` (None: not authenticated)."""
        return FREE in (self.read, self.read_write) or (
            key_no is not None and key_no in (self.read, self.read_write)
        )

    def grants_write(self, key_no: int | None) -> bool:
        """Whether writing is allowed to the holder of ``key_no`` (None: not authenticated)."""
        return FREE in (self.write, self.read_write) or (
            key_no is not None and key_no in (self.write, self.read_write)
        )


@dataclass(frozen=True)
class SdmSettings:
    """Secure Dynamic Messaging options of a file (NT4H2421Gx §10.7.1, AES mode, ASCII mirror).

    ``meta_read``: the key encrypting PICCData (0-4), :data:`FREE` to mirror UID and counter in
    clear, :data:`NEVER` for neither. ``file_read``: the key of the SDM session keys (MAC), or
    :data:`NEVER` for no MAC. Offsets are byte offsets in the file; a field that the access
    rights make absent is None. ``mac_input_offset == mac_offset`` means an empty MAC input.
    """

    uid_mirror: bool = True
    counter_mirror: bool = True
    meta_read: int = NEVER
    file_read: int = NEVER
    counter_retrieval: int = NEVER
    uid_offset: int | None = None
    counter_offset: int | None = None
    picc_data_offset: int | None = None
    mac_input_offset: int | None = None
    enc_offset: int | None = None
    enc_length: int | None = None
    mac_offset: int | None = None
    counter_limit: int | None = None

    def __post_init__(self) -> None:
        for name in ("meta_read", "file_read", "counter_retrieval"):
            _nibble(f"SdmSettings.{name}", getattr(self, name))
        for name, needed in self._fields_present().items():
            present = getattr(self, name) is not None
            if present != needed:
                state = "needs" if needed else "cannot have"
                raise ValueError(f"SdmSettings.{name}: these options {state} it")

    @property
    def enc_file_data(self) -> bool:
        return self.enc_offset is not None

    def _fields_present(self) -> dict[str, bool]:
        plain = self.meta_read == FREE
        encrypted = self.meta_read <= 4
        mac = self.file_read != NEVER
        return {
            "uid_offset": plain and self.uid_mirror,
            "counter_offset": plain and self.counter_mirror,
            "picc_data_offset": encrypted,
            "mac_input_offset": mac,
            "enc_offset": mac and self.enc_offset is not None,
            "enc_length": mac and self.enc_offset is not None,
            "mac_offset": mac,
            "counter_limit": self.counter_limit is not None,
        }

    def encode(self) -> bytes:
        options = _SDM_ASCII
        options |= _SDM_UID if self.uid_mirror else 0
        options |= _SDM_CTR if self.counter_mirror else 0
        options |= _SDM_CTR_LIMIT if self.counter_limit is not None else 0
        options |= _SDM_ENC_FILE if self.enc_offset is not None else 0
        out = bytes([options, 0xF0 | self.counter_retrieval, self.meta_read << 4 | self.file_read])
        for name in (
            "uid_offset",
            "counter_offset",
            "picc_data_offset",
            "mac_input_offset",
            "enc_offset",
            "enc_length",
            "mac_offset",
            "counter_limit",
        ):
            value = getattr(self, name)
            if value is not None:
                out += _u24(value)
        return out

    @classmethod
    def decode(cls, data: bytes) -> tuple[SdmSettings, int]:
        """Returns the settings and the number of bytes they took; raises ValueError if short."""
        if len(data) < 3:
            raise ValueError("SDM settings: expected at least 3 bytes")
        options, rights0, rights1 = data[0], data[1], data[2]
        if not options & _SDM_ASCII:
            raise ValueError("SDM settings: only the ASCII encoding mode exists")
        meta_read, file_read = rights1 >> 4, rights1 & 0xF
        position = 3

        def take() -> int:
            nonlocal position
            if len(data) < position + 3:
                raise ValueError("SDM settings: truncated")
            value = int.from_bytes(data[position : position + 3], "little")
            position += 3
            return value

        values: dict[str, int | None] = {}
        uid_mirror, counter_mirror = bool(options & _SDM_UID), bool(options & _SDM_CTR)
        values["uid_offset"] = take() if meta_read == FREE and uid_mirror else None
        values["counter_offset"] = take() if meta_read == FREE and counter_mirror else None
        values["picc_data_offset"] = take() if meta_read <= 4 else None
        mac = file_read != NEVER
        values["mac_input_offset"] = take() if mac else None
        enc = mac and bool(options & _SDM_ENC_FILE)
        values["enc_offset"] = take() if enc else None
        values["enc_length"] = take() if enc else None
        values["mac_offset"] = take() if mac else None
        values["counter_limit"] = take() if options & _SDM_CTR_LIMIT else None
        settings = cls(
            uid_mirror=uid_mirror,
            counter_mirror=counter_mirror,
            meta_read=meta_read,
            file_read=file_read,
            counter_retrieval=rights0 & 0xF,
            **values,
        )
        return settings, position


@dataclass(frozen=True)
class FileSettings:
    """What ChangeFileSettings writes and GetFileSettings returns (with type and size)."""

    comm_mode: CommMode = CommMode.PLAIN
    access: AccessRights = AccessRights()
    sdm: SdmSettings | None = None
    file_type: int = 0x00
    size: int | None = None

    def encode(self) -> bytes:
        """The ChangeFileSettings data: FileOption, AccessRights, then the SDM fields."""
        option = int(self.comm_mode) | (_OPT_SDM if self.sdm is not None else 0)
        out = bytes([option]) + self.access.encode()
        return out + (self.sdm.encode() if self.sdm is not None else b"")

    @classmethod
    def decode_change(cls, data: bytes) -> FileSettings:
        """Parse ChangeFileSettings data; raises ValueError when malformed or with extra bytes."""
        if len(data) < 3:
            raise ValueError("file settings: expected at least 3 bytes")
        settings = cls._decode(data[0], data[1:3], data[3:])
        return settings

    @classmethod
    def decode_get(cls, data: bytes) -> FileSettings:
        """Parse a GetFileSettings response (FileType, FileOption, AccessRights, FileSize, SDM)."""
        if len(data) < 7:
            raise ValueError("file settings: expected at least 7 bytes")
        settings = cls._decode(data[1], data[2:4], data[7:])
        return replace(settings, file_type=data[0], size=int.from_bytes(data[4:7], "little"))

    @classmethod
    def _decode(cls, option: int, rights: bytes, rest: bytes) -> FileSettings:
        if option & ~(_OPT_SDM | 0x03) or option & 0x03 == 0x02:
            raise ValueError(f"file settings: FileOption {option:02X} has reserved bits")
        sdm = None
        if option & _OPT_SDM:
            sdm, used = SdmSettings.decode(rest)
            rest = rest[used:]
        if rest:
            raise ValueError("file settings: trailing bytes")
        return cls(comm_mode=CommMode(option & 0x03), access=AccessRights.decode(rights), sdm=sdm)

    def encode_get(self, size: int) -> bytes:
        """The GetFileSettings response body for a file of ``size`` bytes (the card side)."""
        encoded = self.encode()
        return bytes([self.file_type]) + encoded[:3] + _u24(size) + encoded[3:]


def jamcrc(data: bytes) -> bytes:
    """CRC32 as ChangeKey uses it (NT4H2421Gx §10.6.1): IEEE 802.3 without the final inversion,
    little-endian (the JAMCRC variant)."""
    return ((zlib.crc32(data) ^ 0xFFFFFFFF) & 0xFFFFFFFF).to_bytes(4, "little")


def change_key_data(
    key_no: int, session_key_no: int, new_key: bytes, version: int, old_key: bytes | None
) -> bytes:
    """ChangeKey's plain data: ``NewKey || KeyVer`` for the key that opened the session, else
    ``(NewKey XOR OldKey) || KeyVer || CRC32(NewKey)``."""
    new_key = _check_key("new_key", new_key)
    if not 0 <= version <= 0xFF:
        raise ValueError(f"version: expected 0..255, got {version}")
    if key_no == session_key_no:
        return new_key + bytes([version])
    if old_key is None:
        raise ValueError("old_key: changing another key than the session's needs its current value")
    old_key = _check_key("old_key", old_key)
    xored = bytes(a ^ b for a, b in zip(new_key, old_key, strict=True))
    return xored + bytes([version]) + jamcrc(new_key)


class Ntag424:
    """The host side of one NTAG 424 DNA in the field, over ``transport``.

    ``session`` holds the current authentication (None before one, or after the card dropped it).
    Methods raise :class:`~.session.CardError` subclasses; a transport exception (the card left
    the field) passes through unchanged.
    """

    def __init__(self, transport: Transport, *, random: RandomSource | None = None) -> None:
        self.transport = transport
        self.session: Ev2Session | None = None
        self._random = random

    # ------------------------------------------------------------------ ISO 7816-4 (no session)

    def _iso(self, name: str, apdu: bytes) -> bytes:
        data, sw = split_response(name, self.transport.transmit(apdu))
        if sw != SW_ISO_OK:
            raise status_error(name, sw)
        return data

    def select_application(self) -> None:
        """ISOSelectFile of the NDEF application by DF name (AN12196 Table 22); ends any session."""
        self.session = None
        self._iso("ISOSelectFile(NDEF application)", b"\x00\xa4\x04\x0c\x07" + NDEF_AID + b"\x00")

    def select_file(self, file_id: int) -> None:
        """ISOSelectFile of an elementary file by its ISO id (E103, E104, E105)."""
        self._iso(
            f"ISOSelectFile({file_id:04X})", b"\x00\xa4\x00\x0c\x02" + file_id.to_bytes(2, "big")
        )

    def read_binary(self, offset: int, length: int) -> bytes:
        """ISOReadBinary of the selected file: what a phone or a door reads (``length`` 0 = 256)."""
        if not 0 <= offset <= 0x7FFF or not 0 <= length <= 0xFF:
            raise ValueError("read_binary: offset 0..32767, length 0..255")
        return self._iso("ISOReadBinary", b"\x00\xb0" + offset.to_bytes(2, "big") + bytes([length]))

    def read_ndef_message(self) -> bytes:
        """Select the NDEF application and file and read the NDEF message as a reader does (NLEN,
        then the message). Returns the message bytes (without NLEN)."""
        self.select_application()
        self.select_file(NDEF_FILE[1])
        nlen = int.from_bytes(self.read_binary(0, 2), "big")
        out = b""
        while len(out) < nlen:
            chunk = self.read_binary(2 + len(out), min(0xF0, nlen - len(out)))
            if not chunk:
                raise CardError("ISOReadBinary: the card returned no data before NLEN")
            out += chunk
        return out[:nlen]

    # ----------------------------------------------------------------------------- native commands

    def _native(
        self,
        name: str,
        ins: int,
        header: bytes = b"",
        data: bytes = b"",
        mode: CommMode = CommMode.PLAIN,
        response_mode: CommMode | None = None,
    ) -> bytes:
        if self.session is not None and self.session.valid:
            try:
                return self.session.transceive(
                    self.transport, name, ins, header, data, mode, response_mode
                )
            finally:
                if not self.session.valid:
                    self.session = None
        if mode is not CommMode.PLAIN or response_mode not in (None, CommMode.PLAIN):
            raise CardError(f"{name}: needs an authentication")
        answer, sw = exchange(self.transport, native_apdu(ins, header + data), name)
        if sw != SW_OK:
            raise status_error(name, sw)
        return answer

    def authenticate(self, key_no: int, key: bytes, *, first: bool = True) -> Ev2Session:
        """AuthenticateEV2First (or NonFirst inside a live session with ``first=False``)."""
        kwargs = {"random": self._random} if self._random is not None else {}
        if not first and (self.session is None or not self.session.valid):
            raise CardError("AuthenticateEV2NonFirst needs a live session; use first=True")
        try:
            if not first and self.session is not None:
                self.session = authenticate_ev2_non_first(
                    self.transport, self.session, key_no, key, **kwargs
                )
            else:
                self.session = None
                self.session = authenticate_ev2_first(self.transport, key_no, key, **kwargs)
        except CardError:
            self.session = None
            raise
        return self.session

    def get_version(self) -> bytes:
        """GetVersion (60h): 28 bytes of hardware, software and production data (MAC if in a
        session)."""
        mode = CommMode.MAC if self.session is not None else CommMode.PLAIN
        return self._native("GetVersion", 0x60, mode=mode)

    def get_card_uid(self) -> bytes:
        """GetCardUID (51h): the real 7-byte UID, even with Random ID on (needs an authentication;
        answer in CommMode.FULL, AN12196 Table 28)."""
        uid = self._native("GetCardUID", 0x51, mode=CommMode.MAC, response_mode=CommMode.FULL)
        if len(uid) != 7:
            raise CardError(f"GetCardUID: expected 7 bytes, got {len(uid)}")
        return uid

    def get_key_version(self, key_no: int) -> int:
        """GetKeyVersion (64h): the version byte stored with a key (MAC in a session)."""
        mode = CommMode.MAC if self.session is not None else CommMode.PLAIN
        answer = self._native(f"GetKeyVersion({key_no})", 0x64, bytes([key_no]), mode=mode)
        if len(answer) != 1:
            raise CardError(f"GetKeyVersion: expected 1 byte, got {len(answer)}")
        return answer[0]

    def get_file_settings(self, file_no: int) -> FileSettings:
        """GetFileSettings (F5h), CommMode.MAC in a session (AN12196 Table 7)."""
        mode = CommMode.MAC if self.session is not None else CommMode.PLAIN
        answer = self._native(f"GetFileSettings({file_no})", 0xF5, bytes([file_no]), mode=mode)
        try:
            return FileSettings.decode_get(answer)
        except ValueError as error:
            raise CardError(f"GetFileSettings: {error}") from None

    def change_file_settings(self, file_no: int, settings: FileSettings) -> None:
        """ChangeFileSettings (5Fh), CommMode.FULL (AN12196 Table 18); needs the Change key."""
        self._native(
            f"ChangeFileSettings({file_no})",
            0x5F,
            bytes([file_no]),
            settings.encode(),
            mode=CommMode.FULL,
            response_mode=CommMode.MAC,
        )

    def change_key(
        self, key_no: int, new_key: bytes, version: int, old_key: bytes | None = None
    ) -> None:
        """ChangeKey (C4h), CommMode.FULL (AN12196 Tables 25 and 26); needs key 0.

        Changing the key that opened the session ends the session (the card answers 91 00 with no
        MAC); authenticate again with the new key.
        """
        session = self.session
        if session is None or not session.valid:
            raise CardError("ChangeKey: needs an authentication with key 0")
        data = change_key_data(key_no, session.key_no, new_key, version, old_key)
        same = key_no == session.key_no
        self._native(
            f"ChangeKey({key_no})",
            0xC4,
            bytes([key_no]),
            data,
            mode=CommMode.FULL,
            response_mode=CommMode.PLAIN if same else CommMode.MAC,
        )
        if same:
            self.session = None

    def write_data(self, file_no: int, offset: int, data: bytes, mode: CommMode) -> None:
        """WriteData (8Dh) in ``mode`` (the file's CommMode, or PLAIN for free access)."""
        header = bytes([file_no]) + _u24(offset) + _u24(len(data))
        self._native(
            f"WriteData({file_no})",
            0x8D,
            header,
            bytes(data),
            mode=mode,
            response_mode=CommMode.MAC if mode is not CommMode.PLAIN else CommMode.PLAIN,
        )

    def read_data(self, file_no: int, offset: int, length: int, mode: CommMode) -> bytes:
        """ReadData (ADh) in ``mode``; ``length`` 0 reads to the end of the file."""
        header = bytes([file_no]) + _u24(offset) + _u24(length)
        command_mode = CommMode.MAC if mode is not CommMode.PLAIN else CommMode.PLAIN
        return self._native(
            f"ReadData({file_no})", 0xAD, header, mode=command_mode, response_mode=mode
        )

    def enable_random_id(self) -> None:
        """SetConfiguration (5Ch) option 00h, PICCConfig bit 1: the card answers anticollision
        with a random UID from now on. Irreversible (NT4H2421Gx §10.5.1); needs key 0."""
        self._native(
            "SetConfiguration(Random ID)",
            0x5C,
            b"\x00",
            b"\x02",
            mode=CommMode.FULL,
            response_mode=CommMode.MAC,
        )
