"""Issue #10, door modes and what a door believes offline: attacks that must fail.

* 5: a guard-set mode (lockdown, free access, normal after a lockdown) is durable:
  a crash, ``kill -9``, watchdog restart or power cut brings the door back in it,
  before the reader and the local API start;
* 6: the central changes the mode only when it means to: re-sent or unrelated door
  settings never lift a guard's lockdown; every change is journaled with who and why;
* 12: offline is bounded by default (24 h with a central), with an earlier alarm,
  shown in ``status`` and on the guard console;
* 13: a refused NTAG 424 tap still spends its counter; one grant, one check-in.

Real parts throughout: the SQLite store, the simulated door (gpiozero MockFactory),
``edge-agent run`` processes killed with SIGKILL, and the reference central.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import STATE_DOOR_MODE, ActionError
from edge_agent.api import action_status
from edge_agent.client import ApiError
from edge_agent.door import DoorMode
from edge_agent.policy import Credential
from edge_agent.store import Store, StoreIOError, StoreSettings
from edge_agent.visitors import CHECKIN_WINDOW_S, MAX_CHECKIN_PHOTO_BYTES, MAX_RECENT_GRANTS
from portier_common.reasons import Reason
from tests.edge_agent.test_agent import (
    GUARD_PIN,
    GUARD_UID,
    JPEG,
    NOW,
    NTAG_UID,
    STAFF_UID,
    UID_DOOR,
    invite,
    rigs,
    sun_url,
)


@pytest.fixture
def make_rig(tmp_path: Path):
    with rigs(tmp_path) as build:
        yield build


def _where(rig: Any) -> Path:
    """The folder a rig was built in (pass it as ``state=`` to rebuild over its store)."""
    return rig.config.paths.state_dir.parent


def _staff(rig: Any) -> dict[str, Any]:
    return rig.agent.present(Credential.badge(bytes.fromhex(STAFF_UID)))


def _payloads(rig: Any, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in rig.events(kind)]


# -- 5: a lockdown survives anything ------------------------------------------------------


@pytest.mark.parametrize("crash", [True, False], ids=["crash", "clean-stop"])
def test_lockdown_comes_back_after_a_restart(make_rig, crash):
    rig = make_rig(**UID_DOOR)
    assert _staff(rig)["granted"]
    rig.agent.guard_action(rig.login(), "lockdown", "intruder in the car park")
    if crash:
        # Power cut: nothing of the agent's own shutdown runs, the store just goes away.
        rig.store.close()
    else:
        rig.stack.close()
    again = make_rig(state=_where(rig), **UID_DOOR)
    assert again.agent.mode is DoorMode.LOCKDOWN
    assert again.agent.status()["door"]["mode"] == "lockdown"
    refused = _staff(again)
    assert (refused["granted"], refused["reason"]) == (False, "lockdown")
    assert not again.relay
    restored = _payloads(again, "door.mode_restored")[-1]
    assert restored["mode"] == "lockdown" and restored["by"] == "guard:g-7"
    assert restored["why"] == "intruder in the car park" and restored["set_at_ms"]
    started = _payloads(again, "agent.started")[-1]
    assert started["mode"] == "lockdown"


def test_free_access_comes_back_with_the_relay_held(make_rig):
    rig = make_rig()
    rig.agent.guard_action(rig.login(), "free_access", "open day")
    rig.store.close()
    again = make_rig(state=_where(rig))
    assert again.agent.mode is DoorMode.FREE_ACCESS and again.relay


def test_normal_set_by_a_guard_wins_over_the_configured_mode(make_rig):
    # [door] mode is the mode of a new device; once a guard decided, the guard's mode stands.
    rig = make_rig(door={"mode": "lockdown", "accept_uid": True})
    assert rig.agent.mode is DoorMode.LOCKDOWN  # nothing persisted: the configuration
    rig.agent.guard_action(rig.login(), "normal", "drill over")
    rig.store.close()
    again = make_rig(state=_where(rig), door={"mode": "lockdown", "accept_uid": True})
    assert again.agent.mode is DoorMode.NORMAL
    assert _staff(again)["granted"]


def test_the_mode_is_persisted_before_the_door_acts(make_rig, monkeypatch):
    rig = make_rig(**UID_DOOR)
    token = rig.login()
    seen: list[Any] = []
    door_set_mode = rig.agent.door.set_mode

    def spy(mode, by, why):
        seen.append(json.loads(rig.store.agent_state(STATE_DOOR_MODE))["mode"])
        return door_set_mode(mode, by=by, why=why)

    monkeypatch.setattr(rig.agent.door, "set_mode", spy)
    rig.agent.guard_action(token, "lockdown", "drill")
    assert seen == ["lockdown"]  # already on disk when the door switched


def test_a_mode_that_cannot_be_persisted_is_not_applied(make_rig, monkeypatch):
    rig = make_rig(**UID_DOOR)
    token = rig.login()

    def broken(values):
        raise StoreIOError("disk I/O error")

    monkeypatch.setattr(rig.store, "set_agent_state", broken)
    with pytest.raises(StoreIOError):
        rig.agent.guard_action(token, "free_access", "open day")
    assert rig.agent.mode is DoorMode.NORMAL and not rig.relay
    assert rig.events("mode.changed") == []


def test_emergency_is_not_persisted_and_the_door_returns_to_the_persisted_mode(make_rig):
    rig = make_rig()
    token = rig.login()
    rig.agent.guard_action(token, "lockdown", "threat")
    rig.sim.fire_alarm(True)
    assert rig.agent.mode is DoorMode.EMERGENCY and rig.relay
    rig.store.close()  # power cut during the fire alarm
    again = make_rig(state=_where(rig))
    assert again.agent.mode is DoorMode.LOCKDOWN  # the fire input is clear after the restart
    assert json.loads(again.store.agent_state(STATE_DOOR_MODE))["mode"] == "lockdown"
    # A mode set during a fire alarm is deferred, and durable too.
    again.sim.fire_alarm(True)
    again.agent.guard_action(again.login(), "normal", "all clear soon")
    assert again.agent.mode is DoorMode.EMERGENCY
    again.sim.fire_alarm(False)
    assert again.agent.mode is DoorMode.NORMAL
    again.store.close()
    assert make_rig(state=_where(rig)).agent.mode is DoorMode.NORMAL


def test_an_unreadable_persisted_mode_fails_closed(make_rig):
    rig = make_rig()
    rig.store.set_agent_state({STATE_DOOR_MODE: "{not json"})
    rig.store.close()
    again = make_rig(state=_where(rig))
    assert again.agent.mode is DoorMode.LOCKDOWN
    assert _payloads(again, "door.mode_restored")[-1]["by"] == "agent"


def test_agent_state_keys_cannot_touch_the_stores_own_meta(make_rig):
    rig = make_rig()
    with pytest.raises(ValueError):
        rig.store.set_agent_state({"downlink.cursor": "x"})


def _restart(served: Any, where: Path, **sections: Any) -> Any:
    from tests.edge_agent.test_local_api import start_agent

    served.stop(signal.SIGKILL)
    return start_agent(where, **sections)


def _process_events(database: Path) -> list[Any]:
    with Store.open(StoreSettings(path=database), read_only=True) as store:
        return store.journal.events(limit=100_000)


@pytest.mark.processes
def test_kill_9_keeps_the_lockdown_of_a_real_agent(tmp_path: Path):
    from tests.edge_agent.test_local_api import start_agent

    where = tmp_path / "agent"
    sections = {"door": {"accept_uid": True}, "guard": {"console": True, "accept_uid_login": True}}
    served = start_agent(where, **sections)
    try:
        client = served.client
        assert client.present_badge(STAFF_UID)["granted"] is True
        client.guard_login(GUARD_UID, GUARD_PIN)
        client.guard_action("lockdown", "armed intruder reported")
        served = _restart(served, where, **sections)  # kill -9, then the service restarts
        client = served.client
        # The very first answer of the new process already has the door locked down.
        assert client.status()["door"]["mode"] == "lockdown"
        refused = client.present_badge(STAFF_UID)
        assert (refused["granted"], refused["reason"]) == (False, "lockdown")
        client.guard_login(GUARD_UID, GUARD_PIN)
        client.guard_action("normal", "police left")
        served = _restart(served, where, **sections)
        assert served.client.present_badge(STAFF_UID)["granted"] is True
    finally:
        served.stop(signal.SIGKILL)
    events = _process_events(served.database)
    kinds = [e.type for e in events]
    starts = [i for i, kind in enumerate(kinds) if kind == "agent.started"]
    assert len(starts) == 3
    # Restored right after the start, before any decision of the new process.
    assert kinds[starts[1] + 1] == "door.mode_restored"
    assert events[starts[1] + 1].payload["mode"] == "lockdown"
    assert events[starts[2] + 1].payload["mode"] == "normal"
    assert "agent.stopped" not in kinds  # every stop was a kill -9


# -- 6: the central changes the mode only when it means to ------------------------------


def test_central_mode_rule_unit(make_rig):
    rig = make_rig(**UID_DOOR)
    agent = rig.agent
    assert agent.apply_central_mode("normal", 1) is True  # the central's first mode
    agent.guard_action(rig.login(), "lockdown", "suspicious parcel")
    # Re-sent (restart, resync) or unrelated settings with the same mode: the guard's stands.
    assert agent.apply_central_mode("normal", 2) is False
    assert agent.apply_central_mode("normal", 3) is False
    assert agent.mode is DoorMode.LOCKDOWN
    # Survives a restart, with the central's last mode.
    rig.store.close()
    again = make_rig(state=_where(rig), **UID_DOOR)
    assert again.agent.apply_central_mode("normal", 3) is False
    assert again.agent.mode is DoorMode.LOCKDOWN
    # A different mode from the central is deliberate: it applies.
    assert again.agent.apply_central_mode("free_access", 4) is True
    assert again.agent.mode is DoorMode.FREE_ACCESS
    # Settings without a mode change nothing, but the central's next mode applies, even
    # if it is the one it had sent before.
    assert again.agent.apply_central_mode(None, 5) is False
    assert again.agent.mode is DoorMode.FREE_ACCESS
    assert again.agent.apply_central_mode("free_access", 6) is True
    changes = [(p["mode"], p["by"], p["why"]) for p in _payloads(again, "mode.changed")]
    # (A mode already in force is no change: nothing journaled for the last one.)
    assert changes == [
        ("lockdown", "guard:g-7", "suspicious parcel"),
        ("free_access", "central", "door settings version 4"),
    ]
    # A mode the central set is as durable as a guard's.
    again.store.close()
    third = make_rig(state=_where(rig), **UID_DOOR)
    assert third.agent.mode is DoorMode.FREE_ACCESS and third.relay
    restored = _payloads(third, "door.mode_restored")[-1]
    assert (restored["by"], restored["why"]) == ("central", "door settings version 6")


def _add_guard_console(config: Any) -> Any:
    """The agent's TOML with ``[guard] console = true`` (this door has a kiosk)."""
    from edge_agent.config import load_config

    path = config.source
    text = path.read_text()
    if "[guard]" not in text:  # the demo's config writer may already give it one
        path.write_text(text + "\n[guard]\nconsole = true\naccept_uid_login = true\n")
    return load_config(path)


