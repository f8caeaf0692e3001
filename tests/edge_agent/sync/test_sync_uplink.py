"""The uplink in process against the reference central (a real server process).

Each test enrolls a fresh device on one central and drives :class:`Uplink` over a
real store: acks recorded durably, 413 halving, Retry-After, full jitter, dead
letters with an alarm, gaps filled from the journal, 401/403 pauses, and a crash
after the central committed. The uplink's ``wait`` is replaced by a recorder, so
the tests check the delays it asked for instead of sleeping them.
"""

from __future__ import annotations

import email.utils
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.admin import CentralAdmin
from central.testing import CentralProcess, ChainBuilder, enroll_device
from edge_agent.store import Store, StoreSettings
from edge_agent.sync import (
    ALARM_EVENT,
    Alarms,
    Backoff,
    CentralClient,
    CentralRefused,
    CentralUnreachable,
    Paused,
    Stopped,
    Uplink,
)
from edge_agent.sync.client import parse_retry_after

pytestmark = pytest.mark.processes

_devices = iter(range(1, 10_000))


class Device:
    """An enrolled device: its id, its credential and an uplink over its own store."""

    def __init__(self, central: CentralProcess, where: Path) -> None:
        self.device_id = f"up-{next(_devices)}"
        enrolled, session = enroll_device(central.url, door="gate-a", device_id=self.device_id)
        session.close()
        self.token = enrolled["device_token"]
        self.client = CentralClient(central.url, credential=self.token, timeout_s=2.0)
        self.path = where / "agent.db"
        self.store = Store.open(StoreSettings(path=self.path))
        self.waits: list[float] = []
        self.stop_after: int | None = None

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.stop_after is not None and len(self.waits) >= self.stop_after

    def uplink(self, batch_size: int = 100, **kwargs: Any) -> Uplink:
        self.alarms = Alarms(self.store.journal.append)
        return Uplink(
            self.store.journal,
            self.client,
            self.alarms,
            batch_size=batch_size,
            backoff=Backoff(0.01, 0.05, rng=random.Random(7).uniform),
            wait=self.wait,
            **kwargs,
        )

    def append(self, count: int) -> None:
        self.store.journal.append_many(
            [("access.decision", {"n": n, "granted": True}) for n in range(count)]
        )

    def reopen(self) -> None:
        self.store.close()
        self.store = Store.open(StoreSettings(path=self.path))

    def close(self) -> None:
        self.client.close()
        self.store.close()


@pytest.fixture
def device(central: CentralProcess, tmp_path: Path) -> Iterator[Device]:
    dev = Device(central, tmp_path)
    yield dev
    dev.close()


def summary(admin: CentralAdmin, device_id: str) -> dict[str, Any]:
    return next(d for d in admin.received(verify=True)["devices"] if d["device_id"] == device_id)


def assert_central_has_journal(admin: CentralAdmin, device: Device) -> dict[str, Any]:
    journal = device.store.journal.events(limit=100_000)
    stored = admin.all_device_events(device.device_id)
    assert [(e["seq"], e["id"], e["hash"]) for e in stored] == [
        (e.seq, e.id, e.hash.hex()) for e in journal
    ]
    result = summary(admin, device.device_id)
    assert result["unique_events"] == len(journal)
    assert result["chain_ok"] and result["chain_verified"]
    return result


def test_drain_uploads_every_event_once_and_records_the_acks(admin, device) -> None:
    device.append(250)
    uplink = device.uplink(batch_size=100)
    assert uplink.drain() == 250
    counts = device.store.journal.counts()
    assert (counts.acked, counts.backlog, counts.dead) == (250, 0, 0)
    assert uplink.stats.requests == 3 and uplink.stats.duplicates == 0
    result = assert_central_has_journal(admin, device)
    assert result["duplicates_seen"] == 0
    assert device.waits == []  # no failure, no wait


def test_413_halves_the_batch_and_resends_the_same_events(admin, device) -> None:
    device.append(2500)  # the central takes at most 1000 per batch
    uplink = device.uplink(batch_size=2500)
    assert uplink.drain() == 2500
    # The 413 body says max_events=1000: the uplink goes straight to it.
    assert uplink.stats.halvings == 1 and uplink.batch_size == 1000
    assert uplink.stats.requests == 4  # 2500 refused, then 1000 + 1000 + 500
    result = assert_central_has_journal(admin, device)
    assert result["duplicates_seen"] == 0 and result["rejected"] == 0


def test_max_batch_bytes_splits_before_sending(admin, device) -> None:
    device.store.journal.append_many([("note", {"text": "x" * 2000}) for _ in range(40)])
    uplink = device.uplink(batch_size=40, max_batch_bytes=20_000)
    assert uplink.drain() == 40
    assert uplink.stats.requests >= 5 and uplink.stats.halvings == 0
    assert_central_has_journal(admin, device)


