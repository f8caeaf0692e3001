"""Hypothesis state machine: append / batch / ack / fail / crash-and-reopen.

Invariant: nothing lost, nothing acknowledged twice. Every appended event is
either still in the journal with the status the model expects, or was
acknowledged and then trimmed; ``mark_acked`` counts an event only the first
time; ``next_batch`` never hands out an acknowledged event.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge_agent.store import Store, StoreSettings, SyncStatus


class JournalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="portier-sm-"))
        self.conf = StoreSettings(
            path=self.dir / "sm.sqlite",
            reserve_bytes=0,
            warn_free_bytes=0,
            critical_free_bytes=0,
            keep_acked=2,
            trim_batch=1,
        )
        self.store = Store.open(self.conf)
        self.seq_of: dict[str, int] = {}
        self.ready: set[str] = set()
        self.in_flight: set[str] = set()
        self.acked: set[str] = set()
        self.dead: set[str] = set()
        self.n = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules ---------------------------------------------------------------------

    @rule(count=st.integers(1, 4), together=st.booleans())
    def append(self, count: int, together: bool) -> None:
        items = [("sm.event", {"n": self.n + i}) for i in range(count)]
        self.n += count
        if together:
            events = self.store.journal.append_many(items)
        else:
            events = [self.store.journal.append(t, p) for t, p in items]
        for event in events:
            assert event.id not in self.seq_of
            self.seq_of[event.id] = event.seq
            self.ready.add(event.id)

    @rule(limit=st.integers(1, 6))
    def take_batch(self, limit: int) -> None:
        batch = self.store.journal.next_batch(limit)
        ids = [e.id for e in batch]
        expected = sorted(self.ready, key=self.seq_of.__getitem__)[:limit]
        assert ids == expected, "next_batch must hand out the oldest ready events"
        assert not set(ids) & self.acked, "an acknowledged event was handed out again"
        assert all(e.status is SyncStatus.IN_FLIGHT for e in batch)
        self.ready -= set(ids)
        self.in_flight |= set(ids)

    @precondition(lambda self: self.in_flight or self.acked)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        candidates = sorted(self.in_flight | self.acked)
        ids = data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=6))
        fresh = set(ids) - self.acked
        assert self.store.journal.mark_acked(ids) == len(fresh), "acknowledged twice"
        self.in_flight -= fresh
        self.acked |= fresh

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def upload_fails(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(sorted(self.in_flight)), min_size=1, unique=True))
        assert self.store.journal.requeue(ids) == len(ids)
        self.in_flight -= set(ids)
        self.ready |= set(ids)

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def central_refuses(self, data: st.DataObject) -> None:
        event_id = data.draw(st.sampled_from(sorted(self.in_flight)))
        assert self.store.journal.mark_dead(event_id, "422 rejected")
        self.in_flight.discard(event_id)
        self.dead.add(event_id)

    @precondition(lambda self: self.dead)
    @rule()
    def retry_dead(self) -> None:
        assert self.store.journal.requeue_dead() == len(self.dead)
        self.ready |= self.dead
        self.dead.clear()

    @rule(keep=st.integers(0, 3))
    def trim(self, keep: int) -> None:
        self.store.journal.trim(keep_acked=keep)

    @rule()
    def crash_and_reopen(self) -> None:
        # Committed state is all that survives; in-flight work is resumed.
        self.store.close()
        self.store = Store.open(self.conf)
        self.ready |= self.in_flight
        self.in_flight.clear()

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def nothing_lost_nothing_acked_twice(self) -> None:
        journal = self.store.journal
        counts = journal.counts()
        assert counts.ready == len(self.ready)
        assert counts.in_flight == len(self.in_flight)
        assert counts.dead == len(self.dead)
        assert journal.backlog_count() == len(self.ready) + len(self.in_flight)
        assert journal.head().seq == len(self.seq_of)
        expected = (
            [(i, SyncStatus.READY) for i in self.ready]
            + [(i, SyncStatus.IN_FLIGHT) for i in self.in_flight]
            + [(i, SyncStatus.DEAD) for i in self.dead]
        )
        for event_id, status in expected:
            event = journal.get_by_id(event_id)
            assert event is not None, "an unacknowledged event was lost"
            assert event.status is status and event.seq == self.seq_of[event_id]
        for event_id in self.acked:
            event = journal.get_by_id(event_id)
            if event is None:
                assert self.seq_of[event_id] <= counts.trimmed_through
            else:
                assert event.status is SyncStatus.ACKED
        assert journal.verify_chain().ok


JournalMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
TestJournalStateMachine = JournalMachine.TestCase
