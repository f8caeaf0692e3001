"""Issue #11, "the door opens when the visitor is ready" (agent and kiosk together).

Each test failed on the code before the change:

1. decide now, open on request: ``POST /v1/present`` with ``"open": "on_request"``
   decides and journals at the scan (a single-use invitation is spent then) but
   leaves the relay off; ``POST /v1/grants/{id}/open`` opens it, for ``[door]
   visitor_unlock_s``, after checking the door's mode again (a fire alarm or a
   lockdown since the scan refuses it, journaled ``access.open_refused``); callers
   that do not ask (``edge-agent present``, the demo, older tests) still open at once;
2. a grant never opened within ``[door] grant_hold_s`` is journaled
   ``access.grant_unused`` exactly once, also across a restart, and never opens the
   door afterwards;
3. within the bound the door opens again (no "already used"), each opening a
   ``door.unlocked`` with the grant's reference;
4. the kiosk: the relay stays off while the visitor poses for a photo and opens after
   the photo step, or after a pause if they do nothing; the countdown starts at the
   unlock and survives a language switch; "Have a good visit" only while unlocked,
   and "Open the door again" after the relock;
5. a guard's badge tap on a console device never energises the relay;
6. staff are not sent to reception.

The agent half runs on :func:`test_agent.rigs` (manual clocks) and on the real agent
process of :mod:`tests.support.kiosk_rig`; the kiosk half reuses ``test_kiosk_ui``'s fixtures
(one Xvfb, one real agent, one app).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import ActionError
from edge_agent.api import action_status
from edge_agent.client import ApiError
from edge_agent.policy import Credential
from tests.edge_agent.test_agent import invite, rigs
from tests.kiosk.test_kiosk_ui import scan, t, wait_journal
from tests.support.kiosk_rig import EDGE_AGENT, GUARD_PIN, GUARD_UID

HOLD = {"door": {"grant_hold_s": 30, "visitor_unlock_s": 9}}


@pytest.fixture
def make_rig(tmp_path: Path):
    with rigs(tmp_path) as build:
        yield build


def _payloads(rig: Any, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in rig.events(kind)]


def _present(rig: Any, **claims: Any) -> dict[str, Any]:
    return rig.agent.present(
        Credential.qr(invite(**claims)), source="kiosk-camera", open_mode="on_request"
    )


# -- 1. decide now, open on request -----------------------------------------------------------


def test_on_request_decides_and_spends_at_the_scan_but_opens_only_when_asked(make_rig):
    rig = make_rig(**HOLD)
    result = _present(rig, invitation_id="inv-once", single_use=True)
    assert result["granted"] and result["open"] == "on_request"
    grant = result["grant"]
    assert len(grant["id"]) >= 32 and grant["ref"] == result["grant_ref"]
    assert grant["hold_s"] == 30 and grant["unlock_s"] == 9
    assert not rig.relay  # posing for a photo: the door stays locked
    assert rig.events("door.unlocked") == []
    [decision] = rig.decisions()
    assert decision["grant_ref"] == grant["ref"] and decision["granted"]
    assert grant["id"] not in str(rig.events())  # the handle is a capability: never journaled
    assert rig.store.replay.is_used("inv-once")  # spent at the scan, as before
    rig.clock.advance(20)  # the photo took a while
    opened = rig.agent.open_grant(grant["id"])
    assert opened["opened"] and opened["openings"] == 1 and rig.relay
    [unlocked] = _payloads(rig, "door.unlocked")
    assert unlocked["grant_ref"] == grant["ref"] and unlocked["unlock_ms"] == 9000
    assert unlocked["by"] == "qr:inv-once"
    rig.scheduler.advance(8.9)
    assert rig.relay  # the visitor unlock time, not the staff badge's 5 s
    rig.scheduler.advance(0.2)
    assert not rig.relay


def test_old_callers_still_open_at_once(make_rig):
    rig = make_rig(**HOLD)
    result = rig.agent.present(Credential.qr(invite()), source="cli")
    assert result["granted"] and "grant" not in result and rig.relay
    assert "grant_ref" not in rig.decisions()[-1]
    with pytest.raises(ActionError) as err:
        rig.agent.present(Credential.qr(invite()), open_mode="later")
    assert err.value.code == "bad_request"


def test_a_refused_invitation_gets_no_grant(make_rig):
    rig = make_rig(**HOLD)
    result = _present(rig, invitation_id="inv-used", single_use=True)
    assert not result["granted"] and result["reason"] == "replayed" and "grant" not in result
    assert "grant_ref" not in rig.decisions()[-1]


@pytest.mark.parametrize("mode", ["emergency", "lockdown"])
def test_open_request_rechecks_the_mode_fire_or_lockdown_since_the_scan(make_rig, mode):
    rig = make_rig(**HOLD)
    grant = _present(rig)["grant"]
    if mode == "emergency":
        rig.sim.fire_alarm(True)  # the fire input between the decision and the relay
    else:
        rig.agent.set_mode("lockdown", by="guard:g1", why="intruder")
    before = len(rig.events("door.unlocked"))
    with pytest.raises(ActionError) as err:
        rig.agent.open_grant(grant["id"])
    assert (err.value.code, action_status(err.value)) == (mode, 409)
    [refused] = _payloads(rig, "access.open_refused")
    assert refused["reason_code"] == mode and refused["grant_ref"] == grant["ref"]
    assert len(rig.events("door.unlocked")) == before  # no opening of ours
    if mode == "emergency":
        rig.sim.fire_alarm(False)
        rig.agent.set_mode("normal", by="guard:g1", why="all clear")
    else:
        rig.agent.set_mode("normal", by="guard:g1", why="all clear")
    assert rig.agent.open_grant(grant["id"])["opened"]  # still within the bound


# -- 2. unused grants ---------------------------------------------------------------------------


def test_a_grant_not_opened_in_time_is_journaled_once_and_opens_nothing_after(make_rig):
    rig = make_rig(**HOLD)
    result = _present(rig)
    grant = result["grant"]
    rig.clock.advance(29)
    assert rig.agent.sweep_grants() == 0
    rig.clock.advance(2)
    assert rig.agent.sweep_grants() == 1
    assert rig.agent.sweep_grants() == 0
    [unused] = _payloads(rig, "access.grant_unused")
    assert unused["grant_ref"] == grant["ref"] and unused["credential_id"] == "inv-multi"
    assert unused["decision_seq"] == result["seq"] and unused["why"] == "not_opened"
    with pytest.raises(ActionError) as err:
        rig.agent.open_grant(grant["id"])
    assert (err.value.code, action_status(err.value)) == ("grant_expired", 410)
    assert not rig.relay and len(_payloads(rig, "access.grant_unused")) == 1
    with pytest.raises(ActionError) as err:
        rig.agent.open_grant("x" * 32)
    assert (err.value.code, action_status(err.value)) == ("grant_unknown", 404)


def test_an_open_request_after_the_bound_ends_the_grant_itself_once(make_rig):
    rig = make_rig(**HOLD)
    grant = _present(rig)["grant"]
    rig.clock.advance(31)
    for _ in range(3):
        with pytest.raises(ActionError) as err:
            rig.agent.open_grant(grant["id"])
        assert err.value.code == "grant_expired"
    rig.agent.sweep_grants()
    assert len(_payloads(rig, "access.grant_unused")) == 1 and not rig.relay


def test_an_opened_grant_is_not_unused(make_rig):
    rig = make_rig(**HOLD)
    grant = _present(rig)["grant"]
    rig.agent.open_grant(grant["id"])
    rig.clock.advance(31)
    rig.agent.sweep_grants()
    assert rig.events("access.grant_unused") == []


def test_a_restart_journals_the_waiting_grants_once_and_their_handles_die(make_rig, tmp_path):
    rig = make_rig(**HOLD)
    waiting = _present(rig)
    opened = _present(rig)
    rig.agent.open_grant(opened["grant"]["id"])
    rig.stack.close()  # the agent stops (or dies) with a grant waiting
    state = rig.config.paths.state_dir.parent
    again = make_rig(state=state, **HOLD)
    unused = _payloads(again, "access.grant_unused")
    assert [(u["grant_ref"], u["why"]) for u in unused] == [
        (waiting["grant_ref"], "agent_restarted")
    ]
    for handle in (waiting["grant"]["id"], opened["grant"]["id"]):
        with pytest.raises(ActionError) as err:
            again.agent.open_grant(handle)
        assert err.value.code == "grant_unknown"
    again.stack.close()
    third = make_rig(state=state, **HOLD)  # a second restart journals nothing more
    assert len(_payloads(third, "access.grant_unused")) == 1
    assert not third.relay


# -- 3. open again within the bound -------------------------------------------------------------


def test_open_again_within_the_bound_without_already_used(make_rig):
    rig = make_rig(**HOLD)
    grant = _present(rig, invitation_id="inv-once", single_use=True)["grant"]
    rig.agent.open_grant(grant["id"])
    rig.scheduler.advance(10)
    assert not rig.relay  # walked too slowly
    rig.clock.advance(10)
    second = rig.agent.open_grant(grant["id"])
    assert second["openings"] == 2 and rig.relay
    refs = [u["grant_ref"] for u in _payloads(rig, "door.unlocked")]
    assert refs == [grant["ref"], grant["ref"]]
    assert [d["granted"] for d in rig.decisions()] == [True]  # one decision, no "already used"
    # Pressed again while still unlocked: the window starts again, and is journaled.
    rig.scheduler.advance(5)
    rig.agent.open_grant(grant["id"])
    last = _payloads(rig, "door.unlocked")[-1]
    assert last["extended"] is True and last["grant_ref"] == grant["ref"]
    rig.scheduler.advance(8.5)
    assert rig.relay


# -- 5. the real agent process: old callers, a guard's tap, bad requests ----------------------


def _relock(rig: Any) -> None:
    """Walk through: open and close the simulated door, the agent relocks (relock on close)."""
    client = rig.client()
    client.simulate("door_open")
    time.sleep(0.2)  # longer than the inputs' debounce
    client.simulate("door_close")
    end = time.monotonic() + 5
    while client.status()["door"]["unlocked"]:
        assert time.monotonic() < end, "the door did not relock on close"
        time.sleep(0.05)


@pytest.mark.processes
def test_real_agent_old_present_callers_still_unlock_at_once(kiosk, rig):
    head = _head(rig)
    token = rig.visitors[0].token
    answer = rig.client().present_qr(token, source="cli")
    assert answer["granted"] and "grant" not in answer
    assert rig.client().status()["door"]["unlocked"]  # at once, as before
    _relock(rig)
    cli = subprocess.run(
        [str(EDGE_AGENT), "present", "--config", str(rig.config_path), "--qr", token],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    unlocked = _since(rig, head, "door.unlocked")
    assert len(unlocked) == 2 and all("grant_ref" not in e for e in unlocked)
    _relock(rig)


@pytest.mark.processes
def test_real_agent_grant_api_answers_bad_requests_clearly(kiosk, rig):
    client = rig.client()
    with pytest.raises(ApiError) as err:
        client.request("POST", "/v1/present", {"qr": "x", "open": "later"})
    assert (err.value.status, err.value.code) == (400, "bad_request")
    with pytest.raises(ApiError) as err:
        client.open_grant("A" * 32)
    assert (err.value.status, err.value.code) == (404, "grant_unknown")
    with pytest.raises(ApiError) as err:
        client.open_grant("short")
    assert (err.value.status, err.value.code) == (400, "bad_request")
    answer = client.present_qr(rig.visitors[0].token, open_mode="on_request")
    assert not client.status()["door"]["unlocked"]
    opened = client.open_grant(answer["grant"]["id"])
    assert opened["opened"] and opened["door"]["unlocked"]
    _relock(rig)


@pytest.mark.processes
def test_a_guard_tap_on_the_console_never_energises_the_relay(kiosk, rig):
    client = rig.client()
    head = _head(rig)
    client.simulate("badge", uid=GUARD_UID)

    def since() -> list[dict[str, Any]]:
        return [e for e in rig.journal() if e["seq"] > head]

    kiosk.wait_for(lambda: any(e["type"] == "guard.badge_tap" for e in since()), 5, "no tap")
    kiosk.pump(0.5)
    assert not client.status()["door"]["unlocked"]
    assert [e for e in since() if e["type"] in ("door.unlocked", "access.decision")] == []


# -- 4. the kiosk: the door opens when the visitor is ready ----------------------------------


def _unlocked(rig: Any) -> bool:
    return bool(rig.client().status()["door"]["unlocked"])


@pytest.fixture
def visitor(kiosk):
    """The kiosk, for a new visitor: the previous test's invitation is not debounced."""
    kiosk.app.scanner.debouncer.forget()
    return kiosk


