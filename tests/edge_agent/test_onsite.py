"""Who is on site (edge_agent.onsite) through the Agent, on the simulator.

Check-in puts a visitor on the muster list with host, time of entry, door and zones;
the list survives a restart (from its row and the journal, and from the journal alone
when the row is gone); check-out at the kiosk needs the pass id the check-in answered
(journaled as a hash only), a guard's
needs a session and a reason; the agent checks visitors out at the end of their
invitation's validity, only with a trusted clock; memory stays bounded.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.agent import ActionError
from edge_agent.api import action_status
from edge_agent.onsite import STATE_ONSITE
from edge_agent.policy import Credential
from edge_agent.store import Invitation
from portier_common.passes import check_pass_id, new_pass_id, pass_hash
from tests.edge_agent.test_agent import NOW, Rig, base_delta, invite, rigs


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Build agents on the simulator (tests.edge_agent.test_agent's rigs)."""
    with rigs(tmp_path) as build:
        yield build


def _delta_with_ends():
    delta = base_delta()
    extra = (
        Invitation(
            "inv-short",
            "Grace Hopper",
            host="Alan Turing",
            not_before=NOW - 600,
            not_after=NOW + 600,
            doors=("gate-a",),
            data={"zones": ["lobby"]},
        ),
    )
    return dataclasses.replace(delta, invitations=(*delta.invitations, *extra))


def _guard_checkin(rig, ident: str) -> dict:
    return rig.agent.checkin(ident, consent=False, photo=None, token=rig.login())


def names(rig) -> list[str]:
    return [v["visitor"] for v in rig.agent.muster()["visitors"]]


def test_checkin_puts_the_visitor_on_the_muster_list(make_rig):
    rig = make_rig()
    assert rig.agent.present(Credential.qr(invite()))["granted"]
    rig.clock.advance(5)
    answer = rig.agent.checkin("inv-multi", consent=False, photo=None)
    muster = rig.agent.muster()
    assert muster["fire"] is False and muster["count"] == 1 and muster["dropped"] == 0
    (entry,) = muster["visitors"]
    assert entry["visitor"] == "Ada Lovelace"
    assert entry["host"] == "Charles Babbage"
    assert entry["entered_at"] == NOW + 5
    assert entry["door"] == rig.config.door.id
    event = rig.store.journal.get(answer["seq"])
    assert answer["event_id"] == event.id
    assert event.payload["host"] == "Charles Babbage" and event.payload["door"] == "gate-a"


def test_the_list_survives_a_restart_and_is_rebuilt_from_the_journal(make_rig, tmp_path: Path):
    state = tmp_path / "restart"
    rig = make_rig(state=state, delta=_delta_with_ends())
    _guard_checkin(rig, "inv-bob")
    _guard_checkin(rig, "inv-short")
    _guard_checkin(rig, "inv-multi")
    rig.agent.guard_checkout(rig.login(), "inv-multi", "left with her host")
    before = rig.agent.muster()["visitors"]
    assert [v["visitor"] for v in before] == ["Bob Builder", "Grace Hopper"]
    rig.stack.close()

    again = make_rig(state=state)
    assert again.agent.muster()["visitors"] == before
    # Without the list's row (a version before it, a lost row): the journal alone.
    with again.store._db.transaction("drop the row") as conn:
        conn.execute("DELETE FROM meta WHERE key = ?", (STATE_ONSITE,))
    assert again.agent.onsite.restore() == 2
    assert again.agent.muster()["visitors"] == before


def test_kiosk_checkout_by_the_pass_id_the_checkin_answered(make_rig):
    rig = make_rig()
    answer = _guard_checkin(rig, "inv-bob")
    pass_id = answer["pass_id"]
    check_pass_id(pass_id)
    with pytest.raises(ActionError) as unknown:
        rig.agent.checkout_by_pass(new_pass_id())
    assert (unknown.value.code, action_status(unknown.value)) == ("unknown_pass", 404)
    with pytest.raises(ActionError) as malformed:
        rig.agent.checkout_by_pass("PV1:" + pass_id)
    assert malformed.value.code == "bad_request"
    done = rig.agent.checkout_by_pass(pass_id)
    assert done["checked_out"] and done["visitor"] == "Bob Builder" and names(rig) == []
    event = rig.store.journal.get(done["seq"])
    assert event.type == "visitor.checked_out"
    assert event.payload["by"] == "visitor" and event.payload["how"] == "kiosk"
    assert event.payload["pass_hash"] == pass_hash(pass_id)
    with pytest.raises(ActionError) as again:
        rig.agent.checkout_by_pass(pass_id)
    assert (again.value.code, action_status(again.value)) == ("not_on_site", 409)


def test_the_pass_id_is_never_journaled_nor_published(make_rig):
    """The journal is synced to the central and every event is on the kiosk's live
    stream (/v1/events): only the pass's hash may be there."""
    rig = make_rig()
    published: list[dict] = []
    with rig.agent.bus.subscribe_callback(published.append):
        answer = _guard_checkin(rig, "inv-bob")
        token = rig.login()
        reissued = rig.agent.reissue_pass(token, "inv-bob")
        rig.agent.checkout_by_pass(reissued["pass_id"])
    journaled = [e.payload for e in rig.store.journal.events(from_seq=1)]
    for pass_id in (answer["pass_id"], reissued["pass_id"]):
        assert pass_id not in json.dumps(journaled)
        assert pass_id not in json.dumps(published)
    assert pass_hash(reissued["pass_id"]) in json.dumps(journaled)


