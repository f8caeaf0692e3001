"""The printer interface: print a PDF, tell the printer's state. Backends implement it.

A :class:`Printer` prints a whole document (a visitor pass) and reports a
:class:`PrinterState`. It does not render anything and speaks no printer protocol: the
CUPS backend (:mod:`hardware.printer.cups`) hands the PDF to the system's printing
system, whose driver turns it into what the printer needs.

Every method may block for up to the backend's timeout: call it from a worker thread,
never from a UI thread.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

from hardware.errors import DeviceError


class PrinterStatus(enum.StrEnum):
    """What a printer can do now. All but ``ready`` and ``printing`` are alarms."""

    #: Idle, enabled, accepting jobs.
    READY = "ready"
    #: Printing a job; a new one waits in the queue.
    PRINTING = "printing"
    #: Stopped (disabled, paused) by an operator or after a backend error.
    STOPPED = "stopped"
    #: The queue refuses new jobs (``cupsreject``).
    NOT_ACCEPTING = "not_accepting"
    #: Out of labels, cards or ribbon.
    OUT_OF_MEDIA = "out_of_media"
    #: Jammed (media jam), or its cover is open.
    JAMMED = "jammed"
    #: The printer does not answer (unplugged, switched off, off the network).
    OFFLINE = "offline"
    #: The print system itself cannot be reached, or the queue does not exist.
    UNAVAILABLE = "unavailable"


#: The statuses in which a job can be sent and will be printed.
CAN_PRINT = frozenset({PrinterStatus.READY, PrinterStatus.PRINTING})


@dataclass(frozen=True)
class PrinterState:
    """A printer's state at one moment.

    ``reasons`` are the print system's own words (IPP ``printer-state-reasons`` such as
    ``media-empty-error``, ``paused``); ``message`` is the operator's or the printer's
    free text (``cupsdisable -r "out of labels"``), empty when there is none.
    """

    status: PrinterStatus
    reasons: tuple[str, ...] = ()
    message: str = ""

    @property
    def can_print(self) -> bool:
        """True when a job sent now will be printed."""
        return self.status in CAN_PRINT

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (the agent's status, the guard console)."""
        return {
            "status": self.status.value,
            "can_print": self.can_print,
            "reasons": list(self.reasons),
            "message": self.message,
        }


class PrintError(DeviceError):
    """A document could not be handed to the printer; ``state`` says why when known."""

    def __init__(self, message: str, state: PrinterState | None = None) -> None:
        super().__init__(message)
        self.state = state


class Printer(abc.ABC):
    """One printer (a CUPS queue, or a test double)."""

    #: The name the configuration gave (queue name), for logs and status.
    name: str = ""

    @abc.abstractmethod
    def state(self) -> PrinterState:
        """The printer's state now. Never raises: an unreachable system is ``unavailable``."""

    @abc.abstractmethod
    def print_pdf(self, pdf: bytes, *, title: str) -> str:
        """Queue the PDF document ``pdf`` (``title`` names the job); return the job id.

        Raises:
            PrintError: the printer cannot print now (its :class:`PrinterState` attached)
                or the print system refused the job.
        """

    def close(self) -> None:  # noqa: B027 -- optional hook; nothing to release by default
        """Release what the backend holds. Idempotent."""

    def __enter__(self) -> Printer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
