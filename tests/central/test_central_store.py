"""The reference central's rules, on its store directly (no HTTP): enrollment, exactly-once
event storage, gaps, chain checks, deltas by cursor, key rotation, shared single use.

Each test that takes ``store`` (or ``central_db``) runs on both backends, SQLite and a real
PostgreSQL (``central_db`` in tests/conftest.py); ``-k sqlite`` or ``-k postgresql`` picks one."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.errors import (
    BadRequest,
    CursorUnknown,
    DeviceDisabled,
    NotFound,
    TokenExpired,
    TokenInvalid,
    TokenScope,
    TokenUsed,
    Unauthorized,
)
from central.settings import CentralSettings, DatabaseUrl, parse_db_url
from central.store import CentralStore
from central.testing import ChainBuilder
from portier_common.encoding import event_hash
from portier_common.reasons import Reason
from portier_common.tokens import Keyring, TrustedKey, verify


class Clock:
    """A clock the test moves by hand (Unix ms)."""

    def __init__(self) -> None:
        self.ms = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


NewDb = Callable[[], "str | None"]


@pytest.fixture
def store(tmp_path: Path, clock: Clock, central_db: NewDb) -> CentralStore:
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db())
    with CentralStore(settings, clock=clock) as opened:
        yield opened


def enroll(store: CentralStore, device_id: str = "dev-a", door: str = "lobby", **extra) -> dict:
    token = store.create_enroll_token(door=door, site=extra.pop("site", None))["enroll_token"]
    return store.enroll({"enroll_token": token, "device_id": device_id, **extra})


def statuses(result: dict) -> list[str]:
    return [ack["status"] for ack in result["acks"]]


def stored_seqs(store: CentralStore, device_id: str) -> list[int]:
    page = store.device_events(device_id, 0, 10_000)
    return [event["seq"] for event in page["events"] if event["status"] == "stored"]


# -- enrollment ------------------------------------------------------------------


def test_enrollment_token_is_one_time(store: CentralStore) -> None:
    token = store.create_enroll_token(door="lobby")["enroll_token"]
    first = store.enroll({"enroll_token": token, "device_id": "dev-a"})
    assert first["device_id"] == "dev-a"
    assert first["site"] == "hq" and first["door"] == "lobby" and first["next_seq"] == 1
    assert store.authenticate(first["device_token"])["device_id"] == "dev-a"
    with pytest.raises(TokenUsed):
        store.enroll({"enroll_token": token, "device_id": "dev-b"})
    with pytest.raises(TokenUsed):
        store.enroll({"enroll_token": token})


def test_same_device_may_retry_a_lost_enrollment_within_the_window(
    store: CentralStore, clock: Clock
) -> None:
    token = store.create_enroll_token(door="lobby")["enroll_token"]
    secret = {"retry_secret": "r" * 32}  # issue 10: the retry proves it is the same device
    lost = store.enroll({"enroll_token": token, "device_id": "dev-a", **secret})
    with pytest.raises(TokenUsed):  # the device id alone is public: not enough
        store.enroll({"enroll_token": token, "device_id": "dev-a"})
    again = store.enroll({"enroll_token": token, "device_id": "dev-a", **secret})
    assert again["device_token"] != lost["device_token"]
    assert store.authenticate(again["device_token"])["device_id"] == "dev-a"
    with pytest.raises(Unauthorized):
        store.authenticate(lost["device_token"])
    clock.advance(store.settings.enroll_retry_window_s + 1)
    with pytest.raises(TokenUsed):
        store.enroll({"enroll_token": token, "device_id": "dev-a", **secret})


def test_enrollment_token_errors(store: CentralStore, clock: Clock) -> None:
    with pytest.raises(TokenInvalid):
        store.enroll({"enroll_token": "pe1_nope"})
    token = store.create_enroll_token(door="lobby", ttl_s=60)["enroll_token"]
    with pytest.raises(TokenScope):
        store.enroll({"enroll_token": token, "door": "garage"})
    with pytest.raises(TokenScope):
        store.enroll({"enroll_token": token, "site": "elsewhere"})
    clock.advance(61)
    with pytest.raises(TokenExpired):
        store.enroll({"enroll_token": token})
    with pytest.raises(BadRequest, match="device_id"):
        store.enroll({"enroll_token": token, "device_id": "no spaces"})
    with pytest.raises(BadRequest, match="enroll_token"):
        store.enroll({})


def test_unknown_and_disabled_credentials(store: CentralStore) -> None:
    with pytest.raises(Unauthorized):
        store.authenticate(None)
    with pytest.raises(Unauthorized):
        store.authenticate("pd1_unknown")
    device = enroll(store)
    store.disable_device("dev-a")
    with pytest.raises(DeviceDisabled):
        store.authenticate(device["device_token"])
    with pytest.raises(NotFound):
        store.disable_device("dev-zz")


def test_re_enrollment_keeps_the_history(store: CentralStore) -> None:
    first = enroll(store)
    chain = ChainBuilder()
    store.upload_events("dev-a", chain.events(3))
    token = store.create_enroll_token(door="garage")["enroll_token"]
    # An enrolled device id enrolls again with its current credential (issue 10).
    again = store.enroll(
        {"enroll_token": token, "device_id": "dev-a"}, credential=first["device_token"]
    )
    assert again["next_seq"] == 4 and again["door"] == "garage"
    assert statuses(store.upload_events("dev-a", chain.events(1))) == ["accepted"]
    assert store.received()["devices"][0]["chain_ok"]


def test_journal_head_anchors_a_new_device(store: CentralStore) -> None:
    chain = ChainBuilder()
    chain.events(10)  # journaled before this central knew the device
    head = {"next_seq": chain.next_seq, "prev_hash": chain.prev_hash.hex()}
    assert enroll(store, journal_head=head)["next_seq"] == 11
    assert statuses(store.upload_events("dev-a", chain.events(2))) == ["accepted"] * 2
    summary = store.received(verify=True)["devices"][0]
    assert summary["anchor_seq"] == 11
    assert summary["chain_ok"] and summary["chain_verified"]


# -- events ----------------------------------------------------------------------


def test_idempotent_upload_stores_once(store: CentralStore) -> None:
    enroll(store)
    batch = ChainBuilder().events(20)
    assert statuses(store.upload_events("dev-a", batch)) == ["accepted"] * 20
    again = store.upload_events("dev-a", batch)
    assert statuses(again) == ["duplicate"] * 20
    assert again["next_seq"] == 21
    assert stored_seqs(store, "dev-a") == list(range(1, 21))
    summary = store.received()["devices"][0]
    assert summary["unique_events"] == 20
    assert summary["duplicates_seen"] == 20


def test_acks_follow_request_order_and_batch_is_sorted_by_seq(store: CentralStore) -> None:
    enroll(store)
    batch = ChainBuilder().events(5)
    shuffled = [batch[3], batch[0], batch[4], batch[2], batch[1]]
    result = store.upload_events("dev-a", shuffled)
    assert [ack["seq"] for ack in result["acks"]] == [4, 1, 5, 3, 2]
    assert statuses(result) == ["accepted"] * 5
    assert stored_seqs(store, "dev-a") == [1, 2, 3, 4, 5]


def test_gap_is_retry_later_until_filled(store: CentralStore) -> None:
    enroll(store)
    batch = ChainBuilder().events(6)
    first = store.upload_events("dev-a", batch[:2] + batch[3:])
    assert statuses(first) == ["accepted", "accepted", "retry_later", "retry_later", "retry_later"]
    assert {ack.get("reason") for ack in first["acks"][2:]} == {"gap"}
    assert first["next_seq"] == 3
    assert stored_seqs(store, "dev-a") == [1, 2]
    # The device resends from next_seq.
    second = store.upload_events("dev-a", batch[2:])
    assert statuses(second) == ["accepted"] * 4
    assert stored_seqs(store, "dev-a") == list(range(1, 7))
    summary = store.received(verify=True)["devices"][0]
    assert summary["gaps_answered"] == 3
    assert summary["chain_ok"] and summary["chain_verified"]


def test_altered_event_breaks_the_chain_where_it_was_altered(store: CentralStore) -> None:
    enroll(store)
    batch = ChainBuilder().events(6)
    batch[3] = {**batch[3], "payload_json": '{"granted":false,"n":4}'}  # hash left as it was
    result = store.upload_events("dev-a", batch)
    assert statuses(result) == ["accepted"] * 6  # stored as evidence
    assert result["chain_ok"] is False
    summary = store.received(verify=True)["devices"][0]
    assert summary["chain_broken_at"] == 4
    assert "hash does not match" in summary["chain_break_reason"]
    assert summary["chain_verified"] is False
    assert store.received()["totals"]["chain_ok"] is False
    links = [event["link_ok"] for event in store.device_events("dev-a")["events"]]
    assert links == [True, True, True, False, True, True]


def test_prev_hash_mismatch_is_a_break(store: CentralStore) -> None:
    enroll(store)
    chain = ChainBuilder()
    store.upload_events("dev-a", chain.events(2))
    forked = ChainBuilder(next_seq=3, prev_hash=bytes(range(32)))
    result = store.upload_events("dev-a", forked.events(1))
    assert statuses(result) == ["accepted"]
    summary = store.received()["devices"][0]
    assert summary["chain_broken_at"] == 3
    assert "prev_hash" in summary["chain_break_reason"]


def test_id_and_seq_conflicts_are_rejected(store: CentralStore) -> None:
    enroll(store)
    batch = ChainBuilder().events(2)
    store.upload_events("dev-a", batch)
    same_id = {**batch[0], "hash": "00" * 32}
    other_id = {**batch[1], "id": str(uuid.uuid4())}
    result = store.upload_events("dev-a", [same_id, other_id])
    assert statuses(result) == ["rejected", "rejected"]
    assert [ack["reason"] for ack in result["acks"]] == ["id_conflict", "seq_conflict"]
    assert stored_seqs(store, "dev-a") == [1, 2]
    assert store.received()["devices"][0]["rejected"] == 2


def test_invalid_event_takes_its_place_and_is_dead_lettered(store: CentralStore) -> None:
    enroll(store)
    batch = ChainBuilder().events(3)
    bad = {**batch[1], "payload_json": '{"temperature":21.5}'}  # floats: no canonical form
    result = store.upload_events("dev-a", [batch[0], bad, batch[2]])
    assert statuses(result) == ["accepted", "rejected", "accepted"]
    assert result["acks"][1]["reason"] == "invalid"
    assert "float" in result["acks"][1]["detail"]
    assert result["next_seq"] == 4
    # Resent, it is rejected again rather than stored.
    assert statuses(store.upload_events("dev-a", [bad])) == ["rejected"]
    summary = store.received()["devices"][0]
    assert summary["unique_events"] == 2
    assert summary["chain_broken_at"] == 2
    assert "unverifiable" in summary["chain_break_reason"]


def test_events_without_id_or_seq_cannot_be_placed(store: CentralStore) -> None:
    enroll(store)
    event = ChainBuilder().event()
    result = store.upload_events(
        "dev-a",
        ["not an object", {**event, "seq": "1"}, {**event, "id": "nope"}, {**event, "seq": True}],
    )
    assert statuses(result) == ["rejected"] * 4
    assert result["next_seq"] == 1
    assert [ack["id"] for ack in result["acks"]] == [None, event["id"], "nope", event["id"]]
    assert statuses(store.upload_events("dev-a", [event])) == ["accepted"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "Access Decision"),
        ("type", 7),
        ("wall_ms", "now"),
        ("mono_ns", 2**63),
        ("payload_json", '["not","an","object"]'),
        ("payload_json", {"door": "lobby"}),
        ("payload_json", '{"b":1,"a":2}'),
        ("payload_json", '{"a": 1}'),
        ("payload_json", "{not json"),
        ("prev_hash", "AB" * 32),
        ("hash", "short"),
    ],
)
def test_each_malformed_field_is_rejected_as_invalid(
    store: CentralStore, field: str, value: object
) -> None:
    enroll(store)
    event = {**ChainBuilder().event(), field: value}
    result = store.upload_events("dev-a", [event])
    assert statuses(result) == ["rejected"]
    assert result["acks"][0]["reason"] == "invalid"
    assert field in result["acks"][0]["detail"]


def test_stored_chain_walk_catches_later_tampering(store: CentralStore) -> None:
    enroll(store)
    store.upload_events("dev-a", ChainBuilder().events(5))
    assert store.verify_chain("dev-a") == (True, None)
    with store._db.transaction() as conn:  # someone with write access to the database
        conn.execute("UPDATE events SET payload = ? WHERE seq = 3", ('{"granted":false}',))
    assert store.verify_chain("dev-a") == (False, 3)
    summary = store.received(verify=True)["devices"][0]
    assert summary["chain_ok"] is True  # as verified on arrival
    assert summary["chain_verified"] is False


def test_hash_is_the_journal_function(store: CentralStore) -> None:
    """The central checks with portier_common.encoding.event_hash, nothing else."""
    enroll(store)
    event = ChainBuilder().event("door.forced_open", {"door": "lobby", "ms": 12})
    expected = event_hash(
        bytes(32),
        1,
        uuid.UUID(event["id"]).bytes,
        event["wall_ms"],
        event["mono_ns"],
        "door.forced_open",
        '{"door":"lobby","ms":12}',
    )
    assert event["hash"] == expected.hex()
    assert statuses(store.upload_events("dev-a", [event])) == ["accepted"]
    assert store.received()["devices"][0]["chain_ok"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    size=st.integers(1, 25),
    plan=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 30), st.booleans(), st.randoms()),
        max_size=12,
    ),
)
def test_any_delivery_order_stores_each_event_once_in_order(
    store: CentralStore, size: int, plan: list
) -> None:
    """Random slices, reordered, repeated: never a duplicate, never out of order, and a final
    in-order resend from next_seq completes the chain (what a device does). Each example is
    a new device of the one store (a new database per example is slow on PostgreSQL)."""
    device = f"dev-{uuid.uuid4().hex[:12]}"
    enroll(store, device)
    chain = ChainBuilder().events(size)
    for start, length, reverse, rnd in plan:
        batch = chain[min(start, size - 1) : start + length + 1]
        batch = batch[::-1] if reverse else batch
        rnd.shuffle(batch)
        batch = batch + batch[: len(batch) // 2]  # duplicates within the batch
        result = store.upload_events(device, batch)
        seqs = stored_seqs(store, device)
        assert seqs == list(range(1, result["next_seq"]))
        for ack in result["acks"]:
            if ack["status"] == "accepted":
                assert ack["seq"] < result["next_seq"]
            if ack["status"] == "retry_later":
                assert ack["seq"] >= result["next_seq"]
    next_seq = store.heartbeat(device, {"sent_at_ms": 1}, store.now_ms())["next_seq"]
    store.upload_events(device, chain[next_seq - 1 :])
    page = store.device_events(device, 0, 10_000)["events"]
    assert [event["id"] for event in page] == [event["id"] for event in chain]
    assert store.verify_chain(device) == (True, None)
    (summary,) = (d for d in store.received()["devices"] if d["device_id"] == device)
    assert summary["unique_events"] == size and summary["chain_ok"]


# -- shared single use and counters ---------------------------------------------


def test_single_use_is_shared_with_every_door_of_the_site(store: CentralStore) -> None:
    enroll(store, "door-a", door="lobby")
    enroll(store, "door-b", door="garage")
    cursor_b = store.deltas("hq", None)["cursor"]
    invitation = store.create_invitation({"visitor": "Ada", "doors": ["lobby"], "single_use": True})
    inv_id = invitation["invitation"]["id"]
    used = ChainBuilder().event(
        "invitation.used",
        {"invitation_id": inv_id, "door": "lobby", "expires": invitation["invitation"]["expires"]},
    )
    assert statuses(store.upload_events("door-a", [used])) == ["accepted"]
    page = store.deltas("hq", cursor_b)
    assert [item["id"] for item in page["used_invitations"]] == [inv_id]
    entry = page["used_invitations"][0]
    assert entry["door"] == "lobby" and entry["device_id"] == "door-a"
    assert entry["expires_at"] == invitation["invitation"]["expires"]
    # A second use elsewhere changes nothing: the first use is what doors refuse by.
    again = ChainBuilder().event(
        "invitation.used", {"invitation_id": inv_id, "door": "garage", "expires": 1}
    )
    head = page["cursor"]
    assert statuses(store.upload_events("door-b", [again])) == ["accepted"]
    assert store.deltas("hq", head)["used_invitations"] == []


def test_malformed_invitation_used_is_dead_lettered_but_chain_holds(store: CentralStore) -> None:
    enroll(store)
    chain = ChainBuilder()
    bad = chain.event("invitation.used", {"door": "lobby"})
    result = store.upload_events("dev-a", [bad, *chain.events(1)])
    assert statuses(result) == ["rejected", "accepted"]
    assert "invitation_id" in result["acks"][0]["detail"]
    summary = store.received(verify=True)["devices"][0]
    assert summary["chain_ok"] and summary["chain_verified"]


def test_badge_counters_only_go_up(store: CentralStore) -> None:
    enroll(store)
    store.put_badge({"uid": "04a1b2c3d4e5f6", "holder": "Sam", "doors": ["lobby"]})
    chain = ChainBuilder()
    start = store.deltas("hq", None)["cursor"]
    for counter in (5, 3, 9):
        claim = {"uid": "04a1b2c3d4e5f6", "counter": counter, "door": "lobby", "sun_url": ""}
        event = chain.event("badge.counter", claim)
        store.upload_events("dev-a", [event])
    page = store.deltas("hq", start)
    assert [(c["uid"], c["counter"]) for c in page["badge_counters"]] == [("04a1b2c3d4e5f6", 9)]
    bad = chain.event("badge.counter", {"uid": "04a1", "counter": 1})
    assert statuses(store.upload_events("dev-a", [bad])) == ["rejected"]


# -- deltas ----------------------------------------------------------------------


def test_deltas_page_by_cursor_and_collapse_to_latest_state(store: CentralStore) -> None:
    first = store.deltas("hq", None)
    assert first["reset"] is True and first["more"] is False
    assert len(first["signing_keys"]) == 1
    cursor = first["cursor"]
    store.put_badge({"uid": "04a1b2c3", "holder": "Bob", "doors": ["lobby"], "kind": "uid"})
    store.revoke_badge("04:a1:b2:c3")
    for i in range(5):
        store.put_badge({"uid": f"0102030{i}", "holder": f"H{i}", "zones": ["ground"]})
    # Four changes: the badge, the badge disabled, its revocation, the next badge.
    page = store.deltas("hq", cursor, limit=4)
    assert page["more"] is True and page["reset"] is False and page["from_cursor"] == cursor
    # The badge changed twice in this page: it appears once, in its latest state.
    assert [(b["uid"], b["enabled"]) for b in page["badges"]] == [
        ("04a1b2c3", False),
        ("01020300", True),
    ]
    assert page["revocations"] == [
        {
            "kind": "badge",
            "id": "04a1b2c3",
            "revoked_at": page["revocations"][0]["revoked_at"],
            "expires_at": None,
        }
    ]
    rest = store.deltas("hq", page["cursor"], limit=3)
    assert [b["uid"] for b in rest["badges"]] == ["01020301", "01020302", "01020303"]
    last = store.deltas("hq", rest["cursor"], limit=3)
    assert last["more"] is False and [b["uid"] for b in last["badges"]] == ["01020304"]
    assert last["cursor"] == store.head_cursor()
    empty = store.deltas("hq", last["cursor"])
    assert empty["cursor"] == last["cursor"] and not empty["badges"] and not empty["more"]


def test_deltas_are_scoped_to_the_site(store: CentralStore) -> None:
    cursor = store.deltas("hq", None)["cursor"]
    store.put_badge({"uid": "0a0b0c0d", "holder": "Far", "doors": ["gate"], "site": "annex"})
    store.put_badge({"uid": "01010101", "holder": "Near", "doors": ["lobby"]})
    store.put_schedule("gate", {"site": "annex", "rules": []})
    page = store.deltas("hq", cursor)
    assert [b["holder"] for b in page["badges"]] == ["Near"]
    assert page["schedules"] == []
    assert page["cursor"] == store.head_cursor()
    assert [b["holder"] for b in store.deltas("annex", cursor)["badges"]] == ["Far"]
    # Moving the badge to hq: annex doors are told to forget it.
    annex_cursor = store.head_cursor()
    store.put_badge({"uid": "0a0b0c0d", "holder": "Far", "doors": ["lobby"]})
    assert store.deltas("annex", annex_cursor)["removed"]["badges"] == ["0a0b0c0d"]


def test_removed_items_and_lifted_revocations(store: CentralStore) -> None:
    store.put_badge({"uid": "01020304", "holder": "Bob", "doors": ["lobby"]})
    store.revoke_badge("01020304")
    store.put_schedule("lobby", {"rules": []})
    cursor = store.head_cursor()
    store.put_badge({"uid": "01020304", "holder": "Bob", "doors": ["lobby"]})  # found again
    store.delete_schedule("lobby")
    page = store.deltas("hq", cursor)
    assert page["removed"]["revocations"] == [{"kind": "badge", "id": "01020304"}]
    assert page["removed"]["schedules"] == ["lobby"]
    assert page["badges"][0]["enabled"] is True
    store.delete_badge("01020304")
    assert store.deltas("hq", page["cursor"])["removed"]["badges"] == ["01020304"]
    with pytest.raises(NotFound):
        store.delete_badge("01020304")
    with pytest.raises(NotFound):
        store.delete_schedule("lobby")


def test_cursor_errors(store: CentralStore) -> None:
    with pytest.raises(CursorUnknown):
        store.deltas("hq", str(int(store.head_cursor()) + 1))
    for bad in ("abc", "-1", "1.5"):
        with pytest.raises(BadRequest, match="cursor"):
            store.deltas("hq", bad)
    for limit in (0, 1001, True):
        with pytest.raises(BadRequest, match="limit"):
            store.deltas("hq", None, limit)


def test_schedules_and_door_settings_go_out_as_deltas(store: CentralStore) -> None:
    cursor = store.head_cursor()
    rule = {"days": ["mon", "tue"], "start": "08:00", "end": "18:00"}
    schedule = store.put_schedule("lobby", {"timezone": "Europe/Paris", "rules": [rule]})
    zone = store.put_schedule("ground", {"rules": []})
    assert zone == {"id": "ground", "site": "hq", "timezone": "UTC", "rules": [], "holidays": []}
    store.put_door_settings("lobby", {"settings": {"mode": "normal", "unlock_s": 3}})
    settings_v2 = store.put_door_settings("lobby", {"settings": {"mode": "lockdown"}})
    assert settings_v2["version"] == 2
    page = store.deltas("hq", cursor)
    assert page["schedules"] == [schedule, zone]
    assert page["door_settings"] == [settings_v2]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rules": [{"days": ["xyz"], "start": "08:00", "end": "09:00"}]}, "days"),
        ({"rules": [{"days": ["mon"], "start": "8h", "end": "09:00"}]}, "start"),
        ({"rules": [{"days": ["mon"], "start": "10:00", "end": "09:00"}]}, "end"),
        ({"timezone": "Mars/Olympus", "rules": []}, "timezone"),
        ({}, "rules"),
        ({"rules": [], "door": "lobby"}, "unknown"),
    ],
)
def test_bad_schedules_are_refused(store: CentralStore, body: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        store.put_schedule("s1", body)


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"mode": "party"}, "mode"),
        ({"unlock_s": 0}, "unlock_s"),
        ({"held_open_s": "long"}, "held_open_s"),
        ({"accept": ["iris"]}, "accept"),
        ({"max_offline_staleness_s": -1}, "max_offline_staleness_s"),
    ],
)
def test_bad_door_settings_are_refused(store: CentralStore, settings_: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        store.put_door_settings("lobby", {"settings": settings_})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"uid": "xyz", "holder": "A", "doors": ["d"]}, "uid"),
        ({"uid": "0102", "holder": "A", "doors": ["d"]}, "uid"),
        ({"uid": "01020304", "holder": "", "doors": ["d"]}, "holder"),
        ({"uid": "01020304", "holder": "A"}, "door"),
        ({"uid": "01020304", "holder": "A", "doors": ["d"], "kind": "mifare"}, "kind"),
        ({"uid": "01020304", "holder": "A", "doors": ["d", "d"]}, "repeat"),
        (
            {"uid": "01020304", "holder": "A", "doors": ["d"], "not_before": 9, "not_after": 1},
            "not_after",
        ),
    ],
)
def test_bad_badges_are_refused(store: CentralStore, body: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        store.put_badge(body)


def test_uid_normalisation(store: CentralStore) -> None:
    body = {"holder": "Ana", "doors": ["lobby"]}
    assert store.put_badge({**body, "uid": "04:A1:b2:c3:d4:e5:F6"})["uid"] == "04a1b2c3d4e5f6"
    assert store.put_badge({**body, "uid": "04-A1 B2-C3"})["uid"] == "04a1b2c3"
    with pytest.raises(BadRequest):
        store.put_badge({**body, "uid": "04A1B"})


# -- invitations and keys -------------------------------------------------------


def keyring_from_deltas(store: CentralStore) -> Keyring:
    keys: dict[str, dict] = {}
    cursor = None
    while True:
        page = store.deltas("hq", cursor)
        for key in page["signing_keys"]:
            keys[key["kid"]] = key
        cursor = page["cursor"]
        if not page["more"]:
            return Keyring(TrustedKey.from_dict(key) for key in keys.values())


def test_minted_invitation_verifies_with_the_keys_from_deltas(store: CentralStore) -> None:
    minted = store.create_invitation(
        {"visitor": "Ada Lovelace", "host": "Charles", "doors": ["lobby"], "single_use": True}
    )
    now = time.time()
    result = verify(minted["token"], keyring_from_deltas(store), now=now, site="hq", door="lobby")
    assert result.ok, result
    assert result.invitation_id == minted["invitation"]["id"]
    assert result.claims.visitor == "Ada Lovelace" and result.claims.host == "Charles"
    assert result.single_use is True
    assert result.expires - result.claims.not_before == store.settings.invitation_default_s
    wrong = verify(minted["token"], keyring_from_deltas(store), now=now, site="hq", door="garage")
    assert wrong.reason == Reason.WRONG_DOOR


def test_rotation_keeps_old_invitations_valid_until_they_expire(
    store: CentralStore, clock: Clock
) -> None:
    old = store.create_invitation({"visitor": "Ada", "doors": ["lobby"]})
    rotated = store.rotate_key()
    assert rotated["previous"]["kid"] == old["invitation"]["kid"]
    assert rotated["previous"]["not_after"] == old["invitation"]["expires"]
    new = store.create_invitation({"visitor": "Bob", "doors": ["lobby"]})
    assert new["invitation"]["kid"] == rotated["active"]["kid"]
    keyring = keyring_from_deltas(store)
    now = time.time()
    for token in (old["token"], new["token"]):
        assert verify(token, keyring, now=now, site="hq", door="lobby").ok


def test_retire_now_ends_the_old_key(store: CentralStore, clock: Clock) -> None:
    old = store.create_invitation({"visitor": "Ada", "doors": ["lobby"]})
    rotated = store.rotate_key(retire_now=True)
    assert rotated["previous"]["not_after"] == clock() // 1000
    keyring = keyring_from_deltas(store)
    later = clock() / 1000 + 3600
    assert verify(old["token"], keyring, now=later, site="hq", door="lobby").reason == (
        Reason.UNKNOWN_KEY
    )
    assert store.list_keys()["active_kid"] == rotated["active"]["kid"]


def test_revoked_invitation_is_published_once(store: CentralStore) -> None:
    minted = store.create_invitation({"visitor": "Ada", "doors": ["lobby"]})
    cursor = store.head_cursor()
    first = store.revoke_invitation(minted["invitation"]["id"])
    assert first == store.revoke_invitation(minted["invitation"]["id"])
    page = store.deltas("hq", cursor)
    assert page["revocations"] == [first]
    assert first["expires_at"] == minted["invitation"]["expires"]
    with pytest.raises(NotFound):
        store.revoke_invitation("nope")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"visitor": "Ada"}, "doors and zones"),
        ({"visitor": "", "doors": ["lobby"]}, "visitor"),
        ({"visitor": "Ada", "doors": ["lobby"], "not_before": 100, "expires": 50}, "expires"),
        ({"visitor": "Ada", "doors": ["lobby"], "single_use": "yes"}, "single_use"),
        ({"visitor": "Ada", "doors": ["lobby"], "kid": "mine"}, "unknown"),
    ],
)
def test_bad_invitations_are_refused(store: CentralStore, body: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        store.create_invitation(body)


# -- persistence and heartbeat ---------------------------------------------------


def test_state_survives_reopening(tmp_path: Path, central_db: NewDb) -> None:
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db())
    chain = ChainBuilder()
    with CentralStore(settings) as store:
        device = enroll(store)
        store.upload_events("dev-a", chain.events(4))
        kid = store.list_keys()["active_kid"]
        cursor = store.head_cursor()
    with CentralStore(settings) as store:
        assert store.authenticate(device["device_token"])["device_id"] == "dev-a"
        assert store.list_keys()["active_kid"] == kid
        assert store.head_cursor() == cursor
        result = store.upload_events("dev-a", chain.events(1))
        assert result["next_seq"] == 6 and statuses(result) == ["accepted"]
        assert store.verify_chain("dev-a") == (True, None)


def test_heartbeat_is_recorded_and_answers_the_clock(store: CentralStore, clock: Clock) -> None:
    enroll(store)
    body = {
        "sent_at_ms": clock() - 5000,
        "backlog": {"pending": 3, "dead_letter": 0, "oldest_wall_ms": None},
        "disk": {"free_bytes": 10**9},
        "alarms": [{"code": "clock_drift"}],
    }
    answer = store.heartbeat("dev-a", body, clock())
    assert answer["sent_at_ms"] == body["sent_at_ms"]
    assert answer["received_at_ms"] == clock() == answer["server_time_ms"]
    assert answer["deltas_cursor"] == store.head_cursor()
    summary = store.received()["devices"][0]
    assert summary["last_heartbeat"] == json.loads(json.dumps(body))
    for bad in ({}, {"sent_at_ms": "now"}, {"sent_at_ms": 1, "alarms": {}}):
        with pytest.raises(BadRequest):
            store.heartbeat("dev-a", bad, clock())


def test_settings_name_the_bad_field(tmp_path: Path) -> None:
    for field, value in (("port", 70000), ("site", "a b"), ("max_batch_events", 0), ("db", "x")):
        with pytest.raises(ValueError, match=field):
            CentralSettings(data_dir=tmp_path, **{field: value})


def test_db_url_picks_the_backend(tmp_path: Path) -> None:
    default = CentralSettings(data_dir=tmp_path)
    assert default.database == DatabaseUrl("sqlite", path=tmp_path / "central.db")
    sqlite = CentralSettings(data_dir=tmp_path, db="sqlite:///var/lib/portier/c.db")
    assert sqlite.db_path == Path("/var/lib/portier/c.db")
    pg = parse_db_url("postgresql://portier:s3cret@db.example:5433/central?sslmode=require")
    assert pg.dialect == "postgresql" and pg.url is not None and pg.path is None
    assert pg.redacted() == "postgresql://portier:***@db.example:5433/central?sslmode=require"
    assert "s3cret" not in repr(pg) + repr(CentralSettings(data_dir=tmp_path, db=pg.url))
    assert sqlite.database.redacted() == "sqlite:///var/lib/portier/c.db"
    assert parse_db_url("postgresql:///?host=/run/pg&dbname=central").dialect == "postgresql"
    for bad in ("", "sqlite://host/x.db", "sqlite:///", "postgresql://host", "http://x/y"):
        with pytest.raises(ValueError, match=r"^db: "):
            parse_db_url(bad)


def test_real_journal_events_are_accepted_as_sent(store: CentralStore, tmp_path: Path) -> None:
    """Interop with the agent's own journal: ``Event.to_wire()`` is the contract's Event."""
    from edge_agent.store import Store, StoreSettings

    enroll(store)
    invitation = store.create_invitation({"visitor": "Ada", "doors": ["lobby"], "single_use": True})
    inv_id = invitation["invitation"]["id"]
    settings = StoreSettings(path=tmp_path / "agent.sqlite", reserve_bytes=0)
    with Store.open(settings) as journal_store:
        journal = journal_store.journal
        journal.append("access.decision", {"door": "lobby", "granted": True, "name": "Zoë"})
        journal.append("door.forced_open", {"door": "lobby"})
        journal.append("invitation.used", {"invitation_id": inv_id, "door": "lobby", "expires": 9})
        wire = [event.to_wire() for event in journal.next_batch(10)]
        result = store.upload_events("dev-a", wire)
        assert [ack["status"] for ack in result["acks"]] == ["accepted"] * 3
        assert journal.mark_acked(ack["id"] for ack in result["acks"]) == 3
    summary = store.received(verify=True)["devices"][0]
    assert summary["chain_ok"] and summary["chain_verified"]
    assert store.deltas("hq", None)["used_invitations"][0]["id"] == inv_id
