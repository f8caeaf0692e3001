"""Simulated badge reader for the demo and the tests (backend ``"sim"``).

Chosen only when the configuration says ``backend = "sim"``: nothing ever
falls back to it. Badges are put in front of the reader with
:meth:`SimReader.present`, from any thread::

    reader = open_reader(NfcSettings(backend="sim"))
    tap = reader.present("0A1B2C3D", ndef=[ndef.UriRecord("https://example.org")])
    badge = reader.read(timeout=1.0)       # the reading thread
    tap.wait(1.0)                          # the presenting thread

An ISO-DEP card is simulated with an *apdu_responder*, a function from a
command APDU to a response APDU (data + SW1 SW2), called during
:meth:`~hardware.nfc.base.Card.exchange_apdu` while the card is "in the field".
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from hardware.nfc.base import (
    FELICA,
    ISO14443A,
    ISO14443B,
    BadgeRead,
    Card,
    NfcSettings,
    Reader,
)

if TYPE_CHECKING:
    import ndef

log = logging.getLogger(__name__)

#: A simulated ISO-DEP card: command APDU in, response APDU (data + SW1 SW2) out.
#: It may raise :class:`~hardware.nfc.base.CardGone` to simulate the card leaving.
ApduResponder = Callable[[bytes], bytes]

_SIM_TECHNOLOGIES = (ISO14443A, ISO14443B, FELICA)


class Presentation:
    """One simulated tap, returned by :meth:`SimReader.present`."""

    def __init__(self, badge: BadgeRead, apdu_responder: ApduResponder | None) -> None:
        self.badge = badge
        self.apdu_responder = apdu_responder
        #: True once a read reported the tap, False if it was debounced or the
        #: reader closed first, None while the card waits in front of the reader.
        self.reported: bool | None = None
        self._done = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the reader has handled (or dropped) this tap.

        Returns True if it did within *timeout* seconds, False otherwise.
        """
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        """True once the reader has handled or dropped this tap."""
        return self._done.is_set()

    def _finish(self, reported: bool) -> None:
        self.reported = reported
        self._done.set()


class SimReader(Reader):
    """A reader whose badges are presented by code, not by hand.

    Taps queue up in order; each :meth:`read` takes the next one. The
    debounce of :class:`NfcSettings` applies as on real hardware. Taps may be
    presented before :meth:`open`; those still queued at :meth:`close` are
    dropped (their :class:`Presentation` finishes with ``reported=False``).
    """

    backend = "sim"

    def __init__(self, settings: NfcSettings) -> None:
        super().__init__(settings)
        self._taps: queue.Queue[Presentation | None] = queue.Queue()

    def present(
        self,
        uid: bytes | str,
        technology: str = ISO14443A,
        *,
        tag_type: str | None = None,
        product: str | None = None,
        ndef: Iterable[ndef.Record] = (),
        apdu_responder: ApduResponder | None = None,
    ) -> Presentation:
        """Put a badge in front of the reader. Thread-safe; returns at once.

        *uid* is bytes or a hex string. *technology* is ``"ISO14443A"``,
        ``"ISO14443B"`` or ``"FeliCa"``. With *apdu_responder* the card speaks
        ISO-DEP and *tag_type* defaults to ``"Type4Tag"``.

        Returns a :class:`Presentation` to wait on. Raises :class:`ValueError`
        for a malformed UID or technology.
        """
        if isinstance(uid, str):
            uid = bytes.fromhex(uid)
        if technology not in _SIM_TECHNOLOGIES:
            raise ValueError(f"technology must be one of {_SIM_TECHNOLOGIES}, not {technology!r}")
        if tag_type is None and apdu_responder is not None:
            tag_type = "Type4Tag"
        badge = BadgeRead(
            uid=uid,
            technology=technology,
            tag_type=tag_type,
            product=product,
            ndef=tuple(ndef),
            iso_dep=apdu_responder is not None,
            reader=self.backend,
        )
        tap = Presentation(badge, apdu_responder)
        self._taps.put(tap)
        return tap

    def _open(self) -> None:
        # Keep taps presented before open, forget wake-ups left by an earlier close.
        kept = [tap for tap in self._drain() if tap is not None]
        for tap in kept:
            self._taps.put(tap)

    def _close(self) -> None:
        for tap in self._drain():
            if tap is not None:
                tap._finish(reported=False)  # nobody will read it: wake its waiter
        self._taps.put(None)  # wakes a read() blocked in another thread

    def _drain(self) -> list[Presentation | None]:
        taps = []
        while True:
            try:
                taps.append(self._taps.get_nowait())
            except queue.Empty:
                return taps

    def _sense(self, timeout: float, handle: Callable[[Card], bool]) -> bool:
        try:
            tap = self._taps.get(timeout=timeout) if timeout > 0 else self._taps.get_nowait()
        except queue.Empty:
            return False
        if tap is None:  # close() woke us up
            return False
        # A fresh timestamp: the card is read now, not when it was queued.
        badge = dataclasses.replace(tap.badge, monotonic=time.monotonic(), wall=time.time())
        responder = tap.apdu_responder
        transceive = None
        if responder is not None:

            def transceive(apdu: bytes, timeout: float | None) -> bytes:
                return bytes(responder(apdu))

        card = Card(badge, transceive)
        reported = True  # if handle raises, the read was accepted: on_card failed
        try:
            reported = handle(card)
        finally:
            card.release()
            tap._finish(reported)
        return True


__all__ = ["ApduResponder", "Presentation", "SimReader"]