def test_retry_after_is_honoured_on_429(admin, device) -> None:
    device.append(5)
    admin.set_fault("throttle", endpoint="events", retry_after_s=3, count=1)
    uplink = device.uplink()
    assert uplink.drain() == 5
    assert len(device.waits) == 1 and device.waits[0] >= 3
    assert_central_has_journal(admin, device)


def test_server_errors_back_off_with_full_jitter_and_resend_the_same_batch(admin, device):
    device.append(30)
    admin.set_fault("error", endpoint="events", status=503, count=4)
    uplink = device.uplink(batch_size=30)
    assert uplink.drain() == 30
    assert len(device.waits) == 4
    caps = [min(0.05, 0.01 * 2**n) for n in range(4)]
    assert all(0 <= wait <= cap for wait, cap in zip(device.waits, caps, strict=True))
    result = assert_central_has_journal(admin, device)
    assert result["duplicates_seen"] == 0  # 503s stored nothing


def test_answer_lost_after_commit_is_acked_as_duplicate(admin, device) -> None:
    device.append(20)
    admin.set_fault("lost_after_commit", endpoint="events", count=1)
    uplink = device.uplink(batch_size=20)
    assert uplink.drain() == 20
    assert uplink.stats.duplicates == 20 and uplink.stats.acked == 0
    assert summary(admin, device.device_id)["duplicates_seen"] == 20
    assert_central_has_journal(admin, device)


def test_crash_after_the_central_committed_resends_the_same_ids(admin, device) -> None:
    device.append(20)
    admin.set_fault("lost_after_commit", endpoint="events", count=1)
    device.stop_after = 1  # "dies" in its first backoff, the batch still in flight
    with pytest.raises(Stopped):
        device.uplink(batch_size=20).drain()
    assert device.store.journal.counts().in_flight == 20
    device.reopen()  # what a restart does: in-flight events are READY again
    assert device.store.journal.counts().ready == 20
    device.stop_after = None
    assert device.uplink(batch_size=20).drain() == 20
    result = assert_central_has_journal(admin, device)
    assert result["duplicates_seen"] == 20


def test_rejected_events_are_dead_lettered_with_an_alarm(admin, device, central) -> None:
    # Another journal already took seq 1..3 for this device id: ours are conflicts.
    session = CentralClient(central.url, credential=device.token)
    session.upload(ChainBuilder().events(3))
    device.append(5)
    uplink = device.uplink()
    uplink.drain()
    dead = device.store.journal.dead_letters()
    assert [e.seq for e in dead] == [1, 2, 3]
    assert all(e.dead_reason.startswith("seq_conflict") for e in dead)
    assert uplink.stats.dead == 3 and device.alarms.is_active("dead_letter")
    alarms = [e for e in device.store.journal.events(limit=100) if e.type == ALARM_EVENT]
    assert len(alarms) == 1
    assert alarms[0].payload["alarm"] == "dead_letter"
    assert [item["seq"] for item in alarms[0].payload["events"]] == [1, 2, 3]
    counts = device.store.journal.counts()
    assert (counts.dead, counts.backlog) == (3, 0)  # never dropped, never resent
    # The alarm event itself went up too, after the two good events.
    assert summary(admin, device.device_id)["unique_events"] == 3 + 3
    session.close()


def test_a_gap_at_the_central_is_filled_from_the_journal(admin, device) -> None:
    device.append(10)
    # As if a central restored from an old backup had lost events 1..5 acked before.
    device.store.journal.mark_acked([e.id for e in device.store.journal.next_batch(5)])
    uplink = device.uplink()
    uplink.drain()
    assert uplink.stats.gap_repairs == 1
    assert device.store.journal.counts().acked == 10
    result = assert_central_has_journal(admin, device)
    assert result["gaps_answered"] >= 5


def test_a_gap_the_journal_cannot_fill_pauses_with_an_alarm(admin, device) -> None:
    device.append(10)
    device.store.journal.mark_acked([e.id for e in device.store.journal.next_batch(5)])
    assert device.store.journal.trim(keep_acked=0) == 5  # events 1..5 are gone locally
    uplink = device.uplink()
    with pytest.raises(Paused) as paused:
        uplink.drain()
    assert paused.value.reason == "gap_unrecoverable"
    assert device.alarms.is_active("gap_unrecoverable")
    counts = device.store.journal.counts()
    assert counts.ready == 5 + 1 and counts.in_flight == 0  # kept, plus the alarm event


def test_unknown_credential_pauses_until_re_enrollment(admin, device, central) -> None:
    device.append(3)
    device.client.set_credential("pd1_not-a-credential")
    with pytest.raises(Paused) as paused:
        device.uplink().drain()
    assert paused.value.reason == "enrollment_needed" and paused.value.delay_s is None
    assert device.alarms.is_active("enrollment_needed")
    assert device.store.journal.counts().in_flight == 0  # back to READY
    device.client.set_credential(device.token)
    uplink = device.uplink()
    uplink.drain()
    assert device.store.journal.counts().backlog == 0


