"""A printer for tests and the demo: it keeps the documents, and its state is set by hand.

Never chosen silently: only ``[hardware.printer] backend = "mock"`` selects it.
"""

from __future__ import annotations

import threading

from hardware.printer.base import Printer, PrintError, PrinterState, PrinterStatus


class MockPrinter(Printer):
    """Keeps every printed PDF in :attr:`jobs` (``(job id, title, pdf)``)."""

    def __init__(self, queue: str = "mock", **_ignored: object) -> None:
        self.name = queue
        self.jobs: list[tuple[str, str, bytes]] = []
        self._state = PrinterState(PrinterStatus.READY)
        self._lock = threading.Lock()

    def set_state(self, status: PrinterStatus, *reasons: str, message: str = "") -> None:
        """What :meth:`state` answers from now on (``set_state(JAMMED, "media-jam-error")``)."""
        with self._lock:
            self._state = PrinterState(status, reasons, message)

    def state(self) -> PrinterState:
        with self._lock:
            return self._state

    def print_pdf(self, pdf: bytes, *, title: str) -> str:
        with self._lock:
            if not self._state.can_print:
                raise PrintError(
                    f"printer {self.name!r} cannot print: {self._state.status}", self._state
                )
            job = f"{self.name}-{len(self.jobs) + 1}"
            self.jobs.append((job, title, pdf))
            return job