def test_checkout_by_pass_after_a_restart_and_a_reprint(make_rig, tmp_path: Path):
    state = tmp_path / "restart"
    rig = make_rig(state=state, delta=base_delta())
    first = _guard_checkin(rig, "inv-bob")["pass_id"]
    gone = _guard_checkin(rig, "inv-multi")["pass_id"]
    rig.agent.checkout_by_pass(gone)
    reprinted = rig.agent.reissue_pass(rig.login(), "inv-bob")["pass_id"]
    rig.stack.close()

    again = make_rig(state=state)
    for row in (True, False):
        if not row:  # the journal alone, without the list's row
            with again.store._db.transaction("drop the row") as conn:
                conn.execute("DELETE FROM meta WHERE key = ?", (STATE_ONSITE,))
            assert again.agent.onsite.restore() == 1
        with pytest.raises(ActionError) as replaced:
            again.agent.checkout_by_pass(first)  # the reprint replaced it
        assert replaced.value.code == "unknown_pass"
        with pytest.raises(ActionError) as left:
            again.agent.checkout_by_pass(gone)
        assert left.value.code == "not_on_site"
    assert again.agent.onsite.pass_belongs("inv-bob", reprinted)
    again.agent.checkout_by_pass(reprinted)
    assert names(again) == []


def test_a_reprint_needs_a_guard_and_a_visitor_on_site(make_rig):
    rig = make_rig()
    with pytest.raises(ActionError) as no_session:
        rig.agent.reissue_pass("stale-token", "inv-bob")
    assert action_status(no_session.value) == 401
    with pytest.raises(ActionError) as absent:
        rig.agent.reissue_pass(rig.login(), "inv-bob")
    assert absent.value.code == "not_on_site"


def test_guard_checkout_needs_a_session_and_a_reason(make_rig):
    rig = make_rig()
    _guard_checkin(rig, "inv-bob")
    with pytest.raises(ActionError) as no_session:
        rig.agent.guard_checkout("stale-token", "inv-bob", "left")
    assert action_status(no_session.value) == 401
    token = rig.login()
    for reason in (None, "", "   ", "x" * 201, 7):
        with pytest.raises(ActionError) as no_reason:
            rig.agent.guard_checkout(token, "inv-bob", reason)
        assert no_reason.value.code == "bad_request"
    assert names(rig) == ["Bob Builder"]
    assert rig.events("visitor.checked_out") == []
    rig.agent.guard_checkout(token, "inv-bob", " badge handed back ")
    (event,) = rig.events("visitor.checked_out")
    assert event.payload["how"] == "guard" and event.payload["by"] == "guard:g-7"
    assert event.payload["reason"] == "badge handed back" and event.payload["guard_id"] == "g-7"
    assert names(rig) == []


def test_auto_checkout_at_the_end_of_validity(make_rig):
    rig = make_rig(delta=_delta_with_ends())
    _guard_checkin(rig, "inv-short")
    _guard_checkin(rig, "inv-bob")  # no end of validity: stays
    assert rig.agent.onsite.sweep() == 0
    rig.clock.advance(601)
    assert rig.agent.onsite.sweep() == 1
    (event,) = rig.events("visitor.checked_out")
    assert event.payload["how"] == "expired" and event.payload["reason"] == "expired"
    assert event.payload["by"] == "agent" and event.payload["visitor"] == "Grace Hopper"
    assert names(rig) == ["Bob Builder"]
    assert rig.agent.onsite.sweep() == 0  # once


def test_auto_checkout_of_a_signed_invitation_the_cache_does_not_hold(make_rig):
    """A QR invitation verified by its signature alone (not in the door's cache): the
    check-in keeps its own end of validity, so the visitor is checked out when it ends."""
    rig = make_rig()
    token = invite(invitation_id="inv-offline", visitor="Olga Offline", expires=NOW + 600)
    assert rig.store.cache.invitation("inv-offline") is None
    assert rig.agent.present(Credential.qr(token))["granted"]
    rig.agent.checkin("inv-offline", consent=False, photo=None)
    (entry,) = rig.agent.muster()["visitors"]
    assert entry["not_after"] == NOW + 600
    rig.clock.advance(601)
    assert rig.agent.onsite.sweep() == 1
    assert names(rig) == []


def test_no_auto_checkout_with_a_clock_not_trusted(make_rig):
    # A floor (the central's time seen before) far ahead: the clock is behind it.
    rig = make_rig(delta=_delta_with_ends())
    _guard_checkin(rig, "inv-short")
    rig.agent.onsite._clock_trusted = lambda now: False
    rig.clock.advance(601)
    assert rig.agent.onsite.sweep() == 0
    assert names(rig) == ["Grace Hopper"]


def test_the_list_is_bounded(make_rig):
    rig = make_rig()
    rig.agent.onsite._max = 2
    for ident in ("inv-bob", "inv-multi", "inv-once"):
        _guard_checkin(rig, ident)
    muster = rig.agent.muster()
    assert muster["count"] == 2 and muster["dropped"] == 1
    assert "inv-bob" not in rig.agent.onsite


def test_muster_says_when_the_fire_input_is_active(make_rig):
    rig = make_rig()
    _guard_checkin(rig, "inv-bob")
    rig.sim.fire_alarm(True)
    muster = rig.agent.muster()
    assert muster["fire"] is True and names(rig) == ["Bob Builder"]


def test_a_checkin_trimmed_from_the_journal_stays_on_the_list(make_rig):
    """The list's row keeps a visitor whose check-in left the journal (trimmed once
    acknowledged): a contractor on site for a week is still on the muster list."""
    rig = make_rig()
    _guard_checkin(rig, "inv-bob")
    with rig.store._db.transaction("trim the check-in") as conn:
        conn.execute("DELETE FROM events WHERE type = 'visitor.checked_in'")
    assert rig.agent.onsite.restore() == 1
    assert names(rig) == ["Bob Builder"]
