"""Badge readers behind one interface.

:func:`open_reader` is the one entry point: it takes :class:`NfcSettings`,
imports the configured backend module (and only that one) and returns an open
:class:`Reader`::

    from hardware.nfc import NfcSettings, open_reader

    with open_reader(NfcSettings(backend="nfcpy", device="usb:072f:2200")) as reader:
        badge = reader.read(timeout=5.0)

Backends, one module each:

* ``nfcpy`` (:mod:`hardware.nfc.nfcpy`) -- nfcpy's ContactlessFrontend on USB
  and serial readers, and nfcpy's own ``udp`` driver for an emulated card
  (:mod:`hardware.nfc.emulator`);
* ``wedge`` (:mod:`hardware.nfc.wedge`) -- keyboard-wedge USB readers that
  type the UID, read through python-evdev;
* ``sim`` (:mod:`hardware.nfc.sim`) -- badges presented by code.

The simulator is used only when configured: a missing library or device raises
:class:`~hardware.errors.BackendUnavailable` and is never replaced silently.
See docs/nfc.md.
"""

from __future__ import annotations

from hardware.errors import BackendUnavailable, UnknownBackend
from hardware.nfc.base import (
    BACKENDS,
    FELICA,
    ISO14443A,
    ISO14443B,
    WEDGE,
    BadgeRead,
    Card,
    CardGone,
    CardHandler,
    NfcSettings,
    NotIsoDep,
    Reader,
    ReaderClosed,
)


def reader_class(backend: str) -> type[Reader]:
    """Import and return the :class:`Reader` subclass of *backend*.

    Raises :class:`~hardware.errors.UnknownBackend` for a name not in
    :data:`~hardware.nfc.base.BACKENDS`.
    """
    cls: type[Reader] = BACKENDS.load(backend)
    return cls


def open_reader(settings: NfcSettings) -> Reader:
    """Create the reader *settings* name and open it.

    Returns an open :class:`Reader` (close it, or use it as a context
    manager). Raises :class:`~hardware.errors.UnknownBackend` for an unknown
    backend name and :class:`~hardware.errors.BackendUnavailable`, with a hint,
    when the backend's library or device is missing, busy or not accessible.
    """
    reader = reader_class(settings.backend)(settings)
    reader.open()
    return reader


__all__ = [
    "FELICA",
    "ISO14443A",
    "ISO14443B",
    "WEDGE",
    "BackendUnavailable",
    "BadgeRead",
    "Card",
    "CardGone",
    "CardHandler",
    "NfcSettings",
    "NotIsoDep",
    "Reader",
    "ReaderClosed",
    "UnknownBackend",
    "open_reader",
    "reader_class",
]
