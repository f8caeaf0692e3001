"""The visitor pass at check-in, in the real kiosk window under Xvfb against a real agent.

The agent of the UI rig has a ``mock`` pass printer (tests/support/kiosk_rig.py) whose
state the test sets through ``POST /v1/sim/printer``; the CUPS backend itself is tested
against a real cupsd in tests/hardware/test_printer_cups.py.
"""

from __future__ import annotations

import pytest

from tests.kiosk.test_kiosk_ui import scan, t, wait_journal

pytestmark = [pytest.mark.ui, pytest.mark.processes]


def check_in_without_photo(kiosk) -> None:
    scan(kiosk, "valid", "welcome")
    kiosk.tap_text(t(kiosk, "No, thank you"))


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_pass_is_printed_at_check_in_or_a_guard_hands_it(kiosk, rig, lang):
    app = kiosk.app
    if lang == "fr":
        app.set_language("fr")
    client = rig.client()
    try:
        check_in_without_photo(kiosk)
        kiosk.wait_for(lambda: app.pass_state == "printed", 20, "the pass was not printed")
        assert t(kiosk, "Please take your visitor pass from the printer.") in kiosk.texts()
        printed = wait_journal(rig, lambda e: e["type"] == "pass.printed")[-1]
        assert (printed["invitation_id"], printed["by"]) == ("inv-ada", "visitor")
        assert len(printed["pass_hash"]) == 64 and "pass_id" not in printed
        kiosk.tap_text(t(kiosk, "Done"))
        kiosk.wait_screen("attract")

        # Out of labels: the visitor is told a guard will hand the pass; the alarm is on.
        client.simulate("printer", status="out_of_media", message="no labels")
        if lang == "fr":
            app.set_language("fr")
        check_in_without_photo(kiosk)
        kiosk.wait_for(lambda: app.pass_state == "guard", 20, "no 'a guard will hand it'")
        words = t(kiosk, "Your pass cannot be printed here: a guard will hand it to you.")
        assert words in kiosk.texts()
        failed = wait_journal(rig, lambda e: e["type"] == "pass.print_failed")[-1]
        assert failed["printer"]["status"] == "out_of_media"
        status = client.status()
        assert status["printer"]["status"] == "out_of_media"
        alarms = {a["alarm"]: a for a in status["door"]["alarms"]}
        assert alarms["printer_fault"]["active"]
        kiosk.tap_text(t(kiosk, "Done"))
        kiosk.wait_screen("attract")
    finally:
        client.simulate("printer", status="ready")


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_printer_fault_is_an_alarm_on_the_guard_console_saying_what_to_fix(kiosk, rig, lang):
    """The pass printer jammed (as CUPS reports it): the guard console's alarm says so in
    the guard's language; once the printer prints again the alarm is cleared, to
    acknowledge with a reason."""
    from tests.kiosk.test_kiosk_ui import login

    app = kiosk.app
    client = rig.client()
    try:
        client.simulate("printer", status="jammed", message="paper jam")
        kiosk.pump(6)  # the agent reads the printer's state at most every 5 s
        login(kiosk, rig)
        console = kiosk.wait_screen("guard_console")
        app.set_language(lang)
        jammed = t(kiosk, "Printer: jammed or open")
        kiosk.wait_for(lambda: jammed in kiosk.texts(), 20, "no printer alarm on the console")
        row = next(r for r in console.ids.alarms.children if r.alarm == "printer_fault")
        assert row.active and row.printer == "jammed"
        client.simulate("printer", status="out_of_media", message="no labels")
        kiosk.pump(6)
        empty = t(kiosk, "Printer: out of labels")
        kiosk.wait_for(lambda: empty in kiosk.texts(), 20, "the alarm does not follow CUPS")
    finally:
        client.simulate("printer", status="ready")
    kiosk.pump(6)
    kiosk.wait_for(
        lambda: any(
            r.alarm == "printer_fault" and not r.active for r in console.ids.alarms.children
        ),
        20,
        "the printer alarm did not clear",
    )
    assert t(kiosk, "Pass printer cannot print") in kiosk.texts()
    kiosk.tap_text(t(kiosk, "Log out"))
    kiosk.wait_screen("attract")
