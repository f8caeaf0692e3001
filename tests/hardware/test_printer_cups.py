"""The CUPS backend against a real CUPS daemon with a virtual PDF printer (cups-pdf).

The test run starts its own ``cupsd`` (tests/support/cups_rig.py: own configuration,
folders and port; the machine's CUPS is not touched), adds a queue on Debian's
``printer-driver-cups-pdf``, prints a visitor pass end to end, turns the PDF that
cups-pdf wrote into an image (pdftoppm) and reads its QR code back with the kiosk's
decoder. Then it stops and rejects the queue, as a guard or a fault would, and checks
the state the agent turns into an alarm.

Needs Debian's ``cups``, ``cups-client``, ``printer-driver-cups-pdf`` and
``poppler-utils`` (``tools/dev test`` installs them); cups-pdf prints only when cupsd
runs as root, so without root the end-to-end print is skipped (the state tests run on
a queue that prints to /dev/null).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardware.printer import PrintError, PrinterStatus
from hardware.printer.cups import CupsPrinter
from kiosk.config import PassSection
from kiosk.passes import VisitorPass, render_pdf
from portier_common.passes import new_pass_id
from tests.support.cups_rig import CUPS_PDF_ANONYMOUS, JOB_USER, CupsRig, missing_tools
from tests.support.pdf_kit import pdf_to_image, qr_texts

pytestmark = pytest.mark.processes
ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def cups() -> Iterator[CupsRig]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"apt-get install {' '.join(missing)} (tools/dev test installs them)")
    rig = CupsRig()
    try:
        rig.start()
        yield rig
    finally:
        rig.stop()


@pytest.fixture
def queue(cups: CupsRig) -> Iterator[str]:
    name = "Portier" + secrets.token_hex(3)
    if ROOT:
        cups.add_pdf_printer(name)
    else:
        cups.lpadmin("-p", name, "-E", "-v", "file:/dev/null")
    yield name
    cups.lpadmin("-x", name)


def a_pass() -> VisitorPass:
    now = time.time()
    return VisitorPass(
        pass_id=new_pass_id(),
        visitor="Chloé Dubois",
        host="Jean Tremblay",
        site="hq",
        valid_from=now - 60,
        valid_until=now + 8 * 3600,
        issued_at=now,
        doors=("gate-a",),
    )


def wait_for_output(title: str, timeout_s: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = sorted(CUPS_PDF_ANONYMOUS.glob(f"{title}*.pdf"))
        if found and found[0].stat().st_size > 0:
            time.sleep(0.3)  # cups-pdf writes, then closes
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"cups-pdf wrote no {title}*.pdf in {CUPS_PDF_ANONYMOUS}")


@pytest.mark.skipif(not ROOT, reason="cups-pdf prints only when cupsd runs as root")
@pytest.mark.parametrize("layout", ["label62", "cr80"])
def test_a_pass_printed_through_cups_has_the_pass_qr_code(
    cups: CupsRig, queue: str, layout: str
) -> None:
    printer = CupsPrinter(queue, server=cups.server, user=JOB_USER)
    assert printer.state().status == PrinterStatus.READY
    visitor_pass = a_pass()
    title = f"pass-{visitor_pass.pass_id[:10]}"
    job = printer.print_pdf(render_pdf(visitor_pass, PassSection(layout=layout)), title=title)
    assert job.startswith(queue + "-")
    printed = wait_for_output(title)
    try:
        image = pdf_to_image(printed)
    finally:
        printed.unlink()
    assert qr_texts(image) == [visitor_pass.qr_text]
    assert printer.state().can_print


def test_a_stopped_printer_is_an_alarm_and_refuses_the_pass(cups: CupsRig, queue: str) -> None:
    printer = CupsPrinter(queue, server=cups.server, user=JOB_USER)
    cups.run("cupsdisable", "-r", "out of labels", queue)
    state = printer.state()
    assert state.status == PrinterStatus.STOPPED
    assert state.message == "out of labels"
    assert not state.can_print
    with pytest.raises(PrintError) as caught:
        printer.print_pdf(b"%PDF-1.4\n", title="refused")
    assert caught.value.state == state
    cups.run("cupsenable", queue)
    assert printer.state().status == PrinterStatus.READY


def test_a_queue_that_rejects_jobs_is_an_alarm(cups: CupsRig, queue: str) -> None:
    printer = CupsPrinter(queue, server=cups.server)
    cups.run("cupsreject", "-r", "maintenance", queue)
    state = printer.state()
    assert state.status == PrinterStatus.NOT_ACCEPTING
    assert state.message == "maintenance"
    cups.run("cupsaccept", queue)
    assert printer.state().can_print


def test_a_missing_queue_or_server_is_unavailable(cups: CupsRig) -> None:
    state = CupsPrinter("NoSuchQueue", server=cups.server).state()
    assert state.status == PrinterStatus.UNAVAILABLE
    assert "NoSuchQueue" in state.message or "destination" in state.message.lower()
    # Nothing listens there: the daemon is down.
    down = CupsPrinter("Q", server="127.0.0.1:9", timeout_s=5).state()
    assert down.status == PrinterStatus.UNAVAILABLE


@pytest.mark.skipif(not ROOT, reason="cups-pdf prints only when cupsd runs as root")
def test_the_muster_list_printed_through_cups_is_a_page_with_text(
    cups: CupsRig, queue: str
) -> None:
    """The muster list the kiosk renders (kiosk.passes.muster) through the same queue."""
    from kiosk.passes.muster import render_muster_pdf

    printer = CupsPrinter(queue, server=cups.server, user=JOB_USER)
    now = time.time()
    entry = {"visitor": "Chloé Dubois", "host": "Jean Tremblay", "entered_at": now - 600}
    answer = {"at": now, "door_id": "gate-a", "visitors": [entry]}
    title = f"muster-{secrets.token_hex(4)}"
    printer.print_pdf(render_muster_pdf(answer, PassSection(), "fr", "Main gate"), title=title)
    printed = wait_for_output(title)
    try:
        image = pdf_to_image(printed).convert("L")
    finally:
        printed.unlink()
    dark = image.point(lambda value: 255 if value < 128 else 0).histogram()[255]
    assert 0.005 < dark / (image.width * image.height) < 0.5  # text on a white page
