"""Issue #11, door states the visitor sees, and the visitor shell (kiosk and agent).

Each test failed on the code before the fix:

1. a fire alarm (``emergency``) switches every visitor screen at once to the
   evacuation screen (EN and FR together, the configured assembly point), no QR
   is decoded there, a guard can still log in, and the attract screen is back
   when the fire input clears;
2. lockdown, free access and a door held open change what the attract screen says;
3. Help on every visitor screen calls a guard: ``visitor.help`` journaled, the
   ``help_requested`` alarm raised once however often it is pressed, cleared after
   ``[door] help_alarm_s`` or when a guard acknowledges it;
4. the visitor's language stays until the idle return to the attract screen;
5. a double tap never falls through to the next screen.

The agent half runs on :func:`test_agent.rigs` (manual scheduler); the UI half
runs in the UI session of ``kiosk_ui_fixtures.py`` (one Xvfb, one real agent,
one app) with ``test_kiosk_ui``'s helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import ActionError
from edge_agent.api import action_status
from edge_agent.door import Alarm
from tests.edge_agent.test_agent import rigs
from tests.kiosk.test_kiosk_ui import scan, t, wait_journal


@pytest.fixture
def make_rig(tmp_path: Path):
    with rigs(tmp_path) as build:
        yield build


def _alarm(rig: Any, name: str) -> dict[str, Any] | None:
    alarms = rig.agent.status()["door"]["alarms"]
    return next((a for a in alarms if a["alarm"] == name), None)


# -- Help: the agent's side -----------------------------------------------------------------


def test_help_is_journaled_and_raises_one_alarm_however_often_pressed(make_rig):
    rig = make_rig()
    first = rig.agent.call_help("scan", "fr")
    assert first == {"called": True, "already": False, "alarm": "help_requested"}
    for _ in range(99):  # a child at the kiosk
        assert rig.agent.call_help("scan", "fr")["already"] is True
    helps = [e.payload for e in rig.events("visitor.help")]
    assert helps == [{"door": rig.config.door.id, "screen": "scan", "lang": "fr"}]
    raised = [e.payload for e in rig.events("alarm.raised")]
    assert [p["alarm"] for p in raised].count("help_requested") == 1
    alarm = _alarm(rig, "help_requested")
    assert alarm is not None and alarm["active"] and not alarm["acknowledged"]


def test_help_alarm_clears_by_itself_after_the_configured_time(make_rig):
    rig = make_rig(door={"help_alarm_s": 60})
    rig.agent.call_help("welcome", "en")
    rig.scheduler.advance(59)
    assert _alarm(rig, "help_requested")["active"]
    rig.scheduler.advance(2)
    assert not _alarm(rig, "help_requested")["active"]  # cleared, left for a guard to see
    assert [e.payload["alarm"] for e in rig.events("alarm.cleared")] == ["help_requested"]
    # A new call after the clearing is a new alarm (and its own timer).
    assert rig.agent.call_help("welcome", "en")["already"] is False
    assert _alarm(rig, "help_requested")["active"]


def test_a_guard_acknowledging_help_ends_it_and_an_old_timer_does_not_clear_a_new_call(make_rig):
    rig = make_rig(door={"help_alarm_s": 60})
    rig.agent.call_help("attract", "en")
    token = rig.login()
    rig.agent.guard_action(token, "acknowledge", "on my way", "help_requested")
    assert _alarm(rig, "help_requested") is None  # the guard came: nothing left to show
    rig.scheduler.advance(30)
    rig.agent.call_help("attract", "en")  # a second call, 30 s later
    rig.scheduler.advance(31)  # the first call's timer fires: the second call stays
    assert _alarm(rig, "help_requested")["active"]
    rig.scheduler.advance(30)
    assert not _alarm(rig, "help_requested")["active"]


@pytest.mark.parametrize(
    ("screen", "lang"), [("", "en"), ("../etc", "en"), ("scan", ""), ("scan", "e n"), (3, "en")]
)
def test_help_with_bad_input_is_a_clear_400(make_rig, screen, lang):
    rig = make_rig()
    with pytest.raises(ActionError) as caught:
        rig.agent.call_help(screen, lang)
    assert action_status(caught.value) == 400
    assert not rig.events("visitor.help")


def test_help_alarm_s_is_validated_naming_the_key(tmp_path):
    from tests.edge_agent.test_agent import make_config

    with pytest.raises(ValueError, match="help_alarm_s"):
        make_config(tmp_path, door={"help_alarm_s": 0})
    assert Alarm("help_requested") is Alarm.HELP_REQUESTED


# -- the kiosk's configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ui", "key"),
    [
        ({"assembly_point": {"en": "Car park B"}}, "ui.assembly_point"),
        ({"assembly_point": {"en": "Car park B", "fr": " "}}, "ui.assembly_point"),
        ({"assembly_point": {"en": "x" * 81, "fr": "x"}}, "ui.assembly_point"),
        ({"assembly_point": "Car park B"}, "ui.assembly_point"),
        ({"touch_guard_s": 3}, "ui.touch_guard_s"),
    ],
)
def test_kiosk_config_errors_name_the_new_keys(tmp_path, ui, key):
    from kiosk.config import ConfigError, parse_config

    data = {"camera": {"backend": "replay", "replay_path": "frames"}, "ui": ui}
    with pytest.raises(ConfigError) as error:
        parse_config(data, tmp_path)
    assert str(error.value).startswith(key), str(error.value)


def test_the_packaged_kiosk_toml_and_the_demo_have_an_assembly_point_setting(tmp_path):
    import shutil

    from kiosk.config import DEMO_ASSEMBLY_POINT, demo_config, load_config

    repo = Path(__file__).resolve().parents[2]
    packaged = load_config(repo / "kiosk" / "data" / "kiosk.toml")
    assert packaged.ui.touch_guard_s == 0.5
    assert "assembly_point" in (repo / "kiosk" / "data" / "kiosk.toml").read_text()
    shutil.copy(repo / "edge_agent" / "data" / "simulator.toml", tmp_path / "agent.toml")
    demo = demo_config(tmp_path).ui.assembly_point
    assert demo is not None and (demo.en, demo.fr) == tuple(DEMO_ASSEMBLY_POINT.values())


@pytest.mark.processes
def test_help_through_the_local_api_answers_a_clear_400(rig):
    from edge_agent.client import ApiError

    with pytest.raises(ApiError) as caught:
        rig.client().call_help("not a screen", "en")
    assert (caught.value.status, caught.value.code) == (400, "bad_request")


# -- the kiosk, under Xvfb against a real agent ------------------------------------------------

#: Less than the status poll (5 s): a screen that follows within it followed the pushed event.
AT_ONCE_S = 2.5
EVACUATION_TEXTS = {
    "Fire alarm: do not enter",
    "Alarme incendie : n'entrez pas",
    "Leave the building by the nearest exit.",
    "Quittez le bâtiment par la sortie la plus proche.",
    "Assembly point: Car park B, by the flagpole",
    "Point de rassemblement : Parking B, près du mât",
}


def _fire(rig, on: bool) -> None:
    rig.client().simulate("fire", on=on)


def _guard_mode(rig, mode: str) -> None:
    client = rig.client()
    client.guard_login(rig.material.guard.uid, rig.material.guard.pin)
    try:
        client.guard_action(mode, "test")
    finally:
        client.guard_logout()


def _acknowledge_all(rig) -> None:
    """Leave the agent without alarms (the next test starts clean without a reset)."""
    client = rig.client()
    client.guard_login(rig.material.guard.uid, rig.material.guard.pin)
    try:
        for alarm in client.status()["door"]["alarms"]:
            if not alarm["acknowledged"]:
                client.guard_action("acknowledge", "test", alarm["alarm"])
    finally:
        client.guard_logout()


@pytest.mark.processes
@pytest.mark.ui
@pytest.mark.parametrize("where", ["welcome", "scan"])
def test_a_fire_alarm_replaces_the_visitor_screen_at_once_and_clears_to_attract(kiosk, rig, where):
    app = kiosk.app
    if where == "welcome":
        scan(kiosk, "valid", "welcome")
    else:
        kiosk.tap_text(t(kiosk, "Scan my QR invitation"))
        kiosk.wait_screen("scan")
    app.set_language("fr")  # whatever the language, both are shown
    try:
        _fire(rig, True)
        kiosk.wait_screen("evacuation", timeout=AT_ONCE_S)
        assert set(kiosk.texts()) >= EVACUATION_TEXTS
        assert not app.scanner._decoding.is_set()  # no QR decoding during the evacuation
        app.go("scan")  # any visitor navigation lands here again
        assert app.sm.current == "evacuation"
        _fire(rig, False)
        kiosk.wait_screen("attract", timeout=AT_ONCE_S)
        assert app.tr.lang == "en"  # whoever comes next is a new visitor
    finally:
        _fire(rig, False)
        _acknowledge_all(rig)


@pytest.mark.processes
@pytest.mark.ui
def test_a_guard_still_logs_in_during_a_fire_and_is_not_forced_away(kiosk, rig):
    app = kiosk.app
    try:
        _fire(rig, True)
        kiosk.wait_screen("evacuation", timeout=AT_ONCE_S)
        kiosk.tap_text(t(kiosk, "Staff"))
        kiosk.wait_screen("guard_login")
        app.go_home()
        assert app.sm.current == "evacuation"
        app.demo_badge("guard")  # a guard's badge tap: the login at its PIN step
        screen = kiosk.wait_screen("guard_login")
        kiosk.wait_for(lambda: screen.step == "pin", 10, "the tap did not reach the login")
        kiosk.pump(1.0)
        assert app.sm.current == "guard_login"  # a status poll does not take it away
    finally:
        _fire(rig, False)
        _acknowledge_all(rig)


@pytest.mark.processes
@pytest.mark.ui
def test_lockdown_attract_says_closed_before_anyone_scans(kiosk, rig):
    app = kiosk.app
    try:
        _guard_mode(rig, "lockdown")
        kiosk.wait_for(lambda: app.door_mode == "lockdown", AT_ONCE_S, "lockdown not followed")
        kiosk.frames(3)
        texts = kiosk.texts()
        assert "Entrance closed" in texts
        assert "This entrance is closed for now. Please see the guard." in texts
        with pytest.raises(LookupError):
            kiosk.button(t(kiosk, "Scan my QR invitation"))
        kiosk.button(t(kiosk, "Staff"))  # the guard still gets in
    finally:
        _guard_mode(rig, "normal")
    kiosk.wait_for(lambda: "Welcome" in kiosk.texts(), AT_ONCE_S, "not back to normal")


@pytest.mark.processes
@pytest.mark.ui
def test_free_access_attract_says_open_and_still_check_in(kiosk, rig):
    app = kiosk.app
    try:
        _guard_mode(rig, "free_access")
        kiosk.wait_for(lambda: app.door_mode == "free_access", AT_ONCE_S, "not followed")
        kiosk.frames(3)
        texts = kiosk.texts()
        assert "The door is open" in texts
        assert "Visitors: please still check in with your QR invitation or badge." in texts
        kiosk.button(t(kiosk, "Scan my QR invitation"))
    finally:
        _guard_mode(rig, "normal")


@pytest.mark.processes
@pytest.mark.ui
def test_a_door_held_open_asks_the_visitor_to_close_it(kiosk, rig):
    client = rig.client()
    kiosk.pump(2.5)  # past the grace after a relock (a previous test's mode change)
    try:
        client.simulate("door_open")  # opened without a grant: forced, then held open
        kiosk.wait_for(
            lambda: "Please close the door." in kiosk.texts(), 8, "no close-the-door notice"
        )
        kiosk.tap_text(t(kiosk, "Scan my QR invitation"))
        kiosk.wait_screen("scan")
        assert "Please close the door." in kiosk.texts()  # in the header of every visitor screen
        client.simulate("door_close")
        kiosk.wait_for(lambda: "Please close the door." not in kiosk.texts(), 8, "stayed")
    finally:
        client.simulate("door_close")
        _acknowledge_all(rig)


# -- Help ----------------------------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.ui
def test_help_on_a_visitor_screen_calls_a_guard_once_and_confirms(kiosk, rig):
    app = kiosk.app
    kiosk.tap_text(t(kiosk, "Scan my QR invitation"))
    kiosk.wait_screen("scan")
    app.set_language("fr")
    try:
        for _ in range(5):  # pressed again and again
            app.dismiss_help()
            kiosk.tap_text("Aide")
            kiosk.wait_for(
                lambda: "Un agent de sécurité a été appelé" in kiosk.texts(app._help_view),
                5,
                "no confirmation",
            )
        helps = wait_journal(rig, lambda e: e["type"] == "visitor.help")
        assert [(e["screen"], e["lang"]) for e in helps] == [("scan", "fr")]
        alarms = rig.client().status()["door"]["alarms"]
        assert [a["alarm"] for a in alarms if a["active"]] == ["help_requested"]
        # Guard screens have no Help button.
        app.dismiss_help()
        app.go("guard_login")
        kiosk.wait_screen("guard_login")
        with pytest.raises(LookupError):
            kiosk.button("Aide")
    finally:
        app.dismiss_help()
        _acknowledge_all(rig)


# -- the language stays for the visitor's session ------------------------------------------------


@pytest.mark.processes
@pytest.mark.ui
def test_the_language_stays_until_the_idle_return(kiosk):
    app = kiosk.app
    kiosk.tap_text("Français")
    kiosk.tap_text(t(kiosk, "Scan my QR invitation"))
    kiosk.wait_screen("scan")
    app.demo_invitation("expired")
    kiosk.wait_screen("denied", timeout=20)
    assert app.tr.lang == "fr"
    kiosk.tap_text("Terminé" if t(kiosk, "Done") == "Terminé" else t(kiosk, "Done"))
    kiosk.wait_screen("attract")
    assert app.tr.lang == "fr"  # Done is the same visitor: still French
    kiosk.tap_text(t(kiosk, "Scan my QR invitation"))
    kiosk.wait_screen("scan")
    app.screen.cancel()
    kiosk.wait_screen("attract")
    assert app.tr.lang == "fr"
    kiosk.clock.advance(app.settings.ui.idle_timeout_s + 1)  # nobody for a while
    kiosk.wait_for(lambda: app.tr.lang == "en", 5, "the language was not reset when idle")
    assert app.sm.current == "attract"


# -- a double tap does not fall through ----------------------------------------------------------


@pytest.mark.processes
@pytest.mark.ui
def test_a_double_tap_on_done_does_not_open_the_next_screens_button(kiosk):
    from kivy.base import EventLoop

    from kiosk.ui.driver import _Touch

    app = kiosk.app
    app.go("denied", decision={"granted": False, "reason": "expired", "kind": "qr"})
    kiosk.wait_screen("denied")
    done = kiosk.button(t(kiosk, "Done"))
    staff = app.sm.get_screen("attract")
    staff_button = next(w for w in kiosk.walk(staff) if getattr(w, "text", "") == t(kiosk, "Staff"))
    # Where Done (on the outcome) and Staff (on the attract screen) overlap: the trap.
    x = staff_button.to_window(staff_button.center_x, 0)[0]
    y = done.to_window(0, done.center_y)[1]
    assert done.collide_point(*done.to_widget(x, y))
    assert staff_button.collide_point(*staff_button.to_widget(x, y))
    kiosk.wait_for(app.accepts_touches, 5)
    for _ in range(2):  # two real touches through the window, a finger's double tap apart
        touch = _Touch(x, y)
        EventLoop.post_dispatch_input("begin", touch)
        kiosk.frames(1)
        EventLoop.post_dispatch_input("end", touch)
        kiosk.frames(1)
    kiosk.frames(3)
    assert app.sm.current == "attract"
    kiosk.wait_for(app.accepts_touches, 5)  # after the guard time, the same tap works
    kiosk.tap(staff_button)
    kiosk.wait_screen("guard_login")
