"""Issue #11, the guard console tells the truth: the agent's side, against a real agent.

Each test failed on the code before the fix:

1. a manual check-in runs the scan's rules: an expired, not-yet-valid, revoked,
   wrong-door or wrong-site invitation is refused with its reason code (journaled
   ``visitor.checkin_refused``), unless the guard overrides with a reason, journaled
   on the check-in with who and why;
2. ``GET /v1/guard/expected``: the invitations valid today, without typing, bounded;
3. a wrong PIN tells how many attempts are left, the same way for an unknown badge;
4. a cleared alarm says since when it is cleared, not since when it was raised.

The kiosk's side of the same points is in tests/kiosk/test_kiosk_ui.py (one Kivy window
per process: the UI tests share that module's app).
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import pytest

from edge_agent.client import AgentClient, ApiError
from edge_agent.policy import CachedInvitation, DoorPolicy, judge_invitation
from portier_common.reasons import Reason
from tests.support.kiosk_rig import (
    GUARD_PIN,
    GUARD_UID,
    REFUSED_CHECKINS,
    UNKNOWN_UID,
    AgentRig,
    running_rig,
    short_tmpdir,
)

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def rig():
    with running_rig() as agent:
        yield agent


@pytest.fixture
def guard(rig) -> AgentClient:
    client = rig.client()
    client.guard_login(GUARD_UID, GUARD_PIN)
    return client


def _events(rig: AgentRig, kind: str) -> list[dict[str, Any]]:
    return [e for e in rig.journal() if e["type"] == kind]


# -- 1. manual check-in: the scan's policy, or an override with a reason ------------------


@pytest.mark.parametrize("reason", sorted(REFUSED_CHECKINS))
def test_a_manual_checkin_is_refused_with_the_scans_reason(rig, guard, reason):
    invitation_id = REFUSED_CHECKINS[reason]
    with pytest.raises(ApiError) as refused:
        guard.checkin(invitation_id, consent=False)
    error = refused.value
    assert error.status == (403 if reason in ("wrong_door", "wrong_site") else 409)
    assert (error.code, error.body["reason"]) == ("checkin_refused", reason)
    assert error.body["visitor"]
    journaled = [
        e for e in _events(rig, "visitor.checkin_refused") if e["invitation_id"] == invitation_id
    ]
    assert journaled[-1]["reason_code"] == reason
    assert (journaled[-1]["guard_id"], journaled[-1]["name"]) == ("g1", "Gabrielle Roy")
    assert not [
        e for e in _events(rig, "visitor.checked_in") if e["invitation_id"] == invitation_id
    ]


def test_an_override_needs_a_reason_and_is_journaled_with_who_and_why(rig, guard):
    for blank in ("", "   ", "x" * 201):
        with pytest.raises(ApiError) as bad:
            guard.checkin("inv-bob", consent=False, override_reason=blank)
        assert (bad.value.status, bad.value.code) == (400, "bad_request")
    answer = guard.checkin("inv-bob", consent=False, override_reason="Host confirmed by phone")
    assert answer["checked_in"] is True
    event = [e for e in _events(rig, "visitor.checked_in") if e["invitation_id"] == "inv-bob"][-1]
    assert event["by"] == "guard:g1" and event["visitor"] == "Bob Martin"
    assert event["override"] == {
        "guard_id": "g1",
        "name": "Gabrielle Roy",
        "reason": "Host confirmed by phone",
        "refused_reason": "expired",
    }


def test_a_valid_invitation_checks_in_without_override_and_an_unknown_one_is_404(rig, guard):
    answer = guard.checkin("inv-ada", consent=False, override_reason="not needed")
    assert answer["checked_in"] is True and "override" not in answer
    event = [e for e in _events(rig, "visitor.checked_in") if e["invitation_id"] == "inv-ada"][-1]
    assert "override" not in event and event["visitor"] == "Ada Lovelace"
    with pytest.raises(ApiError) as unknown:
        guard.checkin("inv-nobody", consent=False, override_reason="a reason")
    assert (unknown.value.status, unknown.value.code) == (404, "unknown_invitation")
    with pytest.raises(ApiError) as anonymous:
        rig.client().checkin("inv-bob", consent=False, override_reason="a reason")
    assert anonymous.value.status == 401


def test_the_policy_judges_a_cached_invitation_like_a_token():
    policy = DoorPolicy(site="hq", door="gate-a", zones=("lobby",), max_skew_s=60)

    class Cache:
        def is_revoked(self, kind: str, ident: str) -> bool:
            return ident == "gone"

    now = 1_800_000_000.0

    def judge(**kw: Any) -> str:
        fields = {"invitation_id": "i", "visitor": "V", "doors": ("gate-a",), **kw}
        return judge_invitation(CachedInvitation(**fields), policy, now, Cache()).reason.value  # type: ignore[arg-type]

    assert judge(not_before=now - 10, not_after=now + 10) == "granted"
    assert judge(not_after=now - 61) == "expired"
    assert judge(not_after=now - 30) == "granted"  # the door's clock skew, as for a scan
    assert judge(not_before=now + 61) == "not_yet_valid"
    assert judge(site="branch") == "wrong_site"
    assert judge(doors=("gate-b",)) == "wrong_door"
    assert judge(doors=(), zones=("lobby",)) == "granted"
    assert judge(invitation_id="gone") == "revoked"
    floor = judge_invitation(
        CachedInvitation("i", "V", doors=("gate-a",)), policy, now, Cache(), clock_floor=now + 99
    )
    assert floor.reason is Reason.CLOCK_UNTRUSTED


# -- 2. expected today ----------------------------------------------------------------------


def test_expected_today_lists_todays_invitations_with_their_state(rig, guard):
    guard.checkin("inv-chloe", consent=False)
    answer = guard.expected()
    found = {i["invitation_id"]: i for i in answer["invitations"]}
    assert {"inv-ada", "inv-ada2", "inv-chloe", "inv-rita", "inv-walt"} <= set(found)
    assert "inv-bob" not in found  # expired yesterday
    assert "inv-nina" not in found  # starts the day after tomorrow
    assert answer["truncated"] is False
    ada, ada2 = found["inv-ada"], found["inv-ada2"]
    assert ada["visitor"] == ada2["visitor"] == "Ada Lovelace"
    assert (ada["host"], ada2["host"]) == ("Grace Hopper", "Alan Turing")
    assert ada2["doors"] == ["gate-a"] and ada2["not_before"] < ada2["not_after"]
    assert found["inv-chloe"]["checked_in_at"] is not None
    assert found["inv-walt"]["checked_in_at"] is None
    assert found["inv-rita"]["revoked"] is True and found["inv-ada"]["revoked"] is False
    starts = [i["not_before"] or 0 for i in answer["invitations"]]
    assert starts == sorted(starts)


def test_expected_today_is_bounded_and_for_guards_only(rig, guard):
    one = guard.expected(limit=1)
    assert len(one["invitations"]) == 1 and one["truncated"] is True
    assert len(guard.expected(limit=100_000)["invitations"]) <= 200
    with pytest.raises(ApiError) as anonymous:
        rig.client().expected()
    assert anonymous.value.status == 401
    with pytest.raises(ApiError) as bad:
        guard.request("GET", "/v1/guard/expected?limit=many")
    assert bad.value.status == 400


# -- 3. attempts left, no oracle ------------------------------------------------------------


def test_a_wrong_pin_tells_the_attempts_left_alike_for_any_badge():
    root = short_tmpdir()
    try:
        with AgentRig(root) as rig:
            client = rig.client()
            answers = []
            for uid in (GUARD_UID, UNKNOWN_UID):
                with pytest.raises(ApiError) as wrong:
                    client.guard_login(uid, "0000")
                answers.append(wrong.value)
            for error in answers:
                assert (error.status, error.code) == (401, "not_recognised")
                assert error.body["attempts_left"] == 2  # [guard] max_pin_failures = 3
            assert set(answers[0].body) == set(answers[1].body)
            with pytest.raises(ApiError) as again:
                client.guard_login(GUARD_UID, "1111")
            assert again.value.body["attempts_left"] == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- 4. cleared since --------------------------------------------------------------------


def test_a_cleared_alarm_counts_from_its_clearing(rig):
    client = rig.client()
    client.simulate("tamper", on=True)
    time.sleep(1.5)
    client.simulate("tamper", on=False)
    deadline = time.monotonic() + 10
    while True:
        alarm = next(a for a in client.status()["door"]["alarms"] if a["alarm"] == "tamper")
        if not alarm["active"] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert alarm["active"] is False
    assert alarm["age_s"] >= 1.5
    assert alarm["cleared_s"] is not None and alarm["cleared_s"] < 1.0