@pytest.mark.processes
def test_unrelated_central_settings_do_not_lift_a_guards_lockdown(tmp_path: Path):
    from central.testing import CentralProcess
    from portier_common.pins import hash_pin
    from tests.support.sync_rig import (
        enroll_with,
        journal_events,
        make_config,
        running_agent,
        wait_until,
    )

    with CentralProcess(tmp_path / "central") as central, central.admin() as admin:
        config = _add_guard_console(make_config(tmp_path / "a", central.url, device="held-door"))
        admin.put_badge(uid=STAFF_UID, holder="Sam Staff", doors=["gate-a"], kind="uid")
        admin.put_badge(
            uid=GUARD_UID,
            holder="Gail Guard",
            doors=["gate-a"],
            kind="uid",
            role="guard",
            guard_id="g-7",
            pin_hash=hash_pin(GUARD_PIN, n=2**10),
        )
        admin.put_door_settings("gate-a", {"unlock_s": 5})
        enroll_with(admin, config)
        stored = config.paths.state_dir / "central-door-settings.json"

        def settings_applied(version: int) -> bool:
            # The settings are applied right after the file is written: one more round.
            if not stored.exists() or json.loads(stored.read_text())["version"] != version:
                return False
            time.sleep(0.3)
            return True

        def lockdown(agent: Any, why: str) -> None:
            client = agent.client  # one client: it keeps the session's token
            client.guard_login(GUARD_UID, GUARD_PIN)
            client.guard_action("lockdown", why)

        with running_agent(config) as agent:
            wait_until(lambda: settings_applied(1), what="door settings")
            wait_until(lambda: agent.client.present_badge(STAFF_UID)["granted"], what="grant")
            lockdown(agent, "hostage situation")
            admin.put_door_settings("gate-a", {"unlock_s": 7})  # unrelated to the mode
            wait_until(lambda: settings_applied(2), what="unrelated settings")
            assert agent.status()["door"]["mode"] == "lockdown"
            assert agent.client.present_badge(STAFF_UID)["reason"] == "lockdown"
        # ... and neither does the restart, which re-applies the stored settings.
        with running_agent(config) as agent:
            assert agent.status()["door"]["mode"] == "lockdown"
            time.sleep(1.5)  # a sync round or two
            assert agent.status()["door"]["mode"] == "lockdown"
            # The central means it: it sends a mode.
            admin.put_door_settings("gate-a", {"mode": "normal", "unlock_s": 7})
            wait_until(lambda: agent.status()["door"]["mode"] == "normal", what="normal")
            assert agent.client.present_badge(STAFF_UID)["granted"] is True
            # A guard locks down again; the central re-sends its mode with another change.
            lockdown(agent, "second alert")
            admin.put_door_settings("gate-a", {"mode": "normal", "unlock_s": 8})
            wait_until(lambda: settings_applied(4), what="re-sent mode")
            assert agent.status()["door"]["mode"] == "lockdown"
            # A different mode from the central applies at once.
            admin.put_door_settings("gate-a", {"mode": "free_access", "unlock_s": 8})
            wait_until(lambda: agent.status()["door"]["mode"] == "free_access", what="free")
    events = journal_events(config)
    changes = [(e.payload["mode"], e.payload["by"], e.payload["why"]) for e in events
               if e.type == "mode.changed"]  # fmt: skip
    assert changes == [
        ("lockdown", "guard:g-7", "hostage situation"),
        ("normal", "central", "door settings version 3"),
        ("lockdown", "guard:g-7", "second alert"),
        ("free_access", "central", "door settings version 5"),
    ]
    restored = [e.payload for e in events if e.type == "door.mode_restored"]
    assert restored[-1]["mode"] == "lockdown" and restored[-1]["by"] == "guard:g-7"


