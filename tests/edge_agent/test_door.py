"""Door state machine on the real DoorIO under MockFactory, with a manual clock."""

from __future__ import annotations

import pytest

from edge_agent.door import (
    Alarm,
    DoorController,
    DoorMode,
    DoorSettings,
    DoorTimings,
    GrantRefused,
    ManualScheduler,
)
from hardware.gpio import DoorSimulator, GpioSettings, InputSettings, open_door_io


@pytest.fixture
def rig():
    settings = GpioSettings(
        backend="mock",
        fire=InputSettings(pin=6),
        tamper=InputSettings(pin=13),
        debounce_s=0,  # synchronous inputs: the manual clock is the only time here
    )
    io = open_door_io(settings)
    sim = DoorSimulator(io)
    clock = ManualScheduler()
    events: list[tuple[str, dict]] = []
    door = DoorController(
        io,
        DoorTimings(unlock_s=5, held_open_s=30, rex_grace_s=2),
        scheduler=clock,
        emit=lambda k, p: events.append((k, p)),
    )
    door.attach()
    yield door, io, sim, clock, events
    io.close()


def kinds(events):
    return [k for k, _ in events]


def alarms(events):
    return [(k, p["alarm"]) for k, p in events if k.startswith("alarm.")]


def test_grant_unlocks_for_unlock_time(rig):
    door, io, _, clock, events = rig
    door.grant()
    assert io.lock_relay_energised
    clock.advance(4.9)
    assert io.lock_relay_energised
    clock.advance(0.2)
    assert not io.lock_relay_energised
    assert kinds(events) == ["door.unlocked", "door.locked"]


def test_second_grant_restarts_time(rig):
    door, io, _, clock, _ = rig
    door.grant()
    clock.advance(4)
    door.grant()
    clock.advance(4)
    assert io.lock_relay_energised
    clock.advance(1.1)
    assert not io.lock_relay_energised


def test_authorised_opening_relocks_on_close(rig):
    door, io, sim, clock, events = rig
    door.grant()
    clock.advance(1)
    sim.open_door()
    clock.advance(1)
    sim.close_door()
    assert not io.lock_relay_energised
    assert kinds(events) == ["door.unlocked", "door.opened", "door.closed", "door.locked"]
    assert events[1][1] == {"authorised": True}
    assert alarms(events) == []


def test_forced_open_alarm_and_acknowledge(rig):
    door, _, sim, _, events = rig
    sim.open_door()
    assert alarms(events) == [("alarm.raised", "forced_open")]
    assert door.snapshot()["alarms"][0]["alarm"] == "forced_open"
    assert door.acknowledge(Alarm.FORCED_OPEN, by="guard-7", why="checked, contractor")
    assert door.snapshot()["alarms"] == [
        {
            "alarm": "forced_open",
            "active": True,
            "acknowledged": True,
            "age_s": 0.0,
            "cleared_s": None,
        }
    ]
    sim.close_door()
    assert door.snapshot()["alarms"] == []
    assert not door.acknowledge(Alarm.FORCED_OPEN, by="guard-7")


def test_opening_just_after_relock_is_not_forced(rig):
    door, _, sim, clock, events = rig
    door.grant()
    clock.advance(5.5)  # relocked 0.5 s ago; the visitor was slow on the handle
    sim.open_door()
    assert alarms(events) == []
    clock.advance(3)
    sim.close_door()
    sim.open_door()  # now it is forced
    assert alarms(events) == [("alarm.raised", "forced_open")]


def test_rex_releases_and_prevents_forced_alarm(rig):
    _, io, sim, clock, events = rig
    sim.set_input("rex", True)
    assert io.lock_relay_energised
    sim.set_input("rex", False)
    sim.open_door()
    assert alarms(events) == []
    clock.advance(1)
    sim.close_door()
    assert not io.lock_relay_energised


def test_held_open_alarm_raised_and_cleared(rig):
    door, _, sim, clock, events = rig
    door.grant()
    sim.open_door()
    clock.advance(29)
    assert alarms(events) == []
    clock.advance(2)
    assert alarms(events) == [("alarm.raised", "held_open")]
    sim.close_door()
    assert alarms(events) == [("alarm.raised", "held_open"), ("alarm.cleared", "held_open")]


def test_lockdown_refuses_grants_but_not_rex(rig):
    door, io, sim, _, events = rig
    door.set_mode(DoorMode.LOCKDOWN, by="guard-1", why="incident at gate B")
    with pytest.raises(GrantRefused):
        door.grant()
    assert not io.lock_relay_energised
    sim.set_input("rex", True)  # egress is never blocked
    assert io.lock_relay_energised
    assert (
        "mode.changed",
        {"mode": "lockdown", "previous": "normal", "by": "guard-1", "why": "incident at gate B"},
    ) in events


