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
process of :mod:`test_kiosk_rig`; the kiosk half reuses ``test_kiosk_ui``'s fixtures
(one Xvfb, one real agent, one app).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_agent import invite, rigs

from edge_agent.agent import ActionError
from edge_agent.policy import Credential

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
    assert (err.value.code, err.value.status) == (mode, 409)
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
    assert (err.value.code, err.value.status) == ("grant_expired", 410)
    assert not rig.relay and len(_payloads(rig, "access.grant_unused")) == 1
    with pytest.raises(ActionError) as err:
        rig.agent.open_grant("x" * 32)
    assert (err.value.code, err.value.status) == ("grant_unknown", 404)


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