# -- 12: offline is bounded by default ----------------------------------------------------

CENTRAL = {"central": {"url": "http://127.0.0.1:9"}}  # a central nobody answers at


def test_a_door_with_a_central_refuses_a_day_old_cache_by_default(make_rig):
    rig = make_rig(synced_at=NOW - 25 * 3600, **CENTRAL, **UID_DOOR)
    assert rig.config.door.max_offline_staleness_s == 86_400
    refused = _staff(rig)
    assert (refused["granted"], refused["reason"]) == (False, "cache_stale")
    assert rig.agent.status()["cache"] == {
        "staleness_s": 25 * 3600.0,
        "max_staleness_s": 86_400.0,
        "alarm_at_s": 43_200.0,
        "stale": True,
        "warning": True,
    }


def test_a_fresh_cache_is_trusted_and_the_warning_comes_at_half_the_bound(make_rig):
    rig = make_rig(synced_at=NOW - 600, **CENTRAL, **UID_DOOR)
    assert _staff(rig)["granted"]
    cache = rig.agent.status()["cache"]
    assert (cache["stale"], cache["warning"]) == (False, False)
    rig.clock.advance(12 * 3600)
    cache = rig.agent.status()["cache"]
    assert (cache["stale"], cache["warning"]) == (False, True)
    assert _staff(rig)["granted"]  # warned, not yet refusing


