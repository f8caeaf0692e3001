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
reuses ``test_kiosk_ui``'s fixtures (one Xvfb, one real agent, one app).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_agent import rigs

from edge_agent.agent import ActionError
from edge_agent.door import Alarm


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
    assert caught.value.status == 400
    assert not rig.events("visitor.help")


def test_help_alarm_s_is_validated_naming_the_key(tmp_path):
    from test_agent import make_config

    with pytest.raises(ValueError, match="help_alarm_s"):
        make_config(tmp_path, door={"help_alarm_s": 0})
    assert Alarm("help_requested") is Alarm.HELP_REQUESTED
