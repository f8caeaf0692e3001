"""UI tests of the muster list (issue #15): the real app under Xvfb against a real agent.

Checked in, then a fire: the visitor is on the muster screen the evacuation screen opens
(name, host, time of entry), in English and in French; checked out, then a fire: absent.
The guard console shows the same list. Fixtures: ``tests/support/kiosk_ui_fixtures.py``.
"""

from __future__ import annotations

import pytest

from tests.kiosk.test_kiosk_ui import login, scan, t, wait_journal

pytestmark = [pytest.mark.ui, pytest.mark.processes]


def _check_in_ada(kiosk, rig) -> dict:
    scan(kiosk, "valid", "welcome")
    kiosk.tap_text(t(kiosk, "No, thank you"))
    checkin = wait_journal(
        rig, lambda e: e["type"] == "visitor.checked_in" and e["invitation_id"] == "inv-ada"
    )[-1]
    kiosk.tap_text(t(kiosk, "Done"))
    kiosk.wait_screen("attract")
    return checkin


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_pass_shown_to_the_camera_checks_the_visitor_out(kiosk, rig, lang):
    """The pass QR (PV1:<pass id>, the check-in's) shown to the demo camera: the goodbye
    screen, the visitor off the muster list; shown again: checked out already; a pass
    nobody was given: not recognised. The pass id is on no event (only its hash)."""
    from portier_common.passes import new_pass_id, pass_hash, pass_qr_text

    app = kiosk.app
    _check_in_ada(kiosk, rig)
    shown = app.demo_pass_qr
    assert shown.startswith("PV1:")
    app.set_language(lang)
    kiosk.tap_text(t(kiosk, "Scan my QR invitation"))
    kiosk.wait_screen("scan")
    app.demo_pass()
    screen = kiosk.wait_screen("checkout", timeout=20)
    kiosk.wait_for(lambda: screen.visitor_name, 10, "no goodbye")
    assert screen.outcome == "done"
    texts = kiosk.texts()
    assert t(kiosk, "Goodbye, {name}").format(name="Ada Lovelace") in texts
    assert t(kiosk, "Please hand your pass to reception or drop it in the box.") in texts
    out = wait_journal(
        rig, lambda e: e["type"] == "visitor.checked_out" and e["invitation_id"] == "inv-ada"
    )[-1]
    assert (out["how"], out["pass_hash"]) == ("kiosk", pass_hash(shown[4:]))
    assert shown[4:] not in str(rig.journal())
    assert "Ada Lovelace" not in [v["visitor"] for v in rig.client().muster()["visitors"]]
    kiosk.tap_text(t(kiosk, "Done"))
    kiosk.wait_screen("attract")
    for qr, outcome, words in (
        (shown, "not_on_site", "You are already checked out"),
        (pass_qr_text(new_pass_id()), "unknown_pass", "This pass is not recognised"),
    ):
        app.set_language(lang)
        kiosk.tap_text(t(kiosk, "Scan my QR invitation"))
        kiosk.wait_screen("scan")
        app.demo_camera.show(qr, "paper")
        kiosk.wait_for(
            lambda o=outcome: app.sm.current == "checkout" and app.screen.outcome == o,
            20,
            f"no {outcome}",
        )
        assert t(kiosk, words) in kiosk.texts()
        kiosk.tap_text(t(kiosk, "Done"))
        kiosk.wait_screen("attract")


def _muster_in_a_fire(kiosk, lang: str = "en"):
    """Fire on; from the evacuation screen to the muster screen, its list read."""
    app = kiosk.app
    app.set_language(lang)
    app.demo_sim("fire", on=True)
    evacuation = kiosk.wait_screen("evacuation")
    kiosk.wait_for(lambda: evacuation.site_count >= 0, 10, "no on-site count")
    kiosk.tap_text(evacuation.site_count_text(evacuation.site_count, app.tr._))
    screen = kiosk.wait_screen("muster")
    kiosk.wait_for(lambda: not screen.busy and screen.count >= 0, 10, "the list was not read")
    return screen


def _fire_off(kiosk) -> None:
    kiosk.app.demo_sim("fire", on=False)
    kiosk.wait_screen("attract")


def test_checked_in_then_fire_the_visitor_is_on_the_muster_screen(kiosk, rig):
    _check_in_ada(kiosk, rig)
    screen = _muster_in_a_fire(kiosk)
    try:
        assert "Ada Lovelace" in screen.names()
        texts = kiosk.texts()
        assert "Grace Hopper" in texts  # the host
        assert f"Visitors on site: {screen.count}" in texts
        row = next(r for r in screen.ids.rows.children if r.visitor == "Ada Lovelace")
        assert len(row.entered) == 5 and row.entered[2] == ":"  # "10:32": today
        # The visitor's language: French throughout.
        kiosk.app.set_language("fr")
        kiosk.frames(2)
        assert f"Visiteurs sur site : {screen.count}" in kiosk.texts()
        assert {"Visiteur", "Hôte", "Entrée"} <= set(kiosk.texts())
        # Back: the evacuation screen, still (the fire is on).
        kiosk.tap_text("Retour")
        kiosk.wait_screen("evacuation")
    finally:
        _fire_off(kiosk)