def test_a_standalone_door_keeps_no_bound(make_rig):
    rig = make_rig(synced_at=NOW - 90 * 86_400, **UID_DOOR)
    assert rig.config.door.max_offline_staleness_s is None
    assert _staff(rig)["granted"]
    assert rig.agent.status()["cache"]["max_staleness_s"] is None


def test_unbounded_offline_must_be_said_explicitly(make_rig):
    rig = make_rig(
        synced_at=NOW - 90 * 86_400,
        door={"accept_uid": True, "allow_unbounded_offline": True},
        **CENTRAL,
    )
    assert rig.config.door.max_offline_staleness_s is None
    assert _staff(rig)["granted"]


@pytest.mark.parametrize(
    ("door", "key"),
    [
        ({"max_offline_staleness_s": 0}, "door.max_offline_staleness_s"),
        (
            {"max_offline_staleness_s": 3600, "allow_unbounded_offline": True},
            "door.allow_unbounded_offline",
        ),
        ({"stale_alarm_fraction": 0}, "door.stale_alarm_fraction"),
        ({"stale_alarm_fraction": 1.5}, "door.stale_alarm_fraction"),
    ],
)
def test_staleness_settings_are_validated(tmp_path, door, key):

    from edge_agent.config import ConfigError
    from tests.edge_agent.test_agent import make_config

    with pytest.raises(ConfigError) as bad:
        make_config(tmp_path, door=door, **CENTRAL)
    assert bad.value.key == key


