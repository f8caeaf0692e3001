"""Issue #11, agent side: the door tells the truth in every door state.

Each test attacks one property and failed on the code before the fix:

1. during a fire alarm (``emergency``) every entry is refused with ``emergency``,
   after the genuineness checks (a forgery stays a forgery), a refused NTAG 424 tap
   still spends its counter, guards still log in, and egress is untouched;
2. a refused guard action is journaled as refused (``guard.action_refused`` with its
   code), never as an action done; open once is refused in emergency (``emergency``);
3. on a guard console, a guard's badge tap at the reader is a login step, never an
   access request: the relay stays de-energised and no granted decision is journaled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import ActionError
from edge_agent.api import action_status
from edge_agent.door import DoorMode
from edge_agent.policy import Credential
from edge_agent.store import Badge, Delta
from tests.edge_agent.test_agent import (
    GUARD_PIN,
    GUARD_UID,
    NTAG_UID,
    STAFF_UID,
    UID_DOOR,
    base_delta,
    invite,
    rigs,
    sun_url,
)

NTAG_GUARD_UID = "04AA0424000002"


@pytest.fixture
def make_rig(tmp_path: Path):
    with rigs(tmp_path) as build:
        yield build


def _payloads(rig: Any, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in rig.events(kind)]


# -- 1. emergency refuses entry ---------------------------------------------------------------


def test_a_valid_invitation_during_a_fire_is_refused_not_welcomed(make_rig):
    rig = make_rig()
    rig.sim.fire_alarm(True)
    result = rig.agent.present(Credential.qr(invite()), source="kiosk-camera")
    assert (result["granted"], result["reason"]) == (False, "emergency")
    assert result["holder"] == "Ada Lovelace"  # genuine: who it was is journaled
    assert _payloads(rig, "access.decision")[-1]["reason"] == "emergency"
    assert rig.relay  # released by the fire input, not by the grant; egress stays free
    # No self check-in (and photo) is offered on a refused decision.
    with pytest.raises(ActionError):
        rig.agent.checkin("inv-multi", consent=False, photo=None)
    rig.sim.fire_alarm(False)
    assert rig.agent.present(Credential.qr(invite()))["granted"] is True


def test_a_forged_invitation_during_a_fire_is_journaled_as_forged(make_rig):
    from tests.edge_agent.test_agent import FORGER

    rig = make_rig()
    rig.sim.fire_alarm(True)
    assert rig.agent.present(Credential.qr(invite(FORGER)))["reason"] == "bad_signature"


def test_a_staff_badge_during_a_fire_is_refused(make_rig):
    rig = make_rig(**UID_DOOR)
    rig.sim.fire_alarm(True)
    result = rig.agent.present(Credential.badge(bytes.fromhex(STAFF_UID)))
    assert (result["granted"], result["reason"]) == (False, "emergency")


def test_an_ntag424_tap_refused_during_a_fire_spends_its_counter(make_rig):
    rig = make_rig()
    rig.sim.fire_alarm(True)
    tap = Credential.badge(bytes.fromhex(NTAG_UID), sun_url(7))
    assert rig.agent.present(tap)["reason"] == "emergency"
    assert rig.store.replay.last_counter(NTAG_UID) == 7
    rig.sim.fire_alarm(False)
    assert rig.agent.present(tap)["reason"] == "replayed"  # skimmed during the fire
    assert not rig.relay


def test_a_guard_still_logs_in_during_a_fire(make_rig):
    rig = make_rig()
    rig.sim.fire_alarm(True)
    token = rig.login()
    state = rig.agent.guard_action(token, "acknowledge", "evacuation under way", "fire")
    assert state["mode"] == "emergency"


# -- 2. a refused guard action is journaled as refused ----------------------------------------


def test_open_once_refused_in_lockdown_is_journaled_as_refused(make_rig):
    rig = make_rig()
    token = rig.login()
    rig.agent.guard_action(token, "lockdown", "intruder")
    with pytest.raises(ActionError) as refused:
        rig.agent.guard_action(token, "open_once", "courier")
    assert (refused.value.code, action_status(refused.value)) == ("lockdown", 409)
    # The security office must not read an opening that never happened.
    assert [p["action"] for p in _payloads(rig, "guard.action")] == ["lockdown"]
    [journaled] = _payloads(rig, "guard.action_refused")
    assert journaled["action"] == "open_once" and journaled["reason_code"] == "lockdown"
    assert (journaled["guard_id"], journaled["why"]) == ("g-7", "courier")
    assert not rig.relay


def test_open_once_in_emergency_is_refused_with_its_own_code(make_rig):
    rig = make_rig()
    token = rig.login()
    rig.sim.fire_alarm(True)
    before = len(rig.events("door.unlocked"))
    with pytest.raises(ActionError) as refused:
        rig.agent.guard_action(token, "open_once", "firefighters")
    assert (refused.value.code, action_status(refused.value)) == ("emergency", 409)
    assert rig.events("guard.action") == []
    assert _payloads(rig, "guard.action_refused")[-1]["reason_code"] == "emergency"
    assert len(rig.events("door.unlocked")) == before and rig.relay  # fire release untouched


def test_acknowledging_no_pending_alarm_is_journaled_as_refused(make_rig):
    rig = make_rig()
    token = rig.login()
    with pytest.raises(ActionError) as refused:
        rig.agent.guard_action(token, "acknowledge", "seen", "held_open")
    assert (refused.value.code, action_status(refused.value)) == ("no_such_alarm", 409)
    assert rig.events("guard.action") == []
    assert _payloads(rig, "guard.action_refused")[-1]["reason_code"] == "no_such_alarm"


def test_an_action_carried_out_is_journaled_before_the_door_acts(make_rig, monkeypatch):
    rig = make_rig()
    token = rig.login()
    seen: list[int] = []
    grant = rig.agent.door.grant

    def spy(*args: Any, **kw: Any) -> None:
        seen.append(len(rig.events("guard.action")))
        grant(*args, **kw)

    monkeypatch.setattr(rig.agent.door, "grant", spy)
    rig.agent.guard_action(token, "open_once", "courier")
    assert seen == [1] and rig.relay
    assert _payloads(rig, "guard.action")[-1]["action"] == "open_once"


# -- 3. a guard's badge tap on a console is a login, not an entry -----------------------------


def _ntag_guard(rig: Any) -> None:
    data = dict(next(b for b in base_delta().badges if b.holder == "Gail Guard").data or {})
    data["guard_id"] = "g-424"
    rig.store.cache.apply_delta(
        Delta(cursor="c-2", badges=[Badge(NTAG_GUARD_UID, "ntag424", "Nadia Ntag", data=data)])
    )


def test_a_uid_guard_tap_on_a_console_never_unlocks(make_rig):
    rig = make_rig(**UID_DOOR)  # this door would let the guard's UID badge in
    with rig.agent.bus.subscribe() as live:
        result = rig.agent.present_badge_tap(bytes.fromhex(GUARD_UID), None)
        events = [live.get(timeout=1) for _ in range(2)]
    assert not rig.relay
    assert not [d for d in rig.decisions() if d["granted"]]
    assert rig.events("door.unlocked") == []
    [tap] = _payloads(rig, "guard.badge_tap")
    assert (tap["badge_uid"], tap["guard_id"], tap["verified"]) == (GUARD_UID, "g-7", True)
    assert result["seq"] == rig.events("guard.badge_tap")[0].seq
    # The kiosk gets the tap live to open the login at the PIN step.
    assert [e["type"] for e in events] == ["guard.badge_tap", "guard.tap"]
    assert events[1]["badge_uid"] == GUARD_UID
    assert rig.agent.guard_login(GUARD_UID, GUARD_PIN).guard_id == "g-7"
    assert not rig.relay


def test_an_ntag424_guard_tap_on_a_console_never_unlocks_and_carries_to_the_login(make_rig):
    rig = make_rig()
    _ntag_guard(rig)
    tap = sun_url(60, uid=NTAG_GUARD_UID)
    rig.agent.present_badge_tap(bytes.fromhex(NTAG_GUARD_UID), tap)
    assert not rig.relay and rig.events("door.unlocked") == []
    assert rig.decisions() == []
    assert _payloads(rig, "guard.badge_tap")[-1]["counter"] == 60
    assert rig.store.replay.last_counter(NTAG_GUARD_UID) == 60  # the tap is spent
    assert rig.agent.guard_login(NTAG_GUARD_UID, GUARD_PIN, sun_url=tap).guard_id == "g-424"
    # The same message replayed at the reader: journaled unverified, no live tap, no door.
    rig.agent.present_badge_tap(bytes.fromhex(NTAG_GUARD_UID), tap)
    last = _payloads(rig, "guard.badge_tap")[-1]
    assert (last["verified"], last["why"]) == (False, "replayed")
    assert not rig.relay


def test_an_ntag424_guard_tap_spends_the_counter_for_the_central(make_rig):
    rig = make_rig(central={"url": "http://127.0.0.1:9"})
    _ntag_guard(rig)
    rig.agent.present_badge_tap(bytes.fromhex(NTAG_GUARD_UID), sun_url(61, uid=NTAG_GUARD_UID))
    tap, shared = rig.events()[-2:]
    assert (tap.type, shared.type) == ("guard.badge_tap", "badge.counter")
    assert shared.payload["counter"] == 61 and shared.payload["uid"] == NTAG_GUARD_UID.lower()


def test_a_guard_tap_on_a_door_without_console_is_a_staff_badge(make_rig):
    rig = make_rig(guard={"console": False}, **UID_DOOR)
    result = rig.agent.present_badge_tap(bytes.fromhex(GUARD_UID), None)
    assert (result["granted"], result["holder"]) == (True, "Gail Guard")
    assert rig.relay
    assert rig.events("guard.badge_tap") == []


def test_the_reader_loop_takes_a_guard_tap_as_a_login_step(make_rig):
    from tests.edge_agent.test_agent import wait_until

    rig = make_rig(**UID_DOOR)
    rig.agent.start_reader()
    assert rig.devices.reader.present(GUARD_UID).wait(5)
    wait_until(lambda: rig.events("guard.badge_tap"))
    assert not rig.relay and rig.decisions() == []
    assert rig.agent.door.mode is DoorMode.NORMAL


# -- kiosk: what the console offers and what a visitor is told --------------------------------


def test_the_console_greys_out_open_once_where_the_agent_refuses_it():
    from kiosk.ui.screens.guard_console import can_open_once

    def status(mode: str) -> dict[str, Any]:
        return {"door": {"mode": mode, "unlocked": mode != "normal", "alarms": []}}

    assert can_open_once(status("normal")) and can_open_once(status("free_access"))
    assert not can_open_once(status("lockdown"))
    assert not can_open_once(status("emergency"))
    assert not can_open_once({})  # no door state yet: nothing to offer


def test_emergency_has_plain_words_for_visitors_and_guards_in_both_languages(tmp_path):
    import gettext
    import shutil

    from kiosk import i18n, wording

    for kind in ("qr", "badge"):
        said = wording.denial("emergency", kind)
        assert said is not wording.UNKNOWN_REASON
        assert "nearest exit" in said.text
    assert wording.guard_error("emergency") != wording.GUARD_ERROR_OTHER
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale, ignore=shutil.ignore_patterns("*.mo"))
    i18n.ensure_compiled(locale)
    fr = gettext.translation("kiosk", str(locale), languages=["fr"])
    assert fr.gettext(wording.denial("emergency").title) == "Alarme incendie : n'entrez pas"
    assert "sortie la plus proche" in fr.gettext(wording.denial("emergency").text)
    assert fr.gettext(wording.EVENT_TYPES["guard.action_refused"]) != "Guard action refused"
