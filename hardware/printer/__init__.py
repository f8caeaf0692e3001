"""Printers: print a PDF document (a visitor pass) and report the printer's state.

One entry point, :func:`open_printer`, builds a :class:`Printer` from
:class:`PrinterSettings`. Backends, by name:

* ``cups`` -- a CUPS queue (:mod:`hardware.printer.cups`), through ``lp``/``lpstat``: any
  printer CUPS drives (Brother QL labels through ``printer-driver-ptouch``, card printers
  through their drivers; docs/passes.md says how to add one);
* ``mock`` -- keeps the documents in memory, state set by the test (:mod:`hardware.printer.mock`).

The interface (:mod:`hardware.printer.base`): :meth:`Printer.print_pdf` (returns the job
id, raises :class:`PrintError`), :meth:`Printer.state` (a :class:`PrinterState`, whose
``status`` is ``ready``, ``printing`` or an alarm: ``stopped``, ``not_accepting``,
``out_of_media``, ``jammed``, ``offline``, ``unavailable``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hardware.printer.base import (
    CAN_PRINT,
    Printer,
    PrintError,
    PrinterState,
    PrinterStatus,
)
from hardware.registry import BackendRegistry

BACKENDS = BackendRegistry(
    "printer",
    {
        "cups": "hardware.printer.cups:CupsPrinter",
        "mock": "hardware.printer.mock:MockPrinter",
    },
)

__all__ = [
    "BACKENDS",
    "CAN_PRINT",
    "PrintError",
    "Printer",
    "PrinterSettings",
    "PrinterState",
    "PrinterStatus",
    "open_printer",
]


@dataclass(frozen=True)
class PrinterSettings:
    """Which printer prints the visitor passes.

    Attributes:
        backend: one of :data:`BACKENDS`.
        queue: the CUPS queue's name (``lpstat -p`` lists them).
        server: the CUPS server, ``host:port`` or a socket path; empty: the system's.
        timeout_s: the longest a CUPS command may take.
    """

    backend: str = "cups"
    queue: str = ""
    server: str = ""
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        BACKENDS.check(self.backend)
        if self.backend == "cups" and not self.queue:
            raise ValueError("queue: the CUPS queue to print on is required")
        if not 0.5 <= self.timeout_s <= 120:
            raise ValueError(f"timeout_s: {self.timeout_s!r} must be between 0.5 and 120")


def open_printer(settings: PrinterSettings) -> Printer:
    """The printer ``settings`` describe.

    Raises:
        BackendUnavailable: the backend's commands or library are missing.
    """
    factory = BACKENDS.load(settings.backend)
    printer: Printer = factory(
        settings.queue or settings.backend, server=settings.server, timeout_s=settings.timeout_s
    )
    return printer