def test_the_central_cannot_unbound_a_door(make_rig):
    from edge_agent.sync import CentralLink

    rig = make_rig(synced_at=NOW - 25 * 3600, **CENTRAL, **UID_DOOR)
    link = CentralLink(rig.agent, rig.config)
    for value in (None, 0):
        link._apply_door_settings({"max_offline_staleness_s": value, "unlock_s": 4}, version=2)
        assert rig.agent.policy.max_offline_staleness_s == 86_400
        assert _staff(rig)["reason"] == "cache_stale"
    link._apply_door_settings({"max_offline_staleness_s": 30 * 3600}, version=3)
    assert _staff(rig)["granted"]  # a positive value from the central is a bound


def test_stale_cache_alarm_before_the_door_refuses(make_rig):
    from edge_agent.sync import CentralLink

    rig = make_rig(synced_at=NOW - 600, **CENTRAL)
    link = CentralLink(rig.agent, rig.config, wall_clock=lambda: rig.clock.wall)
    link._check_local()
    assert not link.alarms.is_active("stale_cache")
    rig.clock.advance(12 * 3600)
    link._check_local()
    link._check_local()  # raised once, not every round
    assert link.alarms.is_active("stale_cache")
    raised = [p for p in _payloads(rig, "sync.alarm") if p["alarm"] == "stale_cache"]
    assert len(raised) == 1 and raised[0]["state"] == "raised"
    assert raised[0]["max_staleness_s"] == 86_400
    # A sync brings the cache back: cleared.
    from edge_agent.store import Delta

    rig.store.cache.apply_delta(Delta(cursor="c-9"), synced_at_ms=int(rig.clock.wall * 1000))
    link._check_local()
    assert not link.alarms.is_active("stale_cache")
    states = [p["state"] for p in _payloads(rig, "sync.alarm") if p["alarm"] == "stale_cache"]
    assert states == ["raised", "cleared"]


def test_guard_console_shows_the_bound_and_the_refusal():
    from kiosk.ui.screens.guard_console import cache_row

    def _(text: str) -> str:
        return text

    def status(age: float | None, stale: bool = False, warning: bool = False) -> dict:
        cache = {"max_staleness_s": 86_400, "stale": stale, "warning": warning}
        return {"cache_staleness_s": age, "cache": cache}

    assert cache_row(status(3 * 3600), _) == ["Cache age", "3 h / 24 h"]
    assert cache_row(status(13 * 3600, warning=True), _) == ["Cache ageing", "13 h / 24 h"]
    stale = status(25 * 3600, stale=True, warning=True)
    assert cache_row(stale, _) == ["Cache expired", "25 h / 24 h"]
    assert cache_row(status(None, stale=True), _) == ["Cache expired", "never synced"]
    assert cache_row({"cache_staleness_s": 60}, _) == ["Cache age", "60 s"]  # no bound


