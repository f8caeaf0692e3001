"""An nfcpy reader (PN53x on USB or serial: ``usb``, ``tty:USB0:pn532``...) as a card ``Transport``.

The station talks ISO-DEP to the card through nfcpy's ``Type4Tag.transceive`` (raw APDUs; the
response ends in SW1 SW2). nfcpy is a main dependency (the doors use it through
``hardware.nfc``, which the central may not import: this is the station's own thin seam).
"""

from __future__ import annotations

from typing import Any, Protocol

from .pcsc import CardLeft, ReaderUnavailable

__all__ = ["NfcpyTransport", "open_nfc_reader"]


class IsoDepTag(Protocol):
    """What this module uses of an nfcpy ``Type4Tag``."""

    identifier: bytes

    def transceive(self, data: bytes, timeout: float | None = None) -> bytes: ...


class NfcpyTransport:
    """``transmit(apdu)`` over an nfcpy Type 4 tag; nfcpy's errors become :class:`CardLeft`."""

    def __init__(self, tag: IsoDepTag, frontend: Any = None) -> None:
        self.tag, self.frontend = tag, frontend

    def transmit(self, apdu: bytes) -> bytes:
        try:
            answer = self.tag.transceive(bytes(apdu))
        except Exception as exc:  # nfc.clf.CommunicationError, TimeoutError...
            raise CardLeft(f"the card left the reader ({exc})") from exc
        if answer is None or len(answer) < 2:
            raise CardLeft("the card did not answer")
        return bytes(answer)

    def uid(self) -> bytes:
        return bytes(self.tag.identifier)

    def close(self) -> None:
        if self.frontend is not None:
            self.frontend.close()


def open_nfc_reader(path: str, *, timeout_s: float = 10.0) -> NfcpyTransport:
    """Wait up to *timeout_s* for an ISO-DEP card on the nfcpy reader at *path*.

    Raises:
        ReaderUnavailable: no such reader, or no ISO-DEP card came.
    """
    import time

    import nfc

    try:
        frontend = nfc.ContactlessFrontend(path)
    except OSError as exc:
        raise ReaderUnavailable(f"no nfcpy reader at {path!r} ({exc})") from None
    deadline = time.monotonic() + timeout_s
    tag = frontend.connect(
        rdwr={"on-connect": lambda tag: False, "iterations": 1},
        terminate=lambda: time.monotonic() > deadline,
    )
    if tag is None or not hasattr(tag, "transceive"):
        frontend.close()
        raise ReaderUnavailable("no NTAG 424 DNA (ISO-DEP card) on the reader: put the card on it")
    return NfcpyTransport(tag, frontend)
