"""A PC/SC desk reader (ACS ACR122U / ACR1252U, HID Omnikey...) as a card ``Transport``.

Through ``pyscard`` (the ``station`` extra: ``pip install 'portier[station]'``), which needs the
PC/SC daemon and its library (Debian: ``apt install pcscd libpcsclite1``; building pyscard from
source also needs ``libpcsclite-dev`` and ``swig``). ``pyscard`` is imported only when a reader is
opened; tests pass a connection shaped like pyscard's (``transmit(list[int]) -> (data, sw1, sw2)``).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["CardLeft", "PcscConnection", "PcscTransport", "ReaderUnavailable", "open_reader"]

#: PC/SC pseudo-APDU GET DATA (PC/SC part 3): the UID the reader saw at anticollision.
_GET_UID = b"\xff\xca\x00\x00\x00"


class CardLeft(ConnectionError):
    """The card left the reader (or stopped answering) in the middle of an exchange."""


class ReaderUnavailable(RuntimeError):
    """No PC/SC reader, no card on it, or pyscard / pcscd missing; the message says which."""


class PcscConnection(Protocol):
    """What this module uses of a ``smartcard.CardConnection``."""

    def transmit(self, command: list[int]) -> tuple[list[int], int, int]: ...


class PcscTransport:
    """``transmit(apdu) -> data + SW1 SW2`` over a pyscard connection; errors of the
    connection (the card was removed) become :class:`CardLeft`."""

    def __init__(self, connection: PcscConnection) -> None:
        self.connection = connection

    def transmit(self, apdu: bytes) -> bytes:
        try:
            data, sw1, sw2 = self.connection.transmit(list(apdu))
        except Exception as exc:  # pyscard raises CardConnectionException and kin
            raise CardLeft(f"the card left the reader ({exc})") from exc
        return bytes(data) + bytes([sw1, sw2])

    def uid(self) -> bytes:
        """The UID the reader saw at anticollision (GET DATA)."""
        answer = self.transmit(_GET_UID)
        if answer[-2:] != b"\x90\x00":
            raise ReaderUnavailable(
                f"the reader does not give the card's UID (SW {answer[-2:].hex()})"
            )
        return answer[:-2]


def open_reader(name: str | None = None) -> PcscTransport:
    """Connect to the card on the PC/SC reader whose name contains *name* (the first reader
    if None).

    Raises:
        ReaderUnavailable: pyscard missing, no such reader, or no card on it.
    """
    try:
        from smartcard.System import readers  # the optional station extra
    except ImportError:
        raise ReaderUnavailable(
            "PC/SC needs pyscard: pip install 'portier[station]' (and pcscd, libpcsclite1)"
        ) from None
    try:
        found: list[Any] = list(readers())
    except Exception as exc:
        raise ReaderUnavailable(f"PC/SC is not running (pcscd): {exc}") from None
    chosen = [r for r in found if name is None or name.lower() in str(r).lower()]
    if not chosen:
        names = ", ".join(str(r) for r in found) or "none"
        raise ReaderUnavailable(f"no PC/SC reader matches {name!r} (readers: {names})")
    connection = chosen[0].createConnection()
    try:
        connection.connect()
    except Exception as exc:
        raise ReaderUnavailable(
            f"no card on {chosen[0]}: put the card on the reader ({exc})"
        ) from None
    return PcscTransport(connection)