def test_guard_console_stale_warning_in_french():
    from kiosk import i18n
    from kiosk.ui.screens.guard_console import cache_row

    i18n.ensure_compiled()
    _ = i18n.translations("fr").gettext
    stale = {"cache_staleness_s": 25 * 3600, "cache": {"max_staleness_s": 86_400, "stale": True}}
    assert cache_row(stale, _) == ["Données expirées", "25 h / 24 h"]
    ageing = {"cache_staleness_s": 13 * 3600, "cache": {"max_staleness_s": 86_400, "warning": True}}
    assert cache_row(ageing, _)[0] == "Données anciennes"


# -- 13b: a refused NTAG 424 tap still spends its counter --------------------------------


def _tap(rig: Any, counter: int) -> dict[str, Any]:
    return rig.agent.present(Credential.badge(bytes.fromhex(NTAG_UID), sun_url(counter)))


def test_a_tap_refused_in_lockdown_cannot_be_replayed_afterwards(make_rig):
    rig = make_rig()
    token = rig.login()
    rig.agent.guard_action(token, "lockdown", "drill")
    refused = _tap(rig, 7)
    assert (refused["granted"], refused["reason"]) == (False, "lockdown")
    assert rig.store.replay.last_counter(NTAG_UID) == 7  # spent with the deny
    rig.agent.guard_action(token, "normal", "drill over")
    replayed = _tap(rig, 7)  # the skimmed message, after the lockdown lifts
    assert (replayed["granted"], replayed["reason"]) == (False, "replayed")
    assert not rig.relay
    assert _tap(rig, 8)["granted"] is True  # the genuine card's next tap


@pytest.mark.parametrize(
    ("sections", "reason"),
    [
        ({"door": {"id": "gate-b"}}, Reason.WRONG_DOOR),
        ({"door": {"max_offline_staleness_s": 60}}, Reason.CACHE_STALE),
    ],
)
def test_other_refusals_spend_the_counter_too(make_rig, sections, reason):
    rig = make_rig(**sections)
    assert _tap(rig, 7)["reason"] == reason.value
    assert rig.store.replay.last_counter(NTAG_UID) == 7
    assert _tap(rig, 7)["reason"] == Reason.REPLAYED.value
    # One deny event per tap, nothing else journaled with it (no central to tell).
    assert [d["reason"] for d in rig.decisions()] == [reason.value, "replayed"]


def test_a_spent_counter_of_a_refused_tap_is_shared_with_the_central(make_rig):
    rig = make_rig(central={"url": "http://127.0.0.1:9"})
    token = rig.login()
    rig.agent.guard_action(token, "lockdown", "drill")
    assert _tap(rig, 9)["reason"] == "lockdown"
    decision, shared = rig.events()[-2:]
    assert decision.type == "access.decision" and shared.type == "badge.counter"
    assert shared.seq == decision.seq + 1  # the same commit
    assert shared.payload["uid"] == NTAG_UID.lower() and shared.payload["counter"] == 9


def test_a_replayed_or_forged_tap_spends_nothing(make_rig):
    rig = make_rig()
    assert _tap(rig, 7)["granted"]
    assert _tap(rig, 5)["reason"] == "replayed"
    assert rig.store.replay.last_counter(NTAG_UID) == 7
    forged = rig.agent.present(
        Credential.badge(bytes.fromhex(NTAG_UID), sun_url(50, key=bytes(16)))
    )
    assert forged["granted"] is False
    assert rig.store.replay.last_counter(NTAG_UID) == 7


# -- 13c: one granted invitation checks in once -------------------------------------------