def _head(rig: Any) -> int:
    return max((e["seq"] for e in rig.journal()), default=0)


def _since(rig: Any, head: int, kind: str) -> list[dict[str, Any]]:
    return [e for e in rig.journal() if e["seq"] > head and e["type"] == kind]


def _wait(rig: Any, head: int, kind: str) -> list[dict[str, Any]]:
    return wait_journal(rig, lambda e: e["seq"] > head and e["type"] == kind)


def _grant_ref(rig: Any, head: int) -> str:
    decision = _wait(rig, head, "access.decision")
    assert decision[-1]["granted"], decision[-1]
    return decision[-1]["grant_ref"]


@pytest.mark.processes
def test_photo_yes_keeps_the_door_locked_while_posing_then_opens_it(visitor, rig):
    kiosk = visitor
    head = _head(rig)
    app = kiosk.app
    screen = scan(kiosk, "valid", "welcome")
    ref = _grant_ref(rig, head)
    assert screen.door == "waiting" and not _unlocked(rig)
    assert t(kiosk, "The door will open in {seconds} s.").format(seconds=8) in kiosk.texts()
    assert not any("Have a good visit" in x for x in kiosk.texts())
    kiosk.tap_text(t(kiosk, "Yes, take my photo"))
    photo = kiosk.wait_screen("photo")
    kiosk.clock.advance(20)  # posing, well past the welcome screen's pause
    kiosk.pump(0.6)
    assert not _unlocked(rig)  # the relay stays off while the visitor poses
    kiosk.wait_for(lambda: photo.ids.viewfinder.texture is not None, 10, "no live view")
    kiosk.tap_text(t(kiosk, "Take photo"))
    kiosk.clock.advance(3.5)
    kiosk.wait_for(lambda: photo.state == "preview", 5, "no preview")
    assert not _unlocked(rig)
    kiosk.tap_text(t(kiosk, "Use this photo"))
    kiosk.wait_screen("welcome", timeout=10)
    kiosk.wait_for(lambda: _unlocked(rig), 5, "the door did not open after the photo step")
    kiosk.wait_for(lambda: screen.door == "open" and app.door_remaining > 0, 5, "no countdown")
    [unlocked] = _since(rig, head, "door.unlocked")
    assert unlocked["grant_ref"] == ref
    texts = kiosk.texts()
    assert t(kiosk, "Your photo has been added to your pass.") in texts
    assert any(x.startswith("The door is open: go through within") for x in texts)
    checkin = _wait(rig, head, "visitor.checked_in")[-1]
    assert checkin["consent"] is True and checkin["photo"]
    _relock(rig)


