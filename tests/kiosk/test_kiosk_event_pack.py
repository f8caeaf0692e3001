"""The kiosk's attract screen names the off-site event of an installed event pack while it
is on (docs/kiosk.md, "Event packs on the attract screen"): the real app in a real Kivy
window under Xvfb, against the rig's real agent, with a real pack made by a real central
for this agent (enrolled with it) and installed as ``edge-agent event-pack load`` does.

The UI reads it from the agent's status only (``event_pack`` with ``in_force``); the
organiser's welcome line is shown to a visitor whose language is the one it is written in.
Fixtures: ``tests/support/kiosk_ui_fixtures.py``.
"""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.processes]

WELCOME_FR = "Bienvenue au Salon de l'innovation, stand B12"


def _back_to_a_clean_rig(kiosk, rig) -> None:  # type: ignore[no-untyped-def]
    rig.reset()  # the next test's agent has no pack (and no central)
    kiosk.app.material = rig.material
    kiosk.wait_for(lambda: kiosk.app.online, 20, "agent not reachable")
    kiosk.wait_for(lambda: not kiosk.app.event_name, 20, "the event stayed on screen")


def test_the_attract_screen_names_the_event_in_force(kiosk, rig, tmp_path):
    app = kiosk.app
    try:
        summary = rig.install_event_pack(tmp_path / "central", welcome=WELCOME_FR)
        assert summary["name"] == "Salon de l'innovation"
        kiosk.wait_for(lambda: app.online and app.event_name, 30, "the event never showed")
        status = rig.client().status()
        assert status["event_pack"]["in_force"] is True
        kiosk.wait_screen("attract")
        texts = kiosk.texts()
        # In English: the event's name in the title; the French welcome line is not shown.
        assert "Welcome to Salon de l'innovation" in texts
        assert WELCOME_FR not in texts
        assert app.screen.ids.event_line.opacity == 0
        app.set_language("fr")
        kiosk.wait_for(lambda: WELCOME_FR in kiosk.texts(), 5, "no welcome line in French")
        texts = kiosk.texts()
        assert "Bienvenue : Salon de l'innovation" in texts
        assert app.screen.ids.event_line.opacity == 1
        app.set_language("en")
        kiosk.wait_for(lambda: "Welcome to Salon de l'innovation" in kiosk.texts(), 5, "no EN")
    finally:
        _back_to_a_clean_rig(kiosk, rig)
    assert "Welcome" in kiosk.texts()
    assert not any(x.startswith("Welcome to") for x in kiosk.texts())


def test_a_pack_whose_event_is_not_on_yet_shows_nothing(kiosk, rig, tmp_path):
    app = kiosk.app
    now = int(time.time())
    try:
        rig.install_event_pack(
            tmp_path / "central", welcome=WELCOME_FR, starts=now + 86400, ends=now + 2 * 86400
        )
        kiosk.wait_for(lambda: app.online, 30, "agent not reachable")
        status = rig.client().status()
        kiosk.wait_for(lambda: app.status.get("event_pack"), 10, "the status has no pack")
        assert status["event_pack"]["name"] == "Salon de l'innovation"
        assert status["event_pack"]["in_force"] is False
        kiosk.wait_screen("attract")
        app.set_language("fr")
        kiosk.pump(0.5)
        texts = kiosk.texts()
        assert "Bienvenue" in texts and WELCOME_FR not in texts
        assert app.event_name == ""
        app.set_language("en")
    finally:
        _back_to_a_clean_rig(kiosk, rig)
