"""Emulated cards on nfcpy's udp driver, for the tests, the demo and bench rigs.

nfcpy's ``udp`` driver carries the NFC Forum Digital protocol frames in UDP
datagrams, so a reader (``ContactlessFrontend('udp:127.0.0.1:PORT')``, i.e.
the ``nfcpy`` backend) and a card emulator (``listen`` on the same port) run
the real nfcpy stack against each other over loopback.

* :class:`Type2Card` -- an NFC Forum Type 2 tag (as NTAG21x / Ultralight
  badges), answering READ from a memory image with an NDEF message.
* :class:`Type3Card` -- a FeliCa NFC Forum Type 3 tag with an NDEF message,
  served by nfcpy's built-in ``Type3TagEmulation``.
* :class:`Type4Card` -- an ISO 14443-4A (ISO-DEP) card. nfcpy has no Type 4
  emulation, so this module answers RATS with an ATS and runs the card side
  of the ISO-DEP block protocol (I-blocks with chaining, R(ACK)/R(NAK)
  recovery, S(DESELECT)) itself; APDUs go to a responder function. An
  optional NDEF Tag Application (:class:`NdefApplication`, as on an NTAG 424
  DNA) serves an NDEF message and hands every other APDU to the responder.

:class:`UdpCardEmulator` runs one card in a background thread, listening on
``host:port`` only (nfcpy itself would bind 0.0.0.0). It is not a reader
backend and never stands in for one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from hardware.nfc.nfcpy import _import_nfc, udp_device

if TYPE_CHECKING:
    import ndef

log = logging.getLogger(__name__)

#: Command APDU in, response APDU (data + SW1 SW2) out.
ApduResponder = Callable[[bytes], bytes]

SW_OK = b"\x90\x00"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_WRONG_P1P2 = b"\x6b\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CONDITIONS_NOT_SATISFIED = b"\x69\x85"

NDEF_AID = bytes.fromhex("D2760000850101")
_CC_FILE = b"\xe1\x03"
_NDEF_FILE = b"\xe1\x04"
# FSDI/FSCI code to frame size (ISO/IEC 14443-4).
_FRAME_SIZES = (16, 24, 32, 40, 48, 64, 96, 128, 256)


def _encode_ndef(records: Iterable[ndef.Record]) -> bytes:
    import ndef

    records = list(records)
    return b"".join(ndef.message_encoder(records)) if records else b""


class NdefApplication:
    """The NFC Forum Type 4 Tag NDEF application (mapping version 2.0), read-only.

    Called with each command APDU; answers SELECT of the NDEF application
    (``D2760000850101``), of its capability container (E103) and NDEF file
    (E104), and READ BINARY. Any other APDU, and every APDU after the reader
    selected another application, goes to *fallback* (or gets 6D00 / 6A82
    without one). Returns the response APDU.
    """

    def __init__(self, records: Iterable[ndef.Record], fallback: ApduResponder | None = None):
        message = _encode_ndef(records)
        if len(message) > 0x7FFF:
            raise ValueError("NDEF message too long for a short-length NDEF file")
        self._files = {
            # CCLEN, version 2.0, MLe, MLc, NDEF file control TLV (read free, no write).
            _CC_FILE: bytes.fromhex("000F 20 00FF 00FF 0406 E104")
            + (len(message) + 2).to_bytes(2, "big")
            + b"\x00\xff",
            _NDEF_FILE: len(message).to_bytes(2, "big") + message,
        }
        self._fallback = fallback
        self._selected: str | None = None  # "ndef", "other" or None
        self._file: bytes | None = None

    def __call__(self, apdu: bytes) -> bytes:
        cla, ins, p1, p2 = apdu[:4]
        body = apdu[4:]
        if cla == 0x00 and ins == 0xA4 and p1 == 0x04:  # SELECT by DF name
            name = body[1 : 1 + body[0]] if body else b""
            if name == NDEF_AID:
                self._selected, self._file = "ndef", None
                return SW_OK
            self._selected, self._file = "other", None
            return self._fallback(apdu) if self._fallback else SW_FILE_NOT_FOUND
        if self._selected == "ndef" and cla == 0x00:
            if ins == 0xA4 and p1 == 0x00:  # SELECT by file id
                fid = body[1 : 1 + body[0]] if body else b""
                if fid in self._files:
                    self._file = fid
                    return SW_OK
                return SW_FILE_NOT_FOUND
            if ins == 0xB0:  # READ BINARY
                if self._file is None:
                    return SW_CONDITIONS_NOT_SATISFIED
                data = self._files[self._file]
                offset = p1 << 8 | p2
                if offset > len(data):
                    return SW_WRONG_P1P2
                length = (body[0] or 256) if body else 256
                return data[offset : offset + length] + SW_OK
        if self._fallback is not None:
            return self._fallback(apdu)
        return SW_INS_NOT_SUPPORTED


class Type3Card:
    """A FeliCa NFC Forum Type 3 tag: IDm (the UID), PMm, system 12FC, NDEF data.

    The default PMm's IC code (FF) matches no Sony product, so nfcpy treats
    the card as a plain Type 3 tag and does not probe product commands.
    """

    technology = "212F"

    def __init__(
        self,
        idm: bytes | str,
        ndef: Iterable[ndef.Record] = (),
        pmm: bytes | str = "FFFFFFFFFFFFFFFF",
    ) -> None:
        self.idm = bytes.fromhex(idm) if isinstance(idm, str) else bytes(idm)
        self.pmm = bytes.fromhex(pmm) if isinstance(pmm, str) else bytes(pmm)
        if len(self.idm) != 8 or len(self.pmm) != 8:
            raise ValueError("IDm and PMm are 8 bytes each")
        if self.idm[:2] == b"\x01\xfe":
            raise ValueError("an IDm starting 01FE announces NFC-DEP, not a tag")
        message = _encode_ndef(ndef)
        nblocks = (len(message) + 15) // 16
        attribute = bytearray(16)
        attribute[0:5] = bytes([0x10, 4, 1]) + max(nblocks, 1).to_bytes(2, "big")
        attribute[10] = 0x00  # read-only: a badge is not rewritten at the door
        attribute[11:14] = len(message).to_bytes(3, "big")
        attribute[14:16] = sum(attribute[0:14]).to_bytes(2, "big")
        padded = message + bytes(-len(message) % 16)
        self._blocks = [bytes(attribute)] + [padded[i : i + 16] for i in range(0, len(padded), 16)]

    def local_target(self, nfc):
        """The nfcpy ``LocalTarget`` to listen as."""
        sensf_res = b"\x01" + self.idm + self.pmm + b"\x12\xfc"
        return nfc.clf.LocalTarget("212F", sensf_res=bytearray(sensf_res))

    def serve(self, nfc, clf, target, session: _Session) -> None:
        """Answer the reader until it leaves, goes quiet or *session* ends."""
        tag = nfc.tag.emulate(clf, target)
        if tag is None:
            return

        def read_block(block: int, rb: bool, re: bool) -> bytearray | None:
            return bytearray(self._blocks[block]) if block < len(self._blocks) else None

        tag.add_service(0x000B, read_block, None)
        session.activated()
        response = tag.process_command(tag.cmd)
        while True:
            command = session.exchange(clf, response)
            if command is None:
                return
            response = tag.process_command(command)


class Type2Card:
    """An NFC Forum Type 2 tag (NTAG/Ultralight-like), read-only: 7-byte UID and NDEF.

    Answers READ (30h) with 16 bytes from its memory image (pages 0-2 UID,
    BCCs and lock bytes, page 3 the capability container, then the NDEF
    message TLV) and NAKs everything else, as a read-only tag does. A UID
    starting 04 (NXP) makes nfcpy probe NXP commands first (Ultralight C
    AUTHENTICATE 1A, GET_VERSION 60); after each NAK it selects the tag
    again, and then names a product from what it could read (``NXP NTAG203``
    here). Those re-selections are why the listen socket is kept between
    activations (see :func:`hardware.nfc.nfcpy.udp_device`).
    """

    technology = "106A"

    def __init__(self, uid: bytes | str, ndef: Iterable[ndef.Record] = ()) -> None:
        self.uid = bytes.fromhex(uid) if isinstance(uid, str) else bytes(uid)
        if len(self.uid) != 7:
            raise ValueError("a Type 2 card UID is 7 bytes")
        message = _encode_ndef(ndef)
        if len(message) > 254:
            raise ValueError("NDEF message too long for this emulated Type 2 tag")
        tlv = bytes([0x03, len(message)]) + message + b"\xfe"
        data_size = max(48, -(-len(tlv) // 8) * 8)
        uid = self.uid
        memory = bytearray(
            uid[0:3]
            + bytes([0x88 ^ uid[0] ^ uid[1] ^ uid[2]])  # BCC0, cascade tag included
            + uid[3:7]
            + bytes([uid[3] ^ uid[4] ^ uid[5] ^ uid[6], 0x48, 0xFF, 0xFF])  # BCC1, locked
            + bytes([0xE1, 0x10, data_size // 8, 0x0F])  # CC: mapping 1.0, read-only
        )
        memory += tlv + bytes(data_size - len(tlv))
        self._memory = bytes(memory)

    def local_target(self, nfc):
        """The nfcpy ``LocalTarget`` to listen as (SEL_RES 00: Type 2)."""
        return nfc.clf.LocalTarget(
            "106A",
            sens_res=bytearray(b"\x44\x00"),
            sdd_res=bytearray(self.uid),
            sel_res=bytearray(b"\x00"),
        )

    def serve(self, nfc, clf, target, session: _Session) -> None:
        """Answer READ commands until the reader leaves, goes quiet or *session* ends."""
        command = target.tt2_cmd
        session.activated()
        pages = len(self._memory) // 4
        while command:
            if command[0] == 0x30 and len(command) == 2 and command[1] < pages:
                start = command[1] * 4
                # READ rolls over to page 0 past the end of memory, as on NXP tags.
                response = bytearray((self._memory + self._memory)[start : start + 16])
            elif command[0] in (0x50, 0x26, 0x52, 0x93, 0x95):
                return  # HLTA (the tag goes quiet) or a new poll: back to listening
            else:
                response = bytearray([0x00])  # NAK
            command = session.exchange(clf, response)


class Type4Card:
    """An ISO 14443-4A card: UID, ATS, an APDU responder, optional NDEF message.

    *uid* is 4 or 7 bytes (nfcpy's udp driver mishandles 10-byte UIDs). *fwi*
    sets the frame waiting time the card announces, 4096/13.56 MHz x 2**fwi:
    the default 10 (about 0.3 s) leaves a Python responder room on a busy
    machine while nfcpy still retries a lost frame. *responder* answers every
    APDU that the NDEF application does not (6D00 without one).
    """

    technology = "106A"

    def __init__(
        self,
        uid: bytes | str,
        responder: ApduResponder | None = None,
        ndef: Iterable[ndef.Record] | None = None,
        fwi: int = 10,
    ) -> None:
        self.uid = bytes.fromhex(uid) if isinstance(uid, str) else bytes(uid)
        if len(self.uid) not in (4, 7):
            raise ValueError("a Type 4 card UID is 4 or 7 bytes here")
        if not 0 <= fwi <= 14:
            raise ValueError("fwi is 0 to 14")
        self.fwi = fwi
        self._responder = responder
        self._records = None if ndef is None else list(ndef)

    def local_target(self, nfc):
        """The nfcpy ``LocalTarget`` to listen as (SEL_RES announces ISO-DEP)."""
        return nfc.clf.LocalTarget(
            "106A",
            # ATQA as DESFire / NTAG 424 DNA send it (double or single size UID).
            sens_res=bytearray(b"\x44\x03" if len(self.uid) == 7 else b"\x04\x03"),
            sdd_res=bytearray(self.uid),
            sel_res=bytearray(b"\x20"),
        )

    def _application(self) -> ApduResponder:
        fallback = self._responder
        if self._records is not None:
            return NdefApplication(self._records, fallback)
        return fallback or (lambda apdu: SW_INS_NOT_SUPPORTED)

    def serve(self, nfc, clf, target, session: _Session) -> None:
        """Run the card side of ISO-DEP until DESELECT, RF off, silence or *session* end."""
        rats = target.tt4_cmd
        if not rats or rats[0] != 0xE0 or len(rats) < 2:
            return
        fsd = _FRAME_SIZES[min(rats[1] >> 4, 8)]
        # TL, T0 (TA TB TC present, FSCI 8), TA (106 kbps only), TB (FWI, SFGI 0),
        # TC (no CID or NAD)
        ats = bytearray([5, 0x78, 0x00, self.fwi << 4, 0x00])
        app = self._application()
        session.activated()
        block_number = 1  # the PICC's current block number after activation
        last = ats
        chained_in = bytearray()
        pending_out = b""
        command = session.exchange(clf, ats)
        while command is not None:
            response: bytearray | None = None
            pcb = command[0] if command else 0
            if pcb & 0xE2 == 0x02 and not pcb & 0x0C:  # I-block, no CID, no NAD
                block_number = pcb & 1
                chained_in += command[1:]
                if pcb & 0x10:  # more to come from the reader
                    response = bytearray([0xA2 | block_number])
                else:
                    apdu, chained_in = bytes(chained_in), bytearray()
                    pending_out = app(apdu)
                    response, pending_out = self._i_block(block_number, pending_out, fsd)
            elif pcb & 0xE6 == 0xA2:  # R-block
                if pcb & 1 == block_number:
                    response = last  # the reader lost our last block: send it again
                elif pcb & 0x10:  # R(NAK), other number: presence check
                    response = bytearray([0xA2 | block_number])
                elif pending_out:  # R(ACK): the reader wants the next chained part
                    block_number ^= 1
                    response, pending_out = self._i_block(block_number, pending_out, fsd)
            elif pcb == 0xC2:  # S(DESELECT)
                session.exchange(clf, bytearray([0xC2]), wait=False)
                return
            else:  # not ISO-DEP: a new poll from a reader; go back to listening
                return
            if response is not None:
                last = response
            command = session.exchange(clf, response)

    @staticmethod
    def _i_block(block_number: int, data: bytes, fsd: int) -> tuple[bytearray, bytes]:
        room = fsd - 3  # PCB + 2-byte CRC, which the udp driver does not carry but counts
        more = len(data) > room
        pcb = 0x02 | block_number | (0x10 if more else 0)
        return bytearray([pcb]) + data[:room], data[room:]


class _Session:
    """Per-activation exchange helper: bounded waits, stop and idle handling."""

    def __init__(self, emulator: UdpCardEmulator) -> None:
        self._emulator = emulator

    def activated(self) -> None:
        self._emulator._activated()

    def exchange(self, clf, response, *, wait: bool = True):
        """Send *response* (None sends nothing) and return the next command.

        Returns None when the reader switched the field off, stayed silent
        for the emulator's ``idle_timeout``, or the emulator is stopping.
        """
        nfc = _import_nfc()
        if not wait:
            clf.exchange(response, 0)
            return None
        quiet_since = time.monotonic()
        while not self._emulator._stop.is_set():
            try:
                command = clf.exchange(response, 0.25)
            except nfc.clf.TimeoutError:
                command = None
            except nfc.clf.BrokenLinkError:
                return None  # RFOFF from the reader
            except nfc.clf.CommunicationError as error:
                log.debug("emulator: %s", error)
                command = None
            response = None  # sent once
            if command:
                return command
            if time.monotonic() - quiet_since > self._emulator.idle_timeout:
                return None
        return None


class UdpCardEmulator:
    """Serve one emulated card on nfcpy's udp driver, in a background thread.

    Usage::

        with UdpCardEmulator(Type3Card("0123456789ABCDEF"), port=port):
            with open_reader(NfcSettings(device=f"udp:127.0.0.1:{port}",
                                         targets=("212F",))) as reader:
                badge = reader.read(timeout=5)

    The card is in the field from :meth:`start` to :meth:`stop`: readers may
    activate it any number of times. It listens on *host* only.
    """

    def __init__(
        self,
        card: Type2Card | Type3Card | Type4Card,
        port: int,
        host: str = "127.0.0.1",
        idle_timeout: float = 2.0,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        #: An activation ends after this many seconds without a command.
        self.idle_timeout = idle_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._activations = 0
        self._activation = threading.Condition(self._lock)
        self.error: BaseException | None = None

    @property
    def activations(self) -> int:
        """How many times a reader has activated the card so far."""
        with self._lock:
            return self._activations

    def wait_activations(self, count: int, timeout: float) -> bool:
        """Block until the card was activated *count* times; False on timeout."""
        with self._activation:
            return self._activation.wait_for(lambda: self._activations >= count, timeout)

    def _activated(self) -> None:
        with self._activation:
            self._activations += 1
            self._activation.notify_all()

    def start(self) -> UdpCardEmulator:
        """Start serving; returns self.

        Raises BackendUnavailable without nfcpy, OSError if the port is taken.
        """
        nfc = _import_nfc()
        device = udp_device(self.host, self.port)
        # Bound before returning, so a reader's first poll is never lost.
        device.bind_listener()
        clf = nfc.ContactlessFrontend()
        clf.device = device
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(nfc, clf), name=f"nfc-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and wait up to *timeout* s for the thread. Idempotent.

        Raises RuntimeError if the thread did not end in time.
        """
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"nfc emulator on port {self.port} did not stop")

    def __enter__(self) -> UdpCardEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, nfc, clf) -> None:
        session = _Session(self)
        try:
            while not self._stop.is_set():
                # nfcpy's listen waits at least 0.5 s: the stop latency.
                target = clf.listen(self.card.local_target(nfc), 0.5)
                if target is not None:
                    log.debug("emulator activated as %s", target)
                    self.card.serve(nfc, clf, target, session)
        except BaseException as error:  # surfaced to the test or demo that owns us
            log.exception("nfc emulator on port %d failed", self.port)
            self.error = error
        finally:
            clf.close()