@pytest.mark.processes
def test_doing_nothing_opens_the_door_after_the_pause(visitor, rig):
    kiosk = visitor
    head = _head(rig)
    app = kiosk.app
    screen = scan(kiosk, "valid", "welcome")
    kiosk.clock.advance(app.settings.ui.open_after_s - 2)
    kiosk.pump(0.6)
    assert screen.door == "waiting" and not _unlocked(rig)
    kiosk.clock.advance(3)
    kiosk.wait_for(lambda: _unlocked(rig), 5, "the door did not open after the pause")
    kiosk.wait_for(lambda: screen.door == "open", 5, "the screen did not follow the door")
    checkin = _wait(rig, head, "visitor.checked_in")[-1]
    assert checkin["consent"] is False and checkin["photo"] is None
    assert t(kiosk, "You are checked in. Have a good visit.") in kiosk.texts()
    _relock(rig)


@pytest.mark.processes
def test_countdown_starts_at_the_unlock_and_survives_a_language_switch(visitor, rig):
    kiosk = visitor
    app = kiosk.app
    screen = scan(kiosk, "valid", "welcome")
    kiosk.clock.advance(6)  # reading the welcome screen: the door is not counting yet
    kiosk.pump(0.3)
    kiosk.tap_text(t(kiosk, "No, thank you"))
    kiosk.wait_for(lambda: app.door_remaining > 0, 5, "no countdown")
    unlock_s = 10  # [door] visitor_unlock_s's default, not the badge's 5 s
    assert app.door_remaining >= unlock_s - 1
    kiosk.tap_text("Français")
    kiosk.pump(1.0)
    assert app.tr.lang == "fr" and app.sm.current == "welcome" and screen.door == "open"
    assert app.door_remaining >= unlock_s - 3
    assert any(x.startswith("La porte est ouverte : passez dans les") for x in kiosk.texts())
    assert t(kiosk, "You are checked in. Have a good visit.") in kiosk.texts()
    _relock(rig)
    kiosk.wait_for(lambda: screen.door == "relocked", 5, "the relock was not shown")
    texts = kiosk.texts()
    assert "La porte est de nouveau verrouillée." in texts
    assert not any("Bonne visite" in x for x in texts)  # only said while unlocked
    assert t(kiosk, "Open the door again") in texts