def test_checked_out_then_fire_the_visitor_is_absent(kiosk, rig):
    _check_in_ada(kiosk, rig)
    guard = rig.client()
    guard.guard_login(kiosk.app.material.guard.uid, kiosk.app.material.guard.pin)
    try:
        guard.guard_checkout("inv-ada", "left by the main gate")
    finally:
        guard.guard_logout()
    out = wait_journal(rig, lambda e: e["type"] == "visitor.checked_out")[-1]
    assert (out["invitation_id"], out["how"]) == ("inv-ada", "guard")
    screen = _muster_in_a_fire(kiosk)
    try:
        assert "Ada Lovelace" not in screen.names()
    finally:
        _fire_off(kiosk)


def test_the_guard_console_shows_who_is_on_site(kiosk, rig):
    _check_in_ada(kiosk, rig)
    login(kiosk, rig)
    kiosk.wait_screen("guard_console")
    kiosk.tap_text(t(kiosk, "On site"))
    screen = kiosk.wait_screen("guard_muster")
    kiosk.wait_for(lambda: "Ada Lovelace" in screen.names(), 10, "Ada not on the list")
    kiosk.tap_text(t(kiosk, "Back"))
    kiosk.wait_screen("guard_console")


def test_a_guard_checks_a_visitor_out_from_the_console_with_a_reason(kiosk, rig):
    from kiosk.ui.widgets import KButton

    _check_in_ada(kiosk, rig)
    login(kiosk, rig)
    kiosk.wait_screen("guard_console")
    kiosk.tap_text(t(kiosk, "On site"))
    screen = kiosk.wait_screen("guard_muster")
    kiosk.wait_for(lambda: "Ada Lovelace" in screen.names(), 10, "Ada not on the list")
    row = next(r for r in screen.ids.rows.children if r.visitor == "Ada Lovelace")
    check_out = t(kiosk, "Check out")
    kiosk.tap(next(w for w in row.children if isinstance(w, KButton) and w.text == check_out))
    reason = kiosk.wait_screen("guard_reason")
    assert reason.action == "checkout"
    assert any("Ada Lovelace" in text for text in kiosk.texts())
    kiosk.tap_text(t(kiosk, "Left with their host"))
    screen = kiosk.wait_screen("guard_muster")
    kiosk.wait_for(lambda: not screen.busy and "Ada Lovelace" not in screen.names(), 10, "still on")
    out = wait_journal(rig, lambda e: e["type"] == "visitor.checked_out")[-1]
    assert (out["invitation_id"], out["how"], out["reason"]) == (
        "inv-ada",
        "guard",
        "Left with their host",
    )


