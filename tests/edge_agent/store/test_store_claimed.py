"""Journal.append_claimed: a replay claim and the decision it justifies, in one commit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge_agent.store import InvalidEvent, Store, StoreSettings

GRANT = [("access.decision", {"granted": True, "credential_id": "inv-1"})]
REFUSE = [("access.decision", {"granted": False, "reason": "replayed"})]


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(StoreSettings(path=tmp_path / "s.db")) as s:
        yield s


def test_first_claim_grants_second_refuses(store):
    claim = store.replay.invitation_claim("inv-1", 2_000_000_000)
    events, claimed = store.journal.append_claimed(claim, GRANT, REFUSE)
    assert claimed and events[0].payload["granted"] is True
    again = store.replay.invitation_claim("inv-1", 2_000_000_000)
    events, claimed = store.journal.append_claimed(again, GRANT, REFUSE)
    assert not claimed and events[0].payload == {"granted": False, "reason": "replayed"}
    assert store.replay.is_used("inv-1")
    assert store.journal.verify_chain().ok


def test_counter_claims_must_increase(store):
    results = []
    for counter in (5, 5, 4, 6):
        claim = store.replay.counter_claim("04A1B2C3D4E5F6", counter)
        results.append(store.journal.append_claimed(claim, GRANT, REFUSE)[1])
    assert results == [True, False, False, True]
    assert store.replay.last_counter("04A1B2C3D4E5F6") == 6


def test_concurrent_claims_exactly_one_grant(store):
    outcomes: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        claim = store.replay.invitation_claim("inv-race", 2_000_000_000)
        _, claimed = store.journal.append_claimed(claim, GRANT, REFUSE)
        with lock:
            outcomes.append(claimed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(outcomes) == [False] * 7 + [True]
    granted = [e for e in store.journal.events(1, 100) if e.payload.get("granted")]
    assert len(granted) == 1
    assert store.journal.verify_chain().ok


def test_failed_write_leaves_the_claim_unused(store):
    def broken_claim(conn):
        conn.execute(
            "INSERT INTO used_invitations (id, used_at_ms, expires_at) VALUES ('inv-x', 0, 9)"
        )
        raise RuntimeError("power cut between claim and decision")

    with pytest.raises(RuntimeError):
        store.journal.append_claimed(broken_claim, GRANT, REFUSE)
    # rolled back together: the invitation is not burnt, and nothing was journaled
    assert not store.replay.is_used("inv-x")
    assert store.journal.head().seq == 0
    claim = store.replay.invitation_claim("inv-x", 9)
    assert store.journal.append_claimed(claim, GRANT, REFUSE)[1]


def test_claimed_and_plain_appends_share_one_chain(store):
    store.journal.append("agent.started", {})
    store.journal.append_claimed(store.replay.invitation_claim("a", 9), GRANT, REFUSE)
    store.journal.append_many([("door.opened", {}), ("door.closed", {})])
    assert [e.seq for e in store.journal.events(1, 10)] == [1, 2, 3, 4]
    assert store.journal.verify_chain().ok


def test_both_outcomes_need_events(store):
    with pytest.raises(InvalidEvent):
        store.journal.append_claimed(store.replay.invitation_claim("a", 9), GRANT, [])