@pytest.mark.processes
def test_open_again_after_the_relock_a_single_use_invitation_without_already_used(visitor, rig):
    kiosk = visitor
    head = _head(rig)
    app = kiosk.app
    chloe = next(v for v in rig.visitors if v.invitation_id == "inv-chloe")
    kiosk.tap_text(t(kiosk, "Scan my QR invitation"))
    kiosk.wait_screen("scan")
    app.demo_camera.show(chloe.token, "paper")
    screen = kiosk.wait_screen("welcome", timeout=20)
    ref = _grant_ref(rig, head)
    app.demo_camera.hide()
    kiosk.tap_text(t(kiosk, "No, thank you"))
    kiosk.wait_for(lambda: screen.door == "open", 5, "the door did not open")
    _relock(rig)
    kiosk.wait_for(lambda: screen.door == "relocked", 5, "the relock was not shown")
    assert t(kiosk, "The door is locked again.") in kiosk.texts()
    assert not any("Have a good visit" in x for x in kiosk.texts())
    kiosk.tap_text(t(kiosk, "Open the door again"))
    kiosk.wait_for(lambda: _unlocked(rig), 5, "the door did not open again")
    kiosk.wait_for(lambda: screen.door == "open", 5, "the screen did not follow")
    assert [e["grant_ref"] for e in _since(rig, head, "door.unlocked")] == [ref, ref]
    decisions = _since(rig, head, "access.decision")
    assert [(d["credential_id"], d["granted"]) for d in decisions] == [("inv-chloe", True)]
    _relock(rig)