def test_one_grant_one_checkin(make_rig):
    rig = make_rig()
    assert rig.agent.present(Credential.qr(invite()))["granted"]
    assert rig.agent.checkin("inv-multi", consent=True, photo=JPEG)["checked_in"]
    for _ in range(3):
        with pytest.raises(ActionError) as refused:
            rig.agent.checkin("inv-multi", consent=True, photo=JPEG)
        assert (refused.value.code, action_status(refused.value)) == ("already_checked_in", 409)
    assert len(rig.events("visitor.checked_in")) == 1
    assert rig.store.media.usage().count == 1
    # A guard may still check the visitor in by hand (journaled as the guard's).
    manual = rig.agent.checkin("inv-multi", consent=False, photo=None, token=rig.login())
    assert rig.store.journal.get(manual["seq"]).payload["by"] == "guard:g-7"
    # A new grant of the multi-use invitation allows a new check-in.
    rig.clock.advance(60)
    assert rig.agent.present(Credential.qr(invite()))["granted"]
    assert rig.agent.checkin("inv-multi", consent=False, photo=None)["checked_in"]


def test_a_failed_checkin_does_not_use_up_the_grant(make_rig, monkeypatch):
    rig = make_rig()
    assert rig.agent.present(Credential.qr(invite()))["granted"]

    def failing(*_args, **_kwargs):
        raise StoreIOError("disk I/O error")

    # A failing disk fails every write: the lone append and the one that commits the
    # on-site list's row with the event (check-ins take that one).
    with monkeypatch.context() as disk_down:
        disk_down.setattr(rig.store.journal, "append", failing)
        disk_down.setattr(rig.store.journal, "append_claimed", failing)
        with pytest.raises(StoreIOError):
            rig.agent.checkin("inv-multi", consent=False, photo=None)
    assert rig.agent.checkin("inv-multi", consent=False, photo=None)["checked_in"]


def test_checkin_photo_size_is_bounded(make_rig):
    rig = make_rig()
    assert rig.agent.present(Credential.qr(invite()))["granted"]
    big = JPEG[:-2] + bytes(MAX_CHECKIN_PHOTO_BYTES) + b"\xff\xd9"
    with pytest.raises(ActionError) as refused:
        rig.agent.checkin("inv-multi", consent=True, photo=big)
    assert (refused.value.code, action_status(refused.value)) == ("photo_too_large", 413)
    assert rig.store.media.usage().count == 0
    # The grant is still there for a check-in with a proper photo.
    assert rig.agent.checkin("inv-multi", consent=True, photo=JPEG)["photo"]


def test_recent_grants_stay_bounded(make_rig):
    rig = make_rig()
    visitors = rig.agent.visitors
    for n in range(MAX_RECENT_GRANTS + 500):
        visitors.remember_grant(f"inv-{n}")
    assert len(visitors._recent_grants) == MAX_RECENT_GRANTS
    assert f"inv-{MAX_RECENT_GRANTS + 499}" in visitors._recent_grants  # the newest are kept
    rig.clock.advance(CHECKIN_WINDOW_S + 1)
    visitors.remember_grant("inv-late")
    assert list(visitors._recent_grants) == ["inv-late"]  # expired ones are forgotten


@pytest.mark.processes
def test_checkin_twice_over_the_local_api(tmp_path: Path):
    from tests.edge_agent.test_local_api import invite_now, start_agent

    served = start_agent(tmp_path / "agent")
    try:
        client = served.client
        token = invite_now("inv-multi")
        assert client.present_qr(token)["granted"] is True
        assert client.checkin("inv-multi", consent=True, photo_jpeg=JPEG)["checked_in"]
        with pytest.raises(ApiError) as again:
            client.checkin("inv-multi", consent=True, photo_jpeg=JPEG)
        assert (again.value.status, again.value.code) == (409, "already_checked_in")
        assert client.present_qr(token)["granted"] is True
        big = JPEG[:-2] + bytes(MAX_CHECKIN_PHOTO_BYTES) + b"\xff\xd9"
        with pytest.raises(ApiError) as large:
            client.checkin("inv-multi", consent=True, photo_jpeg=big)
        assert (large.value.status, large.value.code) == (413, "photo_too_large")
        assert client.checkin("inv-multi", consent=False)["checked_in"]
    finally:
        served.stop()
