"""Journal: durable appends, hash chain, tamper detection, sync state."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from edge_agent.store import (
    GENESIS_HASH,
    InvalidEvent,
    Store,
    StoreClosed,
    StoreLocked,
    StoreReadOnly,
    StoreSettings,
    SyncStatus,
    UUIDv7Generator,
    canonical_json,
    event_hash,
)
from edge_agent.store.highwater import HighWater


class FakeClock:
    """Wall time that tests set by hand (it may go backwards)."""

    def __init__(self, wall_ms: int = 1_750_000_000_000) -> None:
        self.now = wall_ms
        self.mono = 5_000_000_000

    def wall_ms(self) -> int:
        return self.now

    def mono_ns(self) -> int:
        self.mono += 1_000
        return self.mono


def make_settings(path: Path, **kw: object) -> StoreSettings:
    kw.setdefault("reserve_bytes", 0)
    kw.setdefault("warn_free_bytes", 0)
    kw.setdefault("critical_free_bytes", 0)
    return StoreSettings(path=path, **kw)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agent.sqlite"


@pytest.fixture
def store(db_path: Path):
    with Store.open(make_settings(db_path)) as s:
        yield s


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection for tampering with the file behind the store's back."""
    return sqlite3.connect(path, isolation_level=None)


# -- appending and durability ---------------------------------------------------------


def test_append_returns_event_with_all_fields(store: Store) -> None:
    event = store.journal.append("access.decision", {"door": "front", "granted": True})
    assert event.seq == 1
    assert uuid.UUID(event.id).version == 7
    assert event.type == "access.decision"
    assert event.payload == {"door": "front", "granted": True}
    assert event.payload_json == '{"door":"front","granted":true}'
    assert event.prev_hash == GENESIS_HASH
    assert len(event.hash) == 32
    assert event.status is SyncStatus.READY
    assert event.wall_ms > 1_600_000_000_000
    assert event.mono_ns > 0


def test_events_survive_reopen(db_path: Path) -> None:
    with Store.open(make_settings(db_path)) as store:
        written = [store.journal.append("door.opened", {"i": i}) for i in range(5)]
        written += store.journal.append_many([("door.closed", {"i": i}) for i in range(5)])
    with Store.open(make_settings(db_path)) as store:
        stored = store.journal.events()
        assert stored == written
        assert store.journal.verify_chain().ok
        nxt = store.journal.append("door.opened", {})
        assert nxt.seq == 11
        assert nxt.prev_hash == written[-1].hash


@pytest.mark.processes
def test_reopen_read_only_from_another_process_sees_committed_events(db_path: Path) -> None:
    with Store.open(make_settings(db_path)) as store:
        store.journal.append_many([("door.opened", {"i": i}) for i in range(3)])
        # While the writer still has it open, a second process reads it.
        code = (
            "import sys; from edge_agent.store import Store; "
            "s = Store.open(sys.argv[1], read_only=True); r = s.journal.verify_chain(); "
            "print(r.ok, r.checked, s.journal.backlog_count())"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(db_path)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert out == ["True", "3", "3"]


def test_page_size_applies_to_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "small-pages.sqlite"
    with Store.open(make_settings(path, page_size=1024)) as store:
        store.journal.append("a.b", {})
    assert raw(path).execute("PRAGMA page_size").fetchone()[0] == 1024
    # An existing file keeps its page size.
    with Store.open(make_settings(path, page_size=8192)) as store:
        assert store.journal.append("a.b", {}).seq == 2
    assert raw(path).execute("PRAGMA page_size").fetchone()[0] == 1024


@pytest.mark.processes
def test_second_writer_is_refused(db_path: Path) -> None:
    with Store.open(make_settings(db_path)):
        code = (
            "import sys; from edge_agent.store import Store, StoreLocked\n"
            "try:\n    Store.open(sys.argv[1])\nexcept StoreLocked:\n    print('locked')"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(db_path)], capture_output=True, text=True, check=True
        ).stdout
        assert out.strip() == "locked"
        with pytest.raises(StoreLocked):
            Store.open(make_settings(db_path))


def test_read_only_store_refuses_writes(db_path: Path) -> None:
    Store.open(make_settings(db_path)).close()
    with Store.open(make_settings(db_path), read_only=True) as store:
        with pytest.raises(StoreReadOnly):
            store.journal.append("door.opened", {})
        with pytest.raises(StoreReadOnly):
            store.replay.use_once("inv", 10)


