"""A door mode set at the central by an operator (issue #14, the console's "Doors" page), at
the door: applied durably with the operator's name and reason, journaled, shown in the
status the guard console reads; the interplay with a guard's mode and the fire input.

The rule (docs/sync.md, "Door mode"): the latest deliberate command wins, whoever gives
it; an operator's command at the central is deliberate each time (its ``mode_set``), a
re-sent one is not; the fire input always wins for egress (emergency), a mode set meanwhile
applies when the fire alarm clears.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.door import DoorMode, DoorSettings
from edge_agent.policy import Credential
from tests.edge_agent.test_agent import STAFF_UID, UID_DOOR, rigs


@pytest.fixture
def make_rig(tmp_path: Path):
    with rigs(tmp_path) as build:
        yield build


def _where(rig: Any) -> Path:
    return rig.config.paths.state_dir.parent


def _staff(rig: Any) -> dict[str, Any]:
    return rig.agent.present(Credential.badge(bytes.fromhex(STAFF_UID)))


def _settings(rig: Any, mode: str, by: str, reason: str, at_ms: int) -> DoorSettings:
    central = {
        "mode": mode,
        "mode_set": {"by": by, "reason": reason, "at_ms": at_ms, "scope": "door", "name": "x"},
    }
    return DoorSettings.configured(rig.config.door).with_central(central)


def test_the_operators_lockdown_is_applied_journaled_shown_and_durable(make_rig):
    rig = make_rig(**UID_DOOR)
    assert _staff(rig)["granted"]
    assert rig.agent.apply_door_settings(_settings(rig, "lockdown", "olivia", "intruder", 1), 2)
    assert rig.agent.mode is DoorMode.LOCKDOWN
    assert _staff(rig)["reason"] == "lockdown"
    change = [e.payload for e in rig.events("mode.changed")][-1]
    assert (change["mode"], change["by"], change["why"]) == (
        "lockdown",
        "central:olivia",
        "intruder",
    )
    shown = rig.agent.status()["mode_set"]
    assert shown["mode"] == "lockdown" and shown["by"] == "central:olivia"
    assert shown["central"] == {
        "by": "olivia",
        "reason": "intruder",
        "at_ms": 1,
        "scope": "door",
        "name": "x",
    }
    rig.store.close()  # power cut
    again = make_rig(state=_where(rig), **UID_DOOR)
    assert again.agent.mode is DoorMode.LOCKDOWN
    assert again.agent.status()["mode_set"]["central"]["by"] == "olivia"
    restored = [e.payload for e in again.events("door.mode_restored")][-1]
    assert (restored["by"], restored["why"]) == ("central:olivia", "intruder")
    # The same command re-sent (restart, resync): nothing new.
    same = {"by": "olivia", "reason": "intruder", "at_ms": 1, "scope": "door", "name": "x"}
    assert again.agent.apply_central_mode("lockdown", 3, same) is False


def test_the_latest_deliberate_command_wins_between_guard_and_central(make_rig):
    rig = make_rig(**UID_DOOR)
    agent = rig.agent
    agent.apply_door_settings(_settings(rig, "lockdown", "olivia", "alert", 1), 1)
    # A guard at the door lifts it: the guard's command is the latest.
    agent.guard_action(rig.login(), "normal", "checked with the control room")
    assert agent.mode is DoorMode.NORMAL and agent.status()["mode_set"]["by"] == "guard:g-7"
    assert "central" not in agent.status()["mode_set"]
    # Re-sent settings (the same command) do not undo the guard's.
    assert (
        agent.apply_central_mode(
            "lockdown",
            2,
            {"by": "olivia", "reason": "alert", "at_ms": 1, "scope": "door", "name": "x"},
        )
        is False
    )
    assert agent.mode is DoorMode.NORMAL
    # The operator locks it down again from the console: a new command, applied at once.
    agent.apply_door_settings(_settings(rig, "lockdown", "olivia", "again", 2), 3)
    assert agent.mode is DoorMode.LOCKDOWN
    assert agent.status()["mode_set"]["central"]["reason"] == "again"
    # And a guard's lockdown is lifted by the central's normal (the latest command).
    agent.guard_action(rig.login(), "lockdown", "parcel")
    agent.apply_door_settings(_settings(rig, "normal", "sam", "all clear", 3), 4)
    assert agent.mode is DoorMode.NORMAL and _staff(rig)["granted"]


def test_the_fire_input_wins_over_the_centrals_mode(make_rig):
    rig = make_rig(**UID_DOOR)
    rig.sim.fire_alarm(True)
    assert rig.agent.mode is DoorMode.EMERGENCY and rig.relay
    rig.agent.apply_door_settings(_settings(rig, "lockdown", "olivia", "intruder", 1), 1)
    # Egress first: the door stays released while the fire input is asserted ...
    assert rig.agent.mode is DoorMode.EMERGENCY and rig.relay
    assert rig.agent.status()["mode_set"]["mode"] == "lockdown"
    # ... and the central's lockdown applies when the fire alarm clears.
    rig.sim.fire_alarm(False)
    assert rig.agent.mode is DoorMode.LOCKDOWN and not rig.relay


def test_a_mode_set_that_says_nothing_usable_is_the_centrals_unnamed(make_rig):
    rig = make_rig(**UID_DOOR)
    for junk in ("olivia", {"by": 3, "reason": "x"}, {"by": "", "reason": "x"}, {"by": "o"}):
        settings = DoorSettings.configured(rig.config.door).with_central(
            {"mode": "free_access", "mode_set": junk}
        )
        rig.agent.apply_door_settings(settings, 1)
        assert rig.agent.status()["mode_set"]["by"] == "central"
        rig.agent.apply_central_mode(None, 2)
    long = _settings(rig, "lockdown", "o" * 900, "r" * 900, 5)
    rig.agent.apply_door_settings(long, 3)
    central = rig.agent.status()["mode_set"]["central"]
    assert len(central["by"]) == 500 and len(central["reason"]) == 500


def test_the_guard_console_says_who_set_it_at_the_central(make_rig):
    """The status the guard console reads, as documented, and the line it shows."""
    import jsonschema
    import yaml

    from kiosk import i18n
    from kiosk.ui.screens.guard_console import mode_note

    rig = make_rig(**UID_DOOR)
    assert mode_note(rig.agent.status(), str) == ""  # never set: nothing to say
    rig.agent.guard_action(rig.login(), "lockdown", "parcel")
    assert mode_note(rig.agent.status(), str) == ""  # a guard's own: the mode says enough
    rig.agent.apply_door_settings(_settings(rig, "lockdown", "olivia", "intruder", 1), 1)
    status = rig.agent.status()
    doc = yaml.safe_load((Path(__file__).parents[2] / "docs" / "local-api.yaml").read_text())
    schema = doc["components"]["schemas"]["Status"]["properties"]["mode_set"]
    jsonschema.validate(status["mode_set"], schema)
    assert mode_note(status, str) == "Set by olivia from the security office: intruder"
    i18n.ensure_compiled()
    french = i18n.translations("fr").gettext
    assert mode_note(status, french) == "Défini par olivia depuis le bureau de sécurité : intruder"
