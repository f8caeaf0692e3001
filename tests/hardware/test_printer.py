"""Printers: the interface, the CUPS backend's state parsing, the mock, the settings.

The CUPS backend against a real daemon is in test_printer_cups.py.
"""

from __future__ import annotations

import pytest

from hardware.errors import UnknownBackend
from hardware.printer import (
    PrintError,
    PrinterSettings,
    PrinterStatus,
    open_printer,
)
from hardware.printer.cups import parse_lpstat
from hardware.printer.mock import MockPrinter

IDLE = "printer Q is idle.  enabled since Sat Dec  5 05:44:43 2026\n\tForm mounted:\n\tAlerts: {}\n"
DISABLED = (
    "printer Q disabled since Sat Dec  5 05:44:49 2026 -\n\t{}\n\tForm mounted:\n\tAlerts: {}\n"
)
ACCEPTING = "Q accepting requests since Sat Dec  5 05:44:43 2026\n"
REJECTING = "Q not accepting requests since Sat Dec  5 05:44:43 2026 -\n\tmaintenance\n"


@pytest.mark.parametrize(
    ("printer", "accepting", "status"),
    [
        (IDLE.format("none"), ACCEPTING, PrinterStatus.READY),
        (IDLE.format("media-low-warning"), ACCEPTING, PrinterStatus.READY),
        (IDLE.replace("is idle.", "now printing Q-3.").format("none"), ACCEPTING, "printing"),
        (DISABLED.format("out of labels", "paused"), ACCEPTING, PrinterStatus.STOPPED),
        (DISABLED.format("Media empty", "media-empty-error"), ACCEPTING, "out_of_media"),
        (DISABLED.format("Jam", "media-jam-error, paused"), ACCEPTING, PrinterStatus.JAMMED),
        (IDLE.format("cover-open-error"), ACCEPTING, PrinterStatus.JAMMED),
        (IDLE.format("offline-report"), ACCEPTING, PrinterStatus.OFFLINE),
        (IDLE.format("none"), REJECTING, PrinterStatus.NOT_ACCEPTING),
    ],
)
def test_lpstat_output_becomes_a_status(printer: str, accepting: str, status: str) -> None:
    state = parse_lpstat(printer, accepting)
    assert state.status == status
    assert state.can_print == (status in ("ready", "printing"))


def test_the_operator_message_and_reasons_are_kept() -> None:
    state = parse_lpstat(DISABLED.format("out of labels", "media-empty-error paused"), ACCEPTING)
    assert state.message == "out of labels"
    assert state.reasons == ("media-empty-error", "paused")
    assert state.as_dict() == {
        "status": "out_of_media",
        "can_print": False,
        "reasons": ["media-empty-error", "paused"],
        "message": "out of labels",
    }
    assert parse_lpstat(IDLE.format("none"), REJECTING).message == "maintenance"


def test_the_mock_prints_until_it_is_jammed() -> None:
    printer = open_printer(PrinterSettings(backend="mock"))
    assert isinstance(printer, MockPrinter)
    assert printer.print_pdf(b"%PDF-1.4", title="pass") == "mock-1"
    printer.set_state(PrinterStatus.JAMMED, "media-jam-error")
    with pytest.raises(PrintError) as caught:
        printer.print_pdf(b"%PDF-1.4", title="pass")
    assert caught.value.state is not None
    assert caught.value.state.status == PrinterStatus.JAMMED
    assert isinstance(caught.value, OSError)  # a DeviceError
    assert len(printer.jobs) == 1


def test_settings_name_the_bad_field() -> None:
    with pytest.raises(UnknownBackend, match="backend"):
        PrinterSettings(backend="escpos")
    with pytest.raises(ValueError, match=r"^queue:"):
        PrinterSettings(backend="cups")
    with pytest.raises(ValueError, match=r"^timeout_s:"):
        PrinterSettings(backend="mock", timeout_s=0)