def test_closed_store_refuses_use(db_path: Path) -> None:
    store = Store.open(make_settings(db_path))
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreClosed):
        store.journal.append("door.opened", {})
    with pytest.raises(StoreClosed):
        store.journal.head()


def test_sequence_is_gapless_and_ids_increase_when_the_clock_goes_back(db_path: Path) -> None:
    clock = FakeClock()
    with Store.open(make_settings(db_path), clock=clock) as store:
        first = store.journal.append("a.b", {})
        clock.now -= 3_600_000  # NTP steps the clock back an hour
        second = store.journal.append("a.b", {})
    # ...and across a restart with the clock still behind.
    clock.now -= 1000
    with Store.open(make_settings(db_path), clock=clock) as store:
        third = store.journal.append("a.b", {})
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    assert uuid.UUID(first.id).bytes < uuid.UUID(second.id).bytes < uuid.UUID(third.id).bytes
    assert second.wall_ms == first.wall_ms - 3_600_000  # the event keeps the real clock


def test_append_many_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(InvalidEvent, match="item 2"):
        store.journal.append_many([("a.b", {}), ("a.b", {}), ("a.b", {"x": 1.5})])
    assert store.journal.head().seq == 0
    assert store.journal.append_many([]) == []


@pytest.mark.parametrize(
    ("event_type", "payload", "match"),
    [
        ("Access", {}, "type"),
        ("access..x", {}, "type"),
        ("a" * 65, {}, "type"),
        ("a.b", [], "JSON object"),
        ("a.b", {"x": 0.5}, "floats"),
        ("a.b", {"x": float("nan")}, "floats"),
        ("a.b", {"x": 2**53}, "outside"),
        ("a.b", {"x": {1: 2}}, "not a string"),
        ("a.b", {"x": b"bytes"}, "bytes"),
        ("a.b", {"x": "\ud800"}, "Unicode"),
        ("a.b", {"x": "y" * 70_000}, "limit"),
    ],
)
def test_invalid_events_are_refused(store: Store, event_type, payload, match) -> None:
    with pytest.raises(InvalidEvent, match=match):
        store.journal.append(event_type, payload)
    assert store.journal.head().seq == 0


def test_canonical_json_sorts_keys_and_keeps_unicode() -> None:
    text = canonical_json({"b": [1, True, None], "a": {"é": "ü\n\x01"}})
    assert text == '{"a":{"é":"ü\\n\\u0001"},"b":[1,true,null]}'
    assert canonical_json({"b": 1, "a": 2}) == canonical_json({"a": 2, "b": 1})


def test_hash_matches_the_documented_encoding(store: Store) -> None:
    """Recompute the hash the way docs/journal.md tells the central to."""
    first = store.journal.append("access.decision", {"door": "front", "n": 1})
    second = store.journal.append("door.opened", {"door": "front"})
    for event, prev in ((first, bytes(32)), (second, first.hash)):
        type_bytes = event.type.encode()
        payload_bytes = event.payload_json.encode()
        preimage = (
            b"PORTIER-JOURNAL-V1\x00"
            + prev
            + struct.pack(">Q", event.seq)
            + uuid.UUID(event.id).bytes
            + struct.pack(">q", event.wall_ms)
            + struct.pack(">q", event.mono_ns)
            + struct.pack(">I", len(type_bytes))
            + type_bytes
            + struct.pack(">I", len(payload_bytes))
            + payload_bytes
        )
        assert hashlib.sha256(preimage).digest() == event.hash
        assert event.prev_hash == prev
    wire = second.to_wire()
    assert json.loads(json.dumps(wire))["prev_hash"] == first.hash.hex()


def test_event_hash_changes_with_every_field() -> None:
    base = (bytes(32), 1, bytes(16), 10, 20, "a.b", "{}")
    reference = event_hash(*base)
    variants = [
        (b"\x01" * 32, 1, bytes(16), 10, 20, "a.b", "{}"),
        (bytes(32), 2, bytes(16), 10, 20, "a.b", "{}"),
        (bytes(32), 1, b"\x01" * 16, 10, 20, "a.b", "{}"),
        (bytes(32), 1, bytes(16), 11, 20, "a.b", "{}"),
        (bytes(32), 1, bytes(16), 10, 21, "a.b", "{}"),
        (bytes(32), 1, bytes(16), 10, 20, "a.c", "{}"),
        (bytes(32), 1, bytes(16), 10, 20, "a.b", '{"a":1}'),
        # Length prefixes: moving bytes between type and payload changes it.
        (bytes(32), 1, bytes(16), 10, 20, "a.b{", "}"),
    ]
    assert len({event_hash(*v) for v in variants} | {reference}) == len(variants) + 1


