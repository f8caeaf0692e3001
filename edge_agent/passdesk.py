"""The pass printer: the agent prints the visitor passes the kiosk renders, and watches it.

Why the agent and not the kiosk: the printer is hardware, like the door, and the kiosk
reaches hardware only for its camera (frames drawn on screen at 15 fps) and QR decoding
(the import-linter contracts). The agent owns the printer so that

* one place journals every pass printed or not printed (``pass.printed``,
  ``pass.print_failed``), a guard's reprint included (``by: guard:<id>``, ``reprint``),
  and syncs it, with the pass's hash, never its id (the id checks a visitor out: it is
  not for the event stream nor the central);
* the printer's state is an alarm of the door (``printer_fault``) that the guard console,
  ``edge-agent status`` and the central see like any other, whether or not a kiosk runs;
* the kiosk stays a UI: it renders the pass (it has the fonts, the wording, the photo)
  and sends the PDF through its local-API client (``POST /v1/passes/print``).

The printer's state is read at most every :data:`STATE_TTL_S` seconds (``lpstat`` is a
process): on every status request (the kiosk polls every few seconds) and before
every print. A bad state raises ``printer_fault`` (details: status, message); a good one
clears it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from edge_agent.door import Alarm, DoorController
from edge_agent.errors import ActionError
from edge_agent.grants import Journal
from edge_agent.guards import Session
from hardware.errors import HardwareError
from hardware.printer import Printer, PrintError, PrinterState, PrinterStatus
from portier_common.passes import PassQrError, check_pass_id, pass_hash

log = logging.getLogger(__name__)

#: Seconds a printer state read is reused.
STATE_TTL_S = 5.0
#: The largest pass PDF accepted (a 300 dpi label with a photo is about 0.3 MB).
MAX_PDF_BYTES = 3 * 1024 * 1024


class PassDesk:
    """Prints passes on ``printer`` (None: this kiosk has no printer) for the door ``door``."""

    def __init__(
        self,
        printer: Printer | None,
        door: DoorController | None,
        *,
        journal: Journal,
        guard_session: Callable[[str], Session],
        mono: Callable[[], float],
        pass_belongs: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.printer = printer
        self._door = door
        self._journal = journal
        self._guard_session = guard_session
        self._mono = mono
        #: Whether a pass id is the current pass of an invitation's visit on site
        #: (:meth:`edge_agent.onsite.OnSite.pass_belongs`; None: not checked).
        self._pass_belongs = pass_belongs
        self._lock = threading.Lock()
        self._state: PrinterState | None = None
        self._read_at = 0.0

    def state(self, *, fresh: bool = False) -> PrinterState | None:
        """The printer's state (None without a printer); raises or clears the alarm."""
        printer = self.printer
        if printer is None:
            return None
        with self._lock:
            now = self._mono()
            if fresh or self._state is None or now - self._read_at >= STATE_TTL_S:
                try:
                    state = printer.state()
                except (HardwareError, OSError) as exc:  # a backend bug must not stop status
                    state = PrinterState(PrinterStatus.UNAVAILABLE, message=str(exc))
                self._read_at = now
                changed = self._state is None or self._state.status != state.status
                self._state = state
                if changed:
                    self._alarm(state)
            return self._state

    def _alarm(self, state: PrinterState) -> None:
        door = self._door
        if door is None:
            return
        if state.can_print:
            door.clear_alarm(Alarm.PRINTER_FAULT)
        else:
            log.warning("pass printer %s: %s %s", self.printer and self.printer.name,
                        state.status, state.message)  # fmt: skip
            door.raise_alarm(Alarm.PRINTER_FAULT, status=state.status.value, message=state.message)

    def status(self) -> dict[str, Any] | None:
        """The ``printer`` entry of the agent's status (None without a printer)."""
        state = self.state()
        if state is None or self.printer is None:
            return None
        return {"name": self.printer.name, **state.as_dict()}

    def print_pass(
        self,
        pdf: bytes,
        *,
        pass_id: str,
        invitation_id: str,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Print the pass ``pass_id`` of ``invitation_id`` (journaled either way).

        With a guard's session ``token`` it is the guard's reprint (``by: guard:<id>``).
        Returns ``{"printed": true, "job": ...}``; raises :class:`ActionError`
        ``no_printer`` (none configured), ``bad_request`` (not a PDF, bad pass id),
        ``wrong_pass`` (not the pass id the check-in or a guard's reissue gave this
        visit on site: such a pass would check nobody out) or ``printer_unavailable``
        (its ``state`` in the journal and the alarm).
        """
        try:
            check_pass_id(pass_id)
        except PassQrError as exc:
            raise ActionError("bad_request", f"pass_id: {exc}") from None
        if not isinstance(invitation_id, str) or not invitation_id or len(invitation_id) > 200:
            raise ActionError("bad_request", "'invitation_id' must be a non-empty string")
        if not pdf.startswith(b"%PDF-") or len(pdf) > MAX_PDF_BYTES:
            raise ActionError("bad_request", f"not a PDF document of at most {MAX_PDF_BYTES} bytes")
        by = "visitor" if token is None else f"guard:{self._guard_session(token).guard_id}"
        printer = self.printer
        if printer is None:
            raise ActionError("no_printer", "this kiosk has no pass printer")
        if self._pass_belongs is not None and not self._pass_belongs(invitation_id, pass_id):
            raise ActionError("wrong_pass", "this pass id is not the one of this visit on site")
        digest = pass_hash(pass_id)
        payload: dict[str, Any] = {
            "pass_hash": digest,
            "invitation_id": invitation_id,
            "by": by,
            "reprint": token is not None,
        }
        state = self.state(fresh=True)
        try:
            if state is not None and not state.can_print:
                raise PrintError(f"the printer cannot print: {state.status}", state)
            job = printer.print_pdf(pdf, title=f"pass {digest[:8]}")
        except (PrintError, HardwareError, OSError) as exc:
            failed = getattr(exc, "state", None) or state
            detail = failed.as_dict() if failed is not None else {"status": "unavailable"}
            self._journal("pass.print_failed", {**payload, "printer": detail, "error": str(exc)})
            raise ActionError("printer_unavailable", f"the pass was not printed: {exc}") from None
        self._journal("pass.printed", {**payload, "job": job})
        return {"printed": True, "job": job, "pass_id": pass_id}

    def print_muster(self, pdf: bytes) -> dict[str, Any]:
        """Print the muster list the kiosk rendered (``POST /v1/muster/print``).

        No session: like the list itself, a kiosk prints it in a fire. Journals
        ``muster.printed`` (``job``, ``pages`` unknown: the PDF's) or
        ``muster.print_failed``; raises ``bad_request``, ``no_printer`` or
        ``printer_unavailable`` as :meth:`print_pass`."""
        if not pdf.startswith(b"%PDF-") or len(pdf) > MAX_PDF_BYTES:
            raise ActionError("bad_request", f"not a PDF document of at most {MAX_PDF_BYTES} bytes")
        printer = self.printer
        if printer is None:
            raise ActionError("no_printer", "this kiosk has no printer")
        state = self.state(fresh=True)
        try:
            if state is not None and not state.can_print:
                raise PrintError(f"the printer cannot print: {state.status}", state)
            job = printer.print_pdf(pdf, title="muster list")
        except (PrintError, HardwareError, OSError) as exc:
            failed = getattr(exc, "state", None) or state
            detail = failed.as_dict() if failed is not None else {"status": "unavailable"}
            self._journal("muster.print_failed", {"printer": detail, "error": str(exc)})
            raise ActionError("printer_unavailable", f"the list was not printed: {exc}") from None
        self._journal("muster.printed", {"job": job})
        return {"printed": True, "job": job}