def test_disabled_device_pauses_for_an_hour(admin, device) -> None:
    device.append(3)
    admin.disable_device(device.device_id)
    with pytest.raises(Paused) as paused:
        device.uplink().drain()
    assert paused.value.reason == "device_disabled" and paused.value.delay_s == 3600
    assert device.alarms.is_active("device_disabled")
    assert device.store.journal.counts().ready == 3 + 1  # kept, plus the alarm


def test_unreachable_central_backs_off_until_stopped(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = Store.open(StoreSettings(path=tmp_path / "agent.db"))
    waits: list[float] = []
    uplink = Uplink(
        store.journal,
        CentralClient(f"http://127.0.0.1:{port}", credential="x", timeout_s=1.0),
        Alarms(store.journal.append),
        batch_size=10,
        backoff=Backoff(1.0, 8.0, rng=lambda low, high: high),
        wait=lambda s: waits.append(s) or len(waits) >= 5,
    )
    store.journal.append("door.opened", {})
    with pytest.raises(Stopped):
        uplink.drain()
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]  # exponential, capped (jitter at its top)
    assert store.journal.counts().in_flight == 1
    assert uplink.release() == 1 and store.journal.counts().ready == 1
    store.close()


def test_backoff_full_jitter_and_retry_after_floor() -> None:
    rng = random.Random(1)
    backoff = Backoff(0.5, 10.0, rng=rng.uniform)
    delays = [backoff.next_delay() for _ in range(12)]
    ceilings = [min(10.0, 0.5 * 2**n) for n in range(12)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == 12  # jittered, not a fixed ladder
    assert backoff.next_delay(retry_after_s=30) >= 30
    backoff.reset()
    assert backoff.attempt == 0 and backoff.next_delay() <= 0.5
    with pytest.raises(ValueError, match="backoff"):
        Backoff(2.0, 1.0)


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("7") == 7.0
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 <= parse_retry_after(later) <= 121
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("999999") == 3600.0  # capped


def test_client_classifies_answers(central, admin, device) -> None:
    with pytest.raises(CentralRefused) as refused:
        device.client.deltas("not-a-cursor", 10)
    assert refused.value.status == 400 and refused.value.code == "bad_request"
    assert not refused.value.transient
    with pytest.raises(CentralRefused) as refused:
        CentralClient(central.url + "/nowhere", timeout_s=0.5).request("GET", "/v1/deltas")
    assert refused.value.status == 404 and not refused.value.transient
    with pytest.raises(CentralRefused) as refused:
        CentralClient(central.url, timeout_s=0.5).deltas(None, 10)  # no credential
    assert refused.value.status == 401 and refused.value.code == "unauthorized"
    admin.put_badge(uid="04aabbccddee01", holder="Temp", doors=["gate-a"])
    with pytest.raises(CentralUnreachable):  # a 2xx without a JSON object: outcome unknown
        CentralClient(central.url, timeout_s=0.5).request(
            "DELETE",
            "/admin/badges/04aabbccddee01",
            auth=False,
            headers={"Authorization": f"Bearer {central.token}"},
        )
    assert device.client.heartbeat({"sent_at_ms": 1})["sent_at_ms"] == 1


class PoisonedClient:
    """The real client, except that any batch holding ``poison`` gets a 400 (a batch the
    central cannot parse as a whole, e.g. after a bug in one event's encoding)."""

    def __init__(self, client: CentralClient, poison: str) -> None:
        self.client = client
        self.poison = poison
        self.sizes: list[int] = []

    def upload(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        self.sizes.append(len(events))
        if any(e["id"] == self.poison for e in events):
            raise CentralRefused(400, "bad_request", "body is not JSON")
        return self.client.upload(events)


def test_400_halves_down_to_the_one_event_and_dead_letters_it(admin, device) -> None:
    device.append(16)
    poison = device.store.journal.get(11)
    client = PoisonedClient(device.client, poison.id)
    uplink = device.uplink(batch_size=16)
    uplink.client = client  # type: ignore[assignment]
    with pytest.raises(Paused) as paused:
        uplink.drain()
    assert client.sizes[:5] == [16, 8, 8, 4, 2]  # 1-8 go up, then 9-16 is split down to 11
    dead = device.store.journal.dead_letters()
    assert [(e.seq, e.dead_reason.split(":")[0]) for e in dead] == [(11, "bad_request")]
    # The central stores in order: 12.. wait behind the dead letter, kept, with an alarm.
    assert paused.value.reason == "gap_unrecoverable"
    assert device.alarms.is_active("dead_letter") and device.alarms.is_active("gap_unrecoverable")
    assert [e["seq"] for e in admin.all_device_events(device.device_id)] == list(range(1, 11))
    assert device.store.journal.counts().ready >= 5
    # An operator fixes the cause and requeues the dead letter: everything goes up once.
    assert device.store.journal.requeue_dead() == 1
    uplink = device.uplink(batch_size=16)
    uplink.drain()
    assert device.store.journal.counts().backlog == 0
    assert_central_has_journal(admin, device)