@pytest.mark.processes
def test_an_open_request_during_a_fire_alarm_is_refused_and_journaled(visitor, rig):
    kiosk = visitor
    head = _head(rig)
    screen = scan(kiosk, "valid", "welcome")
    ref = _grant_ref(rig, head)
    rig.client().simulate("fire", on=True)
    kiosk.wait_for(lambda: rig.client().status()["door"]["mode"] == "emergency", 5)
    if kiosk.app.sm.current == "welcome":
        screen.no_photo()  # the visitor answers while the alarm sounds
    else:  # an evacuation screen took over: the welcome's open request is still refused
        screen.open_door()
    refused = _wait(rig, head, "access.open_refused")
    assert refused[-1]["grant_ref"] == ref and refused[-1]["reason_code"] == "emergency"
    kiosk.wait_for(lambda: screen.door == "refused", 5, "the refusal was not shown")
    assert not [e for e in _since(rig, head, "door.unlocked") if e.get("grant_ref")]
    rig.client().simulate("fire", on=False)
    kiosk.wait_for(lambda: rig.client().status()["door"]["mode"] == "normal", 5)


@pytest.mark.processes
def test_staff_are_not_sent_to_reception(kiosk):
    kiosk.app.demo_badge("staff")
    screen = kiosk.wait_screen("welcome")
    assert screen.kind == "badge"
    kiosk.wait_for(lambda: screen.door == "open", 5, "no countdown")
    assert not any("reception" in x for x in kiosk.texts())
    assert t(kiosk, "Open the door again") not in [x for x in kiosk.texts() if x]


@pytest.mark.processes
def test_in_free_access_the_welcome_screen_still_times_out(visitor, rig):
    kiosk = visitor
    app = kiosk.app
    guard = rig.client()
    guard.guard_login(GUARD_UID, GUARD_PIN)
    guard.guard_action("free_access", "event")
    kiosk.wait_for(lambda: app.door_remaining == -1, 10, "free access not seen")
    screen = scan(kiosk, "valid", "welcome")
    kiosk.tap_text(t(kiosk, "No, thank you"))
    kiosk.wait_for(lambda: screen.door == "open", 5, "the screen did not follow the door")
    assert t(kiosk, "The door is open.") in kiosk.texts()  # held open: no countdown
    kiosk.clock.advance(app.settings.ui.outcome_timeout_s + 1)
    kiosk.wait_screen("attract", timeout=3)
    guard.guard_action("normal", "event over")
    guard.guard_logout()