def test_uuid7_generator_is_strictly_increasing_within_a_millisecond() -> None:
    gen = UUIDv7Generator()
    ids = [gen.next_bytes(1_000) for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    parsed = uuid.UUID(bytes=ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert int.from_bytes(ids[0][:6], "big") == 1_000
    later = gen.next_bytes(2_000)
    assert int.from_bytes(later[:6], "big") == 2_000 and later > ids[-1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_uuid7_random_bits_are_not_shared_with_a_forked_child() -> None:
    """Random bits are drawn from os.urandom 64 ids at a time: a forked child must
    draw its own, or parent and child would make ids with the same random bits."""
    gen = UUIDv7Generator()
    gen.next_bytes(1_000)  # the pool is filled
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, gen.next_bytes(2_000))
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read_end, 16)
    os.close(read_end)
    os.close(write_end)
    parent = gen.next_bytes(2_000)
    assert child[:6] == parent[:6] and child[6:] != parent[6:]


def test_high_water_mark_follows_every_commit(db_path: Path) -> None:
    """The mark (written through a shared mapping after the first write) reads back
    as the newest committed event while the store is open, and after close."""
    with Store.open(make_settings(db_path)) as store:
        for i in range(3):
            event = store.journal.append("a.b", {"i": i})
            mark = HighWater.read(db_path.with_name(db_path.name + ".hwm"))
            assert mark is not None
            assert (mark.seq, mark.hash, mark.id) == (
                event.seq,
                event.hash,
                uuid.UUID(event.id).bytes,
            )
        last = store.journal.append_many([("a.b", {"j": j}) for j in range(4)])[-1]
    mark = HighWater.read(db_path.with_name(db_path.name + ".hwm"))
    assert mark is not None and (mark.seq, mark.hash) == (last.seq, last.hash)


def test_a_torn_high_water_record_leaves_the_mark_before_it(tmp_path: Path) -> None:
    """kill -9 can land in the middle of copying the mark: only the slot being written
    tears, and the start reads the other slot, one commit older, so detection stays on
    (with one slot, a torn record turned the check off for that start)."""
    path = tmp_path / "j.sqlite.hwm"
    mark = HighWater(path)
    mark.open()
    try:
        for seq in (5, 6, 7):
            mark.record(seq, bytes([seq]) * 32, bytes([seq]) * 16)
    finally:
        mark.close()
    read = HighWater.read(path)
    assert read is not None and read.seq == 7
    data = bytearray(path.read_bytes())
    size = len(data) // 2
    newest = 0 if data[8:16] == (7).to_bytes(8, "big") else size
    torn = newest + 20  # a half-copied record: the CRC no longer matches
    data[torn : torn + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    read = HighWater.read(path)
    assert read is not None and read.seq == 6 and read.hash == bytes([6]) * 32
    # Both torn: nothing to check against, said in the log (no crash).
    other = size - newest
    data[other + 20 : other + 28] = b"\xff" * 8
    path.write_bytes(bytes(data))
    assert HighWater.read(path) is None
    # A file of one slot (written before the second came) still reads.
    one = HighWater(tmp_path / "one.hwm")
    one.open()
    one.record(9, b"\x09" * 32, b"\x09" * 16)
    one.close()
    single = (tmp_path / "one.hwm").read_bytes()[:size]
    path.write_bytes(single)
    read = HighWater.read(path)
    assert read is not None and read.seq == 9


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_threads_get_a_gapless_chain(store: Store) -> None:
    per_thread, threads = 60, 12
    results: list[list] = [[] for _ in range(threads)]

    def worker(k: int) -> None:
        for i in range(per_thread):
            if i % 10 == 0:
                results[k].extend(
                    store.journal.append_many(
                        [("t.many", {"k": k, "i": i, "j": j}) for j in range(3)]
                    )
                )
            else:
                results[k].append(store.journal.append("t.one", {"k": k, "i": i}))

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    returned = sorted((e for r in results for e in r), key=lambda e: e.seq)
    assert [e.seq for e in returned] == list(range(1, len(returned) + 1))
    assert store.journal.events(limit=10_000) == returned
    result = store.journal.verify_chain()
    assert result.ok and result.checked == len(returned)
    # Each thread saw its own events in the order it appended them.
    for k in range(threads):
        seqs = [e.seq for e in results[k]]
        assert seqs == sorted(seqs)


def test_appends_waiting_for_a_commit_share_the_next_one(store: Store) -> None:
    """Group commit: callers queued behind a commit are written together."""
    commits: list[int] = []
    store.journal._on_commit = commits.append  # events per commit
    threads = [
        threading.Thread(target=store.journal.append, args=("t.shared", {"i": i}))
        for i in range(10)
    ]
    with store._db.write_lock:  # as if a commit were in progress
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        # Nine queue; the tenth leads and waits for the write lock (it queues its own
        # event first once it has it).
        while len(store.journal._pending) < 9 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert commits == [10]
    assert store.journal.verify_chain().checked == 10


@pytest.mark.timeout(120)
def test_lone_and_queued_appends_hand_leadership_on_without_losing_anyone(store: Store) -> None:
    """Lone appends (leadership taken and given up without the mutex) racing with
    queued ones and bursts: every caller returns, every event is written once."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(150):
                if (n + i) % 7 == 0:
                    store.journal.append_many([("t.burst", {"n": n, "i": i})] * 3)
                else:
                    store.journal.append("t.race", {"n": n, "i": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    assert not any(t.is_alive() for t in threads)
    assert not errors
    expected = sum(3 if (n + i) % 7 == 0 else 1 for n in range(8) for i in range(150))
    assert store.journal.verify_chain().checked == expected
    assert not store.journal._pending and not store.journal._leading.locked()


# -- tamper detection -----------------------------------------------------------------------


@pytest.fixture
def ten(db_path: Path) -> Path:
    with Store.open(make_settings(db_path)) as store:
        store.journal.append_many([("door.opened", {"i": i}) for i in range(10)])
    return db_path


def verify(path: Path):
    with Store.open(make_settings(path), read_only=True) as store:
        return store.journal.verify_chain()


def test_untouched_chain_verifies(ten: Path) -> None:
    result = verify(ten)
    assert result.ok and result.checked == 10 and result.first_seq == 1 and result.last_seq == 10


def test_edited_payload_is_found(ten: Path) -> None:
    raw(ten).execute("UPDATE events SET payload = '{\"i\":99}' WHERE seq = 4")
    result = verify(ten)
    assert not result.ok and result.broken_seq == 4 and "content" in result.reason
    assert result.checked == 3


def test_edited_time_is_found(ten: Path) -> None:
    raw(ten).execute("UPDATE events SET wall_ms = wall_ms + 1 WHERE seq = 7")
    result = verify(ten)
    assert not result.ok and result.broken_seq == 7


def test_rehashed_edit_breaks_the_next_link(ten: Path) -> None:
    """An attacker who recomputes the edited event's hash still breaks seq+1."""
    conn = raw(ten)
    row = conn.execute(
        "SELECT seq, id, wall_ms, mono_ns, type, prev_hash FROM events WHERE seq = 5"
    ).fetchone()
    forged = event_hash(row[5], row[0], row[1], row[2], row[3], row[4], '{"i":"forged"}')
    conn.execute(
        'UPDATE events SET payload = \'{"i":"forged"}\', hash = ? WHERE seq = 5', (forged,)
    )
    result = verify(ten)
    assert not result.ok and result.broken_seq == 6 and "prev_hash" in result.reason


def test_deleted_row_is_found(ten: Path) -> None:
    raw(ten).execute("DELETE FROM events WHERE seq = 6")
    result = verify(ten)
    assert not result.ok and result.broken_seq == 7 and "missing" in result.reason


def test_reordered_rows_are_found(ten: Path) -> None:
    conn = raw(ten)
    conn.execute("BEGIN")
    conn.execute("UPDATE events SET seq = -1 WHERE seq = 3")
    conn.execute("UPDATE events SET seq = 3 WHERE seq = 4")
    conn.execute("UPDATE events SET seq = 4 WHERE seq = -1")
    conn.execute("COMMIT")
    result = verify(ten)
    assert not result.ok and result.broken_seq == 3


def test_swapped_payloads_are_found(ten: Path) -> None:
    conn = raw(ten)
    conn.execute("BEGIN")
    conn.execute("UPDATE events SET payload = '{\"i\":8}' WHERE seq = 2")
    conn.execute("UPDATE events SET payload = '{\"i\":1}' WHERE seq = 9")
    conn.execute("COMMIT")
    result = verify(ten)
    assert not result.ok and result.broken_seq == 2


# -- sync state -------------------------------------------------------------------------------


def test_batches_acks_requeue_and_dead_letters(store: Store) -> None:
    journal = store.journal
    events = journal.append_many([("a.b", {"i": i}) for i in range(10)])
    batch = journal.next_batch(4)
    assert [e.seq for e in batch] == [1, 2, 3, 4]
    assert all(e.status is SyncStatus.IN_FLIGHT and e.attempts == 1 for e in batch)
    assert [e.seq for e in journal.next_batch(3)] == [5, 6, 7]
    assert journal.counts().in_flight == 7
    assert journal.mark_acked([batch[0].id, batch[1].id]) == 2
    assert journal.mark_acked([batch[0].id]) == 0  # never acked twice
    assert journal.requeue([batch[2].id, batch[3].id]) == 2
    assert journal.mark_dead(events[4].id, "422: schema rejected") is True
    assert journal.mark_dead(events[0].id, "late") is False  # already acked
    counts = journal.counts()
    assert (counts.ready, counts.in_flight, counts.acked, counts.dead) == (5, 2, 2, 1)
    assert journal.backlog_count() == 7
    again = journal.next_batch(100)
    assert [e.seq for e in again] == [3, 4, 8, 9, 10]
    assert again[0].attempts == 2
    assert [e.seq for e in journal.dead_letters()] == [5]
    assert journal.dead_letters()[0].dead_reason == "422: schema rejected"
    assert journal.requeue_dead() == 1
    assert [e.seq for e in journal.next_batch(10)] == [5]
    with pytest.raises(ValueError):
        journal.mark_dead(events[1].id, " ")
    with pytest.raises(ValueError):
        journal.next_batch(0)
    with pytest.raises(ValueError):
        journal.mark_acked(["not-a-uuid"])


def test_in_flight_events_are_ready_again_after_restart(db_path: Path) -> None:
    with Store.open(make_settings(db_path)) as store:
        store.journal.append_many([("a.b", {"i": i}) for i in range(6)])
        batch = store.journal.next_batch(4)
        store.journal.mark_acked([batch[0].id])
        assert store.journal.counts().in_flight == 3
    with Store.open(make_settings(db_path)) as store:
        counts = store.journal.counts()
        assert (counts.ready, counts.in_flight, counts.acked) == (5, 0, 1)
        assert [e.seq for e in store.journal.next_batch(10)] == [2, 3, 4, 5, 6]


def test_trim_keeps_unacked_events_and_chain_continuity(db_path: Path) -> None:
    settings = make_settings(db_path, keep_acked=3, trim_batch=2)
    with Store.open(settings) as store:
        journal = store.journal
        events = journal.append_many([("a.b", {"i": i}) for i in range(20)])
        journal.next_batch(20)
        # Ack 1..12 except 6: the prefix that may go stops at 5.
        journal.mark_acked([e.id for e in events[:12] if e.seq != 6])
        assert journal.trim() == 2  # keeps the newest 3 of the acked prefix 1..5
        assert journal.get(2) is None and journal.get(3) is not None
        assert journal.verify_chain().ok
        journal.mark_acked([events[5].id])  # now 1..12 acked: auto-trim to keep 3
        assert journal.counts().trimmed_through == 9
        assert journal.get(9) is None and journal.get(10).status is SyncStatus.ACKED
        result = journal.verify_chain()
        assert result.ok and result.first_seq == 10 and result.last_seq == 20
        assert journal.backlog_count() == 8
        # Trim everything acked; the chain still links to the anchor.
        journal.trim(keep_acked=0)
    with Store.open(settings) as store:
        head = store.journal.head()
        assert head.seq == 20 and head.hash == events[-1].hash
        nxt = store.journal.append("a.b", {})
        assert nxt.seq == 21 and nxt.prev_hash == events[-1].hash
        assert store.journal.verify_chain().ok


def test_trim_of_everything_keeps_the_anchor_for_the_next_event(db_path: Path) -> None:
    with Store.open(make_settings(db_path, keep_acked=0)) as store:
        events = store.journal.append_many([("a.b", {"i": i}) for i in range(5)])
        store.journal.next_batch(5)
        store.journal.mark_acked([e.id for e in events])
        store.journal.trim()
        assert store.journal.events() == []
        assert store.journal.head().hash == events[-1].hash
    with Store.open(make_settings(db_path)) as store:
        nxt = store.journal.append("a.b", {})
        assert (nxt.seq, nxt.prev_hash) == (6, events[-1].hash)
        assert uuid.UUID(nxt.id).bytes > uuid.UUID(events[-1].id).bytes
        result = store.journal.verify_chain()
        assert result.ok and result.first_seq == 6