def test_free_access_holds_relay_and_no_alarms(rig):
    door, io, sim, clock, events = rig
    door.set_mode("free_access", by="guard-1", why="event day")
    assert io.lock_relay_energised
    sim.open_door()
    clock.advance(600)
    assert io.lock_relay_energised
    assert alarms(events) == []
    sim.close_door()
    door.set_mode("normal", by="guard-1", why="event over")
    assert not io.lock_relay_energised


def test_fire_alarm_emergency_and_return(rig):
    door, io, sim, _, events = rig
    door.set_mode("lockdown", by="g", why="x")
    sim.fire_alarm(True)
    assert door.mode is DoorMode.EMERGENCY
    assert io.lock_relay_energised
    # a guard cannot leave emergency while the fire input is asserted
    assert door.set_mode("normal", by="g", why="y") is DoorMode.EMERGENCY
    assert io.lock_relay_energised
    with pytest.raises(ValueError):
        door.set_mode("emergency", by="g", why="z")
    sim.fire_alarm(False)
    assert door.mode is DoorMode.NORMAL  # the deferred request applies
    assert not io.lock_relay_energised
    assert ("alarm.raised", "fire") in alarms(events)
    assert ("alarm.cleared", "fire") in alarms(events)


def test_fire_at_start_up_enters_emergency():
    settings = GpioSettings(backend="mock", fire=InputSettings(pin=6), debounce_s=0)
    with open_door_io(settings) as io:
        DoorSimulator(io).fire_alarm(True)
        door = DoorController(io, scheduler=ManualScheduler())
        assert door.mode is DoorMode.EMERGENCY
        assert io.lock_relay_energised


def test_tamper_alarm(rig):
    door, _, sim, _, events = rig
    sim.tamper(True)
    sim.tamper(False)
    assert alarms(events) == [("alarm.raised", "tamper"), ("alarm.cleared", "tamper")]
    assert door.snapshot()["alarms"][0]["alarm"] == "tamper"  # until acknowledged
    door.acknowledge("tamper", by="g")
    assert door.snapshot()["alarms"] == []


def test_start_up_de_energises_and_safe_state(rig):
    door, io, _, clock, _ = rig
    door.grant()
    door.safe_state()
    assert not io.lock_relay_energised
    clock.advance(10)
    assert not io.lock_relay_energised


def test_snapshot(rig):
    door, _, _, clock, _ = rig
    door.grant()
    clock.advance(2)
    snap = door.snapshot()
    assert snap["mode"] == "normal" and snap["unlocked"] and snap["unlocked_for_s"] == 3.0


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"unlock_s": 0}, "unlock_s"),
        ({"held_open_s": 0}, "held_open_s"),
        ({"rex_grace_s": -1}, "rex_grace_s"),
    ],
)
def test_timings_validation(kwargs, key):
    with pytest.raises(ValueError, match=f"^{key}:"):
        DoorTimings(**kwargs)


CONFIGURED = DoorSettings(
    accept_qr=True,
    accept_uid=False,
    accept_ntag424=True,
    max_offline_staleness_s=86_400.0,
    unlock_s=5.0,
    held_open_s=30.0,
)


def test_door_settings_are_the_centrals_over_the_configuration():
    assert CONFIGURED.with_central(None) == CONFIGURED
    central = {"accept": ["uid"], "max_offline_staleness_s": 0, "unlock_s": 4, "mode": "lockdown"}
    settings = CONFIGURED.with_central(central)
    assert (settings.accept_qr, settings.accept_uid, settings.accept_ntag424) == (
        False,
        True,
        False,
    )
    assert settings.max_offline_staleness_s == 86_400.0  # 0 cannot unbound the door
    assert (settings.unlock_s, settings.held_open_s, settings.mode) == (4.0, 30.0, "lockdown")
    assert CONFIGURED.with_central({"unlock_s": "soon"}).unlock_s is None


def test_door_applies_the_times_of_its_settings(rig):
    door, io, _, clock, _ = rig
    door.apply_settings(CONFIGURED.with_central({"unlock_s": 2, "held_open_s": 9}))
    assert (door.timings.unlock_s, door.timings.held_open_s) == (2.0, 9.0)
    for bad in ({"unlock_s": 0.1}, {"held_open_s": "long"}):
        with pytest.raises(ValueError):
            door.apply_settings(CONFIGURED.with_central(bad))
    assert (door.timings.unlock_s, door.timings.held_open_s) == (2.0, 9.0)  # kept
    door.grant()
    clock.advance(2.1)
    assert not io.lock_relay_energised