def test_a_guard_reprints_a_pass_from_the_console_and_the_old_one_stops_working(kiosk, rig):
    """ "Reprint" on the guard's on-site list: a new pass id, printed with the guard's session
    (journaled as a reprint); the old pass then is not recognised at the camera. A printer
    that cannot print: the screen says so."""
    from kiosk.ui.widgets import KButton

    app = kiosk.app
    client = rig.client()
    _check_in_ada(kiosk, rig)
    old = app.demo_pass_qr
    login(kiosk, rig)
    kiosk.wait_screen("guard_console")
    kiosk.tap_text(t(kiosk, "On site"))
    screen = kiosk.wait_screen("guard_muster")
    kiosk.wait_for(lambda: "Ada Lovelace" in screen.names(), 10, "Ada not on the list")

    def reprint() -> None:
        row = next(r for r in screen.ids.rows.children if r.visitor == "Ada Lovelace")
        words = t(kiosk, "Reprint")
        kiosk.tap(next(w for w in row.children if isinstance(w, KButton) and w.text == words))

    try:
        reprint()
        printed = t(kiosk, "New pass printed. The old pass no longer works.")
        kiosk.wait_for(lambda: t(kiosk, screen.message) == printed, 20, "no reprint")
        assert printed in kiosk.texts()
        reissued = wait_journal(rig, lambda e: e["type"] == "visitor.pass_reissued")[-1]
        assert (reissued["invitation_id"], reissued["by"]) == ("inv-ada", "guard:g1")
        last = wait_journal(rig, lambda e: e["type"] == "pass.printed" and e["reprint"])[-1]
        assert last["pass_hash"] == reissued["pass_hash"] and last["by"] == "guard:g1"
        client.simulate("printer", status="jammed", message="jam")
        kiosk.pump(6)  # the agent reads the printer's state at most every 5 s
        reprint()
        cannot = t(kiosk, "The printer cannot print now: see the printer alarm, then reprint.")
        kiosk.wait_for(lambda: t(kiosk, screen.message) == cannot, 20, "no printer fault")
    finally:
        client.simulate("printer", status="ready")
    kiosk.tap_text(t(kiosk, "Back"))
    kiosk.wait_screen("guard_console")
    kiosk.tap_text(t(kiosk, "Log out"))
    kiosk.wait_screen("attract")
    kiosk.tap_text(t(kiosk, "Scan my QR invitation"))
    kiosk.wait_screen("scan")
    app.demo_camera.show(old, "paper")
    kiosk.wait_for(
        lambda: app.sm.current == "checkout" and app.screen.outcome == "unknown_pass",
        20,
        "the old pass still works",
    )


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_muster_list_is_printed_in_a_fire_and_a_printer_fault_is_said(kiosk, rig, lang):
    client = rig.client()
    _check_in_ada(kiosk, rig)
    screen = _muster_in_a_fire(kiosk, lang)
    try:
        kiosk.wait_for(lambda: "Ada Lovelace" in screen.names(), 10, "Ada not on the list")
        kiosk.tap_text(t(kiosk, "Print"))
        printing = t(kiosk, "The list is being printed.")
        kiosk.wait_for(lambda: t(kiosk, screen.message) == printing, 20, "not printed")
        assert printing in kiosk.texts()
        wait_journal(rig, lambda e: e["type"] == "muster.printed")
        client.simulate("printer", status="offline", message="unplugged")
        kiosk.pump(6)  # the agent reads the printer's state at most every 5 s
        kiosk.tap_text(t(kiosk, "Print"))
        cannot = t(kiosk, "The printer cannot print the list now.")
        kiosk.wait_for(lambda: t(kiosk, screen.message) == cannot, 20, "no printer fault")
        failed = wait_journal(rig, lambda e: e["type"] == "muster.print_failed")[-1]
        assert failed["printer"]["status"] == "offline"
    finally:
        client.simulate("printer", status="ready")
        _fire_off(kiosk)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_demo_panel_shows_my_pass_and_the_visitor_checks_out(kiosk, rig, lang):
    """The demo panel's "Show my pass" holds the last check-in's pass up to the camera:
    greyed out before a check-in, then the goodbye screen."""
    from kiosk.ui.widgets import KButton

    app = kiosk.app
    app.demo_pass_qr = ""  # a fresh demo: no pass yet
    app.set_language(lang)
    app.toggle_demo_panel()
    kiosk.wait_for(lambda: app.demo_panel.parent is not None, 5)
    words = t(kiosk, "Show my pass")
    button = next(
        w for w in kiosk.walk(app.demo_panel) if isinstance(w, KButton) and w.text == words
    )
    assert button.disabled
    app.toggle_demo_panel()
    kiosk.frames(2)
    _check_in_ada(kiosk, rig)
    app.set_language(lang)
    app.toggle_demo_panel()
    kiosk.wait_for(lambda: app.demo_panel.parent is not None, 5)
    assert not button.disabled
    kiosk.tap_text(words, root=app.demo_panel)
    screen = kiosk.wait_screen("checkout", timeout=20)
    kiosk.wait_for(lambda: screen.outcome == "done", 10, "no goodbye")
    assert t(kiosk, "Goodbye, {name}").format(name="Ada Lovelace") in kiosk.texts()
    out = wait_journal(
        rig, lambda e: e["type"] == "visitor.checked_out" and e["invitation_id"] == "inv-ada"
    )[-1]
    assert out["how"] == "kiosk"
    kiosk.tap_text(t(kiosk, "Done"))
    kiosk.wait_screen("attract")


def test_a_guard_types_the_reference_under_the_pass_code_and_finds_the_visitor(kiosk, rig):
    """A pass whose code does not scan: the guard types the 8 characters printed under it
    on the letter pad; the on-site list opens on that visitor (check out, reprint), and
    "Show all" gives the whole list back."""
    from portier_common.passes import pass_ref

    app = kiosk.app
    _check_in_ada(kiosk, rig)
    ref = pass_ref(app.demo_pass_qr[4:])
    login(kiosk, rig)
    kiosk.wait_screen("guard_console")
    kiosk.tap_text(t(kiosk, "Visitors"))
    screen = kiosk.wait_screen("guard_visitors")
    kiosk.tap_text(t(kiosk, "Search by name"))
    kiosk.press_keys(screen.ids.letters, list(ref))
    kiosk.tap_text(t(kiosk, "Search"))
    muster = kiosk.wait_screen("guard_muster", timeout=10)
    kiosk.wait_for(lambda: not muster.busy and muster.names() == ["Ada Lovelace"], 10, "not found")
    assert muster.only == "inv-ada"
    assert t(kiosk, "Reprint") in kiosk.texts() and t(kiosk, "Check out") in kiosk.texts()
    kiosk.tap_text(t(kiosk, "Show all"))
    kiosk.wait_for(lambda: not muster.busy and muster.only == "", 10, "still one visitor")
    kiosk.tap_text(t(kiosk, "Back"))
    kiosk.wait_screen("guard_console")
