"""The door's wall readers: OSDP (Secure Channel) and legacy Wiegand.

:func:`open_door_reader` is the one entry point: it takes :class:`ReaderSettings`
(``[hardware.reader]``), imports the configured backend module (and only that one) and
returns an open :class:`DoorReader`::

    from hardware.reader import ReaderSettings, open_door_reader

    with open_door_reader(settings, on_alarm=print) as readers:
        presented = readers.read(timeout=1.0)
        if presented is not None:
            readers.feedback(presented.reader, "grant")

Backends, one module each:

* ``osdp`` (:mod:`hardware.reader.osdp`) -- readers on an RS-485 bus, the agent as
  libosdp's Control Panel, Secure Channel enforced with a key per reader;
* ``wiegand`` (:mod:`hardware.reader.wiegand`) -- one legacy reader on two GPIO lines
  through gpiozero. Wiegand sends the card in clear: it can be sniffed and replayed.

There is no simulator backend: the tests and the bench run these backends against
libosdp's own Peripheral Device (:mod:`hardware.reader.emulator`) and gpiozero's
MockFactory. A backend that cannot load raises
:class:`~hardware.errors.BackendUnavailable`; nothing replaces it silently.
See docs/readers.md.
"""

from __future__ import annotations

from typing import Any

from hardware.reader.base import (
    AlarmCallback,
    CardRead,
    DoorReader,
    Feedback,
    Presentation,
    ReaderAlarm,
    ReaderAlarmKind,
    ReaderClosed,
)
from hardware.reader.formats import BUILTIN_FORMATS, Parity, ParityError, WiegandFormat
from hardware.reader.settings import BACKENDS, PeripheralSettings, ReaderSettings

__all__ = [
    "BACKENDS",
    "BUILTIN_FORMATS",
    "AlarmCallback",
    "CardRead",
    "DoorReader",
    "Feedback",
    "Parity",
    "ParityError",
    "PeripheralSettings",
    "Presentation",
    "ReaderAlarm",
    "ReaderAlarmKind",
    "ReaderClosed",
    "ReaderSettings",
    "WiegandFormat",
    "open_door_reader",
    "reader_class",
]


def reader_class(backend: str) -> type[DoorReader]:
    """Import and return the :class:`DoorReader` subclass of ``backend``."""
    cls: type[DoorReader] = BACKENDS.load(backend)
    return cls


def open_door_reader(
    settings: ReaderSettings, *, on_alarm: AlarmCallback | None = None, **backend: Any
) -> DoorReader:
    """Create the readers ``settings`` name and open them.

    ``backend`` keywords go to the backend (``channel=`` for OSDP, ``pin_factory=`` for
    Wiegand). Raises :class:`~hardware.errors.UnknownBackend` and
    :class:`~hardware.errors.BackendUnavailable` (with a hint).
    """
    reader = reader_class(settings.backend)(settings, on_alarm=on_alarm, **backend)
    reader.open()
    return reader
