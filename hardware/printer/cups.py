"""The CUPS backend: print through the system's CUPS with its ``lp`` and ``lpstat`` commands.

CUPS (IPP) is the standard Linux printing system: any printer with a CUPS driver works,
a Brother QL label printer through Debian's ``printer-driver-ptouch``, a card printer
through its maker's driver (docs/passes.md). This backend only hands the PDF to a queue
and reads the queue's state; CUPS's filters and the driver do the rest.

Why the commands rather than a library: ``lp``/``lpstat`` (Debian ``cups-client``) are
CUPS's own IPP client, their output in the C locale has been stable for decades, they
need no compiler (pycups does) and no event loop (pyipp is asyncio). Every call has a
timeout and runs with ``LC_ALL=C`` so the output is parsed in English.

The state comes from ``lpstat -l -p QUEUE`` (idle / printing / disabled, the operator's
message, and ``Alerts:``, the IPP ``printer-state-reasons``) and ``lpstat -a QUEUE``
(accepting jobs or not). Reasons map to statuses as :func:`status_from` says.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile

from hardware.errors import BackendUnavailable
from hardware.printer.base import Printer, PrintError, PrinterState, PrinterStatus

log = logging.getLogger(__name__)

_PRINTER_LINE = re.compile(r"^printer (\S+) (is idle|now printing|is printing|disabled)")
_JOB_ID = re.compile(r"request id is (\S+)")
#: IPP printer-state-reasons (keyword prefixes, RFC 8011 / PWG 5100.x) -> status, in
#: priority order: the first that matches wins.
REASON_STATUS: tuple[tuple[str, PrinterStatus], ...] = (
    ("media-jam", PrinterStatus.JAMMED),
    ("cover-open", PrinterStatus.JAMMED),
    ("door-open", PrinterStatus.JAMMED),
    ("media-empty", PrinterStatus.OUT_OF_MEDIA),
    ("media-needed", PrinterStatus.OUT_OF_MEDIA),
    ("marker-supply-empty", PrinterStatus.OUT_OF_MEDIA),
    ("toner-empty", PrinterStatus.OUT_OF_MEDIA),
    ("offline", PrinterStatus.OFFLINE),
    ("shutdown", PrinterStatus.OFFLINE),
    ("connecting-to-device", PrinterStatus.OFFLINE),
    ("timed-out", PrinterStatus.OFFLINE),
)


def status_from(
    reasons: tuple[str, ...], *, enabled: bool, printing: bool, accepting: bool
) -> PrinterStatus:
    """The status of a queue from its reasons and flags.

    A reason that names a fault (jam, empty, offline) wins, even on a disabled queue (CUPS
    stops a queue after the fault), because it tells the guard what to do. ``-report`` and
    ``-warning`` reasons (``media-low-warning``) are not faults.
    """
    for reason in reasons:
        if reason.endswith(("-report", "-warning")) and not reason.startswith("offline"):
            continue
        for prefix, status in REASON_STATUS:
            if reason.startswith(prefix):
                return status
    if not enabled:
        return PrinterStatus.STOPPED
    if not accepting:
        return PrinterStatus.NOT_ACCEPTING
    return PrinterStatus.PRINTING if printing else PrinterStatus.READY


class CupsPrinter(Printer):
    """The CUPS queue ``queue`` on ``server`` (``host:port`` or a socket path; empty: the
    system's default, ``CUPS_SERVER`` or ``/run/cups/cups.sock``).

    Raises :class:`~hardware.errors.BackendUnavailable` when ``lp``/``lpstat`` are missing
    (``apt install cups-client``).
    """

    def __init__(
        self, queue: str, *, server: str = "", timeout_s: float = 10.0, user: str = ""
    ) -> None:
        if not queue or "/" in queue or any(c.isspace() for c in queue):
            raise ValueError(f"queue: {queue!r} is not a CUPS queue name")
        for tool in ("lp", "lpstat"):
            if shutil.which(tool) is None:
                raise BackendUnavailable(
                    f"printer backend 'cups': the command {tool!r} is missing "
                    "(apt install cups-client)"
                )
        self.name = queue
        self.server = server
        self.timeout_s = timeout_s
        #: The job owner's name (``lp -U``); empty: the agent's own user.
        self.user = user

    def _run(self, *args: str, input_path: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [args[0]]
        if self.server:
            command += ["-h", self.server]
        if self.user and args[0] == "lp":
            command += ["-U", self.user]
        command += list(args[1:])
        if input_path:
            command.append(input_path)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        return subprocess.run(
            command, capture_output=True, text=True, timeout=self.timeout_s, env=env
        )

    def state(self) -> PrinterState:
        try:
            shown = self._run("lpstat", "-l", "-p", self.name)
            accepting = self._run("lpstat", "-a", self.name)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return PrinterState(PrinterStatus.UNAVAILABLE, message=f"lpstat: {exc}")
        if shown.returncode != 0:
            # "Invalid destination name", "Unable to connect to server", "Bad file descriptor".
            problem = (shown.stderr or shown.stdout).strip().removeprefix("lpstat: ")
            return PrinterState(PrinterStatus.UNAVAILABLE, message=problem)
        return parse_lpstat(shown.stdout, accepting.stdout)

    def print_pdf(self, pdf: bytes, *, title: str) -> str:
        state = self.state()
        if not state.can_print:
            raise PrintError(f"printer {self.name!r} cannot print: {state.status}", state)
        safe_title = re.sub(r"[^\w .:-]", "_", title)[:60] or "pass"
        with tempfile.NamedTemporaryFile(suffix=".pdf", prefix="portier-pass-") as handle:
            handle.write(pdf)
            handle.flush()
            try:
                done = self._run(
                    "lp", "-d", self.name, "-t", safe_title, "-o", "fit-to-page",
                    input_path=handle.name,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise PrintError(f"lp: {exc}", self.state()) from exc
        if done.returncode != 0:
            raise PrintError(f"lp: {(done.stderr or done.stdout).strip()}", self.state())
        match = _JOB_ID.search(done.stdout)
        job = match.group(1) if match else ""
        log.info("printer %s: job %s queued (%s)", self.name, job or "?", safe_title)
        return job


def parse_lpstat(printer_text: str, accepting_text: str) -> PrinterState:
    """The :class:`PrinterState` of ``lpstat -l -p Q`` and ``lpstat -a Q`` outputs (C locale)."""
    lines = printer_text.splitlines()
    enabled, printing = True, False
    message = ""
    reasons: tuple[str, ...] = ()
    for i, line in enumerate(lines):
        match = _PRINTER_LINE.match(line)
        if match:
            state = match.group(2)
            enabled = state != "disabled"
            printing = "printing" in state
            # "... since DATE -" : the operator's or backend's message is the next line.
            if line.rstrip().endswith(" -") and i + 1 < len(lines):
                message = lines[i + 1].strip()
        stripped = line.strip()
        if stripped.startswith("Alerts:"):
            words = stripped.removeprefix("Alerts:").replace(",", " ").split()
            reasons = tuple(w for w in words if w != "none")
    accepting = "not accepting" not in accepting_text
    status = status_from(reasons, enabled=enabled, printing=printing, accepting=accepting)
    if not accepting and not message:
        tail = accepting_text.splitlines()[1:]
        message = tail[0].strip() if tail else ""
    return PrinterState(status, reasons, message)
