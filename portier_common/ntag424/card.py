"""An emulated NTAG 424 DNA, the card (PICC) side: for the tests, the demo and a desk without one.

:class:`EmulatedNtag424` answers ISO 7816-4 APDUs with real state and real cryptography: five AES
keys with their versions (factory: all zero, version 00h), the three files of the NDEF application
with the data sheet's factory settings, Secure Dynamic Messaging on the NDEF file (UID and
SDMReadCtr in encrypted PICCData or in clear, SDMMAC over the configured input), the SDM read
counter, the UID and Random ID. It implements the commands the Pass Office uses (ISOSelectFile,
ISOReadBinary, AuthenticateEV2First/NonFirst, GetVersion, GetCardUID, GetKeyVersion,
GetFileSettings, ChangeFileSettings, ChangeKey, ReadData, WriteData, SetConfiguration) with the
status words of NT4H2421Gx §10 (91 00, 91 AE, 91 7E, 91 9D, 91 1E, 91 40, 91 9E, 91 BE...; 90 00 and
6x xx for the ISO commands), and drops the authentication after an error as the card does.

Not emulated: LRP, SDMENCFileData (refused with 91 9E at ChangeFileSettings), SDMReadCtrLimit,
the originality signature, TagTamper, ISOUpdateBinary and the 3-pass anticollision itself
(:meth:`EmulatedNtag424.anticollision_uid` says what a reader would see).

Its transmit() is the same seam a PC/SC or nfcpy reader offers, so the station's code path is the
one a real card gets.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field

from portier_common.ntag424.commands import (
    CC_FILE,
    FREE,
    NDEF_AID,
    NDEF_FILE,
    NEVER,
    PROPRIETARY_FILE,
    AccessRights,
    FileSettings,
    jamcrc,
)
from portier_common.ntag424.crypto import (
    _SV2_PREFIX,
    _TAG_CTR_MIRROR,
    _TAG_UID_MIRROR,
    UID_SIZE,
    _aes_ecb_encrypt,
    _check_key,
    _cmac,
    truncate_mac,
)
from portier_common.ntag424.session import (
    CommMode,
    Ev2Session,
    RandomSource,
    SecureMessagingError,
    cbc_decrypt,
    cbc_encrypt,
    command_mac,
    data_iv,
    ev2_session_keys,
    iso_pad,
    iso_unpad,
    response_mac,
    rotate_left,
)

__all__ = ["EmulatedNtag424"]

#: NT4H2421Gx §8.2.2: the factory content of the capability container (E103).
_FACTORY_CC = bytes.fromhex("001720010000FF0406E104010000000506E10500808283")
#: GetVersion's hardware and software parts (NT4H2421Gx §10.5.2: vendor NXP, type 04h, subtype 02h,
#: version 30h 00h / 01h 02h, storage 11h, ISO 14443-4). The production part (batch, week, year)
#: that _get_version adds is made up.
_VERSION_HW = bytes.fromhex("04040230001105")
_VERSION_SW = bytes.fromhex("04040201021105")


class _Status(Exception):
    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass
class _File:
    file_id: int
    size: int
    settings: FileSettings
    data: bytearray
    sdm_counter: int = 0


@dataclass
class _PendingAuth:
    first: bool
    key_no: int
    rnd_b: bytes


def _factory_files() -> dict[int, _File]:
    cc = bytearray(32)
    cc[: len(_FACTORY_CC)] = _FACTORY_CC
    return {
        CC_FILE[0]: _File(CC_FILE[1], 32, FileSettings(access=AccessRights(FREE, 0, 0, 0)), cc),
        NDEF_FILE[0]: _File(
            NDEF_FILE[1],
            256,
            FileSettings(access=AccessRights(FREE, FREE, FREE, 0)),
            bytearray(256),
        ),
        PROPRIETARY_FILE[0]: _File(
            PROPRIETARY_FILE[1],
            128,
            FileSettings(comm_mode=CommMode.FULL, access=AccessRights(2, 3, 3, 0)),
            bytearray(128),
        ),
    }


@dataclass(repr=False)
class EmulatedNtag424:
    """One NTAG 424 DNA, as it leaves the factory unless told otherwise.

    Args:
        uid: the 7-byte UID (a random NXP one, 04h first, if None).
        random: the source of RndB, TI, PICCData padding and random IDs (tests pass a seeded one).

    ``transmit(apdu)`` is the whole interface a reader has; the attributes (``keys``,
    ``key_versions``, ``files``, ``random_id``) are there for tests to look at. The card keeps its
    state across :meth:`power_cycle` (leaving the field), which only drops the selection and the
    authentication.
    """

    uid: bytes = b""
    random: RandomSource = os.urandom
    keys: list[bytes] = field(default_factory=lambda: [bytes(16)] * 5)
    key_versions: list[int] = field(default_factory=lambda: [0] * 5)
    random_id: bool = False
    files: dict[int, _File] = field(default_factory=_factory_files)

    def __post_init__(self) -> None:
        if not self.uid:
            self.uid = b"\x04" + self.random(UID_SIZE - 1)
        if len(self.uid) != UID_SIZE:
            raise ValueError("uid: expected 7 bytes")
        self.power_cycle()

    def __repr__(self) -> str:
        return f"EmulatedNtag424(uid={self.uid.hex().upper()}, random_id={self.random_id})"

    def power_cycle(self) -> None:
        """The card left the field: selection, authentication and SDM read state are gone."""
        self._app_selected = False
        self._selected: int | None = None
        self._session: Ev2Session | None = None
        self._pending_auth: _PendingAuth | None = None
        self._pending_frames: list[bytes] = []
        self._sdm_images: dict[int, bytes] = {}

    def anticollision_uid(self) -> bytes:
        """The UID a reader sees at anticollision: the real one, or with Random ID a fresh 4-byte
        random one starting 08h (ISO/IEC 14443-3)."""
        return b"\x08" + self.random(3) if self.random_id else self.uid

    # ---------------------------------------------------------------------------------- dispatch

    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU; returns the response data followed by SW1 SW2."""
        apdu = bytes(apdu)
        try:
            if len(apdu) < 4:
                raise _Status(0x6700)
            if apdu[0] == 0x00:
                return self._iso(apdu) + b"\x90\x00"
            if apdu[0] == 0x90:
                return self._native(apdu)
            raise _Status(0x6E00)
        except _Status as status:
            if status.sw >> 8 == 0x91 and status.sw != 0x91AF:
                # NT4H2421Gx §9.1: an error ends the authentication.
                self._session = None
                self._pending_auth = None
            return status.sw.to_bytes(2, "big")

    # ------------------------------------------------------------------------------ ISO commands

    def _iso(self, apdu: bytes) -> bytes:
        ins, p1, p2 = apdu[1], apdu[2], apdu[3]
        if ins == 0xA4:
            lc = apdu[4] if len(apdu) > 4 else 0
            name = apdu[5 : 5 + lc]
            if len(name) != lc:
                raise _Status(0x6700)
            if p1 == 0x04:
                if name != NDEF_AID:
                    raise _Status(0x6A82)
                self._deselect()
                self._app_selected = True
                return b""
            if p1 in (0x00, 0x02) and lc == 2 and self._app_selected:
                file_id = int.from_bytes(name, "big")
                for number, file in self.files.items():
                    if file.file_id == file_id:
                        self._selected = number
                        self._sdm_images.pop(number, None)
                        return b""
            raise _Status(0x6A82)
        if ins == 0xB0:
            if self._selected is None:
                raise _Status(0x6985)
            if p1 & 0x80:
                raise _Status(0x6A86)
            file = self.files[self._selected]
            if not file.settings.access.grants_read(None):
                raise _Status(0x6982)
            offset = p1 << 8 | p2
            length = apdu[4] if len(apdu) > 4 else 0
            image = self._read_image(self._selected)
            if offset > file.size:
                raise _Status(0x6B00)
            return image[offset : offset + (length or 256)]
        raise _Status(0x6D00)

    def _deselect(self) -> None:
        # Selecting the application resets the authentication and the file selection.
        self._selected = None
        self._session = None
        self._pending_auth = None
        self._pending_frames = []
        self._sdm_images = {}

    # --------------------------------------------------------------------------- native commands

    def _native(self, apdu: bytes) -> bytes:
        if apdu[2:4] != b"\x00\x00" or len(apdu) < 5:
            raise _Status(0x917E)
        ins = apdu[1]
        if len(apdu) == 5:
            body = b""
        else:
            lc = apdu[4]
            if len(apdu) != 5 + lc + 1 or lc == 0:
                raise _Status(0x917E)
            body = apdu[5 : 5 + lc]
        if ins == 0xAF:
            return self._additional_frame(body)
        self._pending_auth = None
        self._pending_frames = []
        if not self._app_selected and ins not in (0x60,):
            raise _Status(0x91CA)
        handler = {
            0x71: self._auth_first,
            0x77: self._auth_non_first,
            0x60: self._get_version,
            0x51: self._get_card_uid,
            0x64: self._get_key_version,
            0xF5: self._get_file_settings,
            0x5F: self._change_file_settings,
            0xC4: self._change_key,
            0x8D: self._write_data,
            0xAD: self._read_data,
            0x5C: self._set_configuration,
        }.get(ins)
        if handler is None:
            raise _Status(0x911C)
        return handler(ins, body)

    # ------------------------------------------------------------------- secure messaging helpers

    def _open(self, ins: int, body: bytes, header_len: int, mode: CommMode) -> tuple[bytes, bytes]:
        session = self._session
        if session is None or mode is CommMode.PLAIN:
            if len(body) < header_len:
                raise _Status(0x917E)
            return body[:header_len], body[header_len:]
        if len(body) < header_len + 8:
            raise _Status(0x917E)
        header, payload, mac = body[:header_len], body[header_len:-8], body[-8:]
        expected = command_mac(session.mac_key, ins, session.cmd_ctr, session.ti, header, payload)
        if not hmac.compare_digest(expected, mac):
            raise _Status(0x911E)
        if mode is CommMode.FULL and payload:
            if len(payload) % 16:
                raise _Status(0x917E)
            iv = data_iv(session.enc_key, b"\xa5\x5a", session.ti, session.cmd_ctr)
            try:
                payload = iso_unpad(cbc_decrypt(session.enc_key, iv, payload))
            except SecureMessagingError:
                raise _Status(0x911E) from None
        return header, payload

    def _reply(self, data: bytes = b"", mode: CommMode = CommMode.PLAIN) -> bytes:
        session = self._session
        if session is None:
            return data + b"\x91\x00"
        session.cmd_ctr += 1
        if mode is CommMode.PLAIN:
            return data + b"\x91\x00"
        if mode is CommMode.FULL and data:
            iv = data_iv(session.enc_key, b"\x5a\xa5", session.ti, session.cmd_ctr)
            data = cbc_encrypt(session.enc_key, iv, iso_pad(data))
        return (
            data
            + response_mac(session.mac_key, 0x00, session.cmd_ctr, session.ti, data)
            + b"\x91\x00"
        )

    def _mode(self) -> CommMode:
        return CommMode.MAC if self._session is not None else CommMode.PLAIN

    def _need_key0(self) -> Ev2Session:
        if self._session is None:
            raise _Status(0x91AE)
        if self._session.key_no != 0:
            raise _Status(0x919D)
        return self._session

    # ------------------------------------------------------------------------------ authentication

    def _auth_first(self, ins: int, body: bytes) -> bytes:
        self._session = None
        return self._auth_start(body, first=True)

    def _auth_non_first(self, ins: int, body: bytes) -> bytes:
        if self._session is None:
            raise _Status(0x91AE)
        return self._auth_start(body, first=False)

    def _auth_start(self, body: bytes, *, first: bool) -> bytes:
        if len(body) < 1 or (first and (len(body) < 2 or len(body) != 2 + body[1])):
            raise _Status(0x917E)
        key_no = body[0]
        if key_no > 4:
            raise _Status(0x9140)
        rnd_b = self.random(16)
        self._pending_auth = _PendingAuth(first, key_no, rnd_b)
        return _aes_ecb_encrypt(self.keys[key_no], rnd_b) + b"\x91\xaf"

    def _additional_frame(self, body: bytes) -> bytes:
        if self._pending_frames:
            frame = self._pending_frames.pop(0)
            return frame + (b"\x91\xaf" if self._pending_frames else b"\x91\x00")
        pending, self._pending_auth = self._pending_auth, None
        if pending is None:
            raise _Status(0x911C)
        if len(body) != 32:
            raise _Status(0x917E)
        key = self.keys[pending.key_no]
        plain = cbc_decrypt(key, bytes(16), body)
        rnd_a, rnd_b_rotated = plain[:16], plain[16:]
        if not hmac.compare_digest(rnd_b_rotated, rotate_left(pending.rnd_b)):
            self._session = None
            raise _Status(0x91AE)
        enc_key, mac_key = ev2_session_keys(key, rnd_a, pending.rnd_b)
        if pending.first:
            ti = self.random(4)
            self._session = Ev2Session(
                enc_key=enc_key, mac_key=mac_key, ti=ti, key_no=pending.key_no
            )
            answer = ti + rotate_left(rnd_a) + bytes(12)
        else:
            assert self._session is not None
            old = self._session
            self._session = Ev2Session(
                enc_key=enc_key,
                mac_key=mac_key,
                ti=old.ti,
                key_no=pending.key_no,
                cmd_ctr=old.cmd_ctr,
            )
            answer = rotate_left(rnd_a)
        return cbc_encrypt(key, bytes(16), answer) + b"\x91\x00"

    # ------------------------------------------------------------------------------------ commands

    def _get_version(self, ins: int, body: bytes) -> bytes:
        self._open(ins, body, 0, self._mode())
        uid = bytes(UID_SIZE) if self.random_id and self._session is None else self.uid
        production = uid + bytes.fromhex("CF39A1B8D0") + bytes.fromhex("2026")
        frames = [_VERSION_HW, _VERSION_SW, production]
        if self._session is not None:
            last = self._reply(b"".join(frames), CommMode.MAC)
            # The MAC covers every frame; it travels at the end of the last one.
            frames[-1] = last[len(b"".join(frames[:-1])) : -2]
        self._pending_frames = frames[1:]
        return frames[0] + b"\x91\xaf"

    def _get_card_uid(self, ins: int, body: bytes) -> bytes:
        if self._session is None:
            raise _Status(0x91AE)
        self._open(ins, body, 0, CommMode.MAC)
        return self._reply(self.uid, CommMode.FULL)

    def _get_key_version(self, ins: int, body: bytes) -> bytes:
        header, _ = self._open(ins, body, 1, self._mode())
        if header[0] > 4:
            raise _Status(0x9140)
        return self._reply(bytes([self.key_versions[header[0]]]), self._mode())

    def _file(self, number: int) -> _File:
        if number not in self.files:
            raise _Status(0x91F0)
        return self.files[number]

    def _get_file_settings(self, ins: int, body: bytes) -> bytes:
        header, _ = self._open(ins, body, 1, self._mode())
        file = self._file(header[0])
        return self._reply(file.settings.encode_get(file.size), self._mode())

    def _change_file_settings(self, ins: int, body: bytes) -> bytes:
        if self._session is None:
            raise _Status(0x91AE)
        header, data = self._open(ins, body, 1, CommMode.FULL)
        file = self._file(header[0])
        change = file.settings.access.change
        if change not in (FREE, self._session.key_no):
            raise _Status(0x919D)
        try:
            settings = FileSettings.decode_change(data)
        except ValueError:
            raise _Status(0x919E) from None
        if settings.sdm is not None:
            self._check_sdm(header[0], file, settings)
        file.settings = FileSettings(
            comm_mode=settings.comm_mode, access=settings.access, sdm=settings.sdm, file_type=0
        )
        self._sdm_images.pop(header[0], None)
        return self._reply(b"", CommMode.MAC)

    def _check_sdm(self, number: int, file: _File, settings: FileSettings) -> None:
        sdm = settings.sdm
        assert sdm is not None
        if number != NDEF_FILE[0] or sdm.enc_file_data or sdm.counter_limit is not None:
            raise _Status(0x919E)  # SDM on the NDEF file only; ENC data and limits not emulated
        spans = []
        if sdm.uid_offset is not None:
            spans.append((sdm.uid_offset, 2 * UID_SIZE))
        if sdm.counter_offset is not None:
            spans.append((sdm.counter_offset, 6))
        if sdm.picc_data_offset is not None:
            spans.append((sdm.picc_data_offset, 32))
        if sdm.mac_offset is not None:
            assert sdm.mac_input_offset is not None
            if sdm.mac_input_offset > sdm.mac_offset:
                raise _Status(0x919E)
            spans.append((sdm.mac_offset, 16))
        spans.sort()
        for (start, length), following in zip(spans, [*spans[1:], (file.size, 0)], strict=True):
            if start + length > following[0]:
                raise _Status(0x919E)

    def _change_key(self, ins: int, body: bytes) -> bytes:
        session = self._need_key0()
        header, data = self._open(ins, body, 1, CommMode.FULL)
        key_no = header[0]
        if key_no > 4:
            raise _Status(0x9140)
        if key_no == session.key_no:
            if len(data) != 17:
                raise _Status(0x917E)
            self.keys[key_no], self.key_versions[key_no] = data[:16], data[16]
            self._session = None  # the session's key is gone: the answer carries no MAC
            return b"\x91\x00"
        if len(data) != 21:
            raise _Status(0x917E)
        new_key = bytes(a ^ b for a, b in zip(data[:16], self.keys[key_no], strict=True))
        if not hmac.compare_digest(jamcrc(new_key), data[17:21]):
            raise _Status(0x911E)
        self.keys[key_no], self.key_versions[key_no] = new_key, data[16]
        return self._reply(b"", CommMode.MAC)

    def _access_mode(self, file: _File, *, write: bool) -> CommMode:
        """The mode a read or write runs in, or 91 9D / 91 AE when not allowed."""
        rights = file.settings.access
        key_no = self._session.key_no if self._session is not None else None
        keyed = (rights.write, rights.read_write) if write else (rights.read, rights.read_write)
        if key_no is not None and key_no in keyed:
            return file.settings.comm_mode
        if FREE in keyed:
            return CommMode.PLAIN
        raise _Status(0x919D if key_no is not None else 0x91AE)

    def _write_data(self, ins: int, body: bytes) -> bytes:
        if len(body) < 1:
            raise _Status(0x917E)
        file = self._file(body[0])
        mode = self._access_mode(file, write=True)
        header, data = self._open(ins, body, 7, mode)
        offset, length = (
            int.from_bytes(header[1:4], "little"),
            int.from_bytes(header[4:7], "little"),
        )
        if length != len(data) or length == 0:
            raise _Status(0x917E)
        if offset + length > file.size:
            raise _Status(0x91BE)
        file.data[offset : offset + length] = data
        self._sdm_images.pop(body[0], None)
        return self._reply(b"", CommMode.MAC if mode is not CommMode.PLAIN else CommMode.PLAIN)

    def _read_data(self, ins: int, body: bytes) -> bytes:
        if len(body) < 1:
            raise _Status(0x917E)
        number = body[0]
        file = self._file(number)
        mode = self._access_mode(file, write=False)
        header, _ = self._open(ins, body, 7, CommMode.MAC if mode is not CommMode.PLAIN else mode)
        offset, length = (
            int.from_bytes(header[1:4], "little"),
            int.from_bytes(header[4:7], "little"),
        )
        if offset + length > file.size or offset >= file.size:
            raise _Status(0x91BE)
        image = self._read_image(number) if self._session is None else bytes(file.data)
        return self._reply(image[offset : offset + length if length else file.size], mode)

    def _set_configuration(self, ins: int, body: bytes) -> bytes:
        self._need_key0()
        header, data = self._open(ins, body, 1, CommMode.FULL)
        if header[0] != 0x00 or len(data) != 1 or data[0] & ~0x02:
            raise _Status(0x919E)  # only the PICC configuration's Random ID bit is emulated
        if data[0] & 0x02:
            self.random_id = True
        return self._reply(b"", CommMode.MAC)

    # ------------------------------------------------------------------------------------------ SDM

    def _read_image(self, number: int) -> bytes:
        """The file as an unauthenticated reader sees it: with SDM, mirrored once per selection
        (the read counter advances at the first read, not at each chunk)."""
        file = self.files[number]
        sdm = file.settings.sdm
        if sdm is None:
            return bytes(file.data)
        if number not in self._sdm_images:
            file.sdm_counter += 1
            self._sdm_images[number] = self._mirror(file)
        return self._sdm_images[number]

    def _mirror(self, file: _File) -> bytes:
        sdm = file.settings.sdm
        assert sdm is not None
        image = bytearray(file.data)
        counter = file.sdm_counter.to_bytes(3, "little")

        def put(offset: int | None, text: str) -> None:
            assert offset is not None
            image[offset : offset + len(text)] = text.upper().encode("ascii")

        if sdm.meta_read <= 4:
            tag = (_TAG_UID_MIRROR | UID_SIZE if sdm.uid_mirror else 0) | (
                _TAG_CTR_MIRROR if sdm.counter_mirror else 0
            )
            plain = bytes([tag]) + (self.uid if sdm.uid_mirror else b"")
            plain += counter if sdm.counter_mirror else b""
            plain += self.random(16 - len(plain))
            put(sdm.picc_data_offset, _aes_ecb_encrypt(self.keys[sdm.meta_read], plain).hex())
        elif sdm.meta_read == FREE:
            if sdm.uid_mirror:
                put(sdm.uid_offset, self.uid.hex())
            if sdm.counter_mirror:
                put(sdm.counter_offset, f"{file.sdm_counter:06X}")
        if sdm.file_read != NEVER:
            assert sdm.mac_input_offset is not None and sdm.mac_offset is not None
            vector = _SV2_PREFIX + (self.uid if sdm.uid_mirror else b"")
            vector += counter if sdm.counter_mirror else b""
            vector += bytes(-len(vector) % 16)
            session_key = _cmac(_check_key("key", self.keys[sdm.file_read]), vector)
            mac = truncate_mac(
                _cmac(session_key, bytes(image[sdm.mac_input_offset : sdm.mac_offset]))
            )
            put(sdm.mac_offset, mac.hex())
        return bytes(image)
