"""Hypothesis state machine: enqueue / sync / server fails / crash and reopen.

The agent side is the real :class:`Uplink` over a real store; the server is the
reference central in a child process, with its fault injector. Every example is a
fresh device. After every step: what the central stored is a prefix of the journal
(same seq, id and hash: nothing invented, nothing stored twice), and every event
acknowledged locally is stored there. At the end, with the faults off, one drain
delivers the rest: the central holds the journal exactly, chain verified.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from central.admin import CentralAdmin
from central.testing import CentralProcess, enroll_device
from edge_agent.store import Store, StoreSettings, SyncStatus
from edge_agent.sync import Alarms, Backoff, CentralClient, Paused, Stopped, Uplink

pytestmark = pytest.mark.processes

#: Faults on /v1/events: (name, options). The client's timeout is 0.3 s.
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("error", {"status": 500}),
    ("error", {"status": 503}),
    ("throttle", {"retry_after_s": 0}),
    ("drop_mid_body", {}),
    ("drop_before_response", {}),
    ("lost_after_commit", {}),
    ("timeout", {"delay_s": 0.6}),
    ("latency", {"delay_s": 0.05}),
]

#: The module's central, for the machine (hypothesis builds it without fixtures).
_running: dict[str, CentralProcess] = {}
_devices = itertools.count(1)


@pytest.fixture(scope="module", autouse=True)
def _machine_central(central: CentralProcess) -> Iterator[CentralProcess]:
    _running["central"] = central
    yield central
    del _running["central"]


class UplinkMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.central = _running["central"]
        self.admin = CentralAdmin(self.central.url)
        self.admin.clear_faults()
        self.device_id = f"sm-{next(_devices)}"
        enrolled, session = enroll_device(self.central.url, door="gate-a", device_id=self.device_id)
        session.close()
        self.client = CentralClient(
            self.central.url, credential=enrolled["device_token"], timeout_s=0.3
        )
        self.dir = Path(tempfile.mkdtemp(prefix="portier-sm-"))
        self.store = Store.open(StoreSettings(path=self.dir / "agent.db"))
        self.journaled = 0

    def _uplink(self, max_waits: int) -> Uplink:
        waits: list[float] = []
        return Uplink(
            self.store.journal,
            self.client,
            Alarms(self.store.journal.append),
            batch_size=7,
            backoff=Backoff(0.001, 0.01),
            wait=lambda s: waits.append(s) or len(waits) >= max_waits,
        )

    # -- rules ---------------------------------------------------------------------

    @rule(count=st.integers(1, 15))
    def enqueue(self, count: int) -> None:
        self.store.journal.append_many([("access.decision", {"n": n}) for n in range(count)])
        self.journaled += count

    @rule(patience=st.integers(1, 6))
    def sync(self, patience: int) -> None:
        uplink = self._uplink(patience)
        try:
            uplink.drain()
        except (Stopped, Paused):
            uplink.release()  # a clean stop puts the batch back

    @rule(fault=st.sampled_from(FAULTS), count=st.integers(1, 3))
    def server_fails(self, fault: tuple[str, dict[str, Any]], count: int) -> None:
        name, options = fault
        self.admin.set_fault(name, endpoint="events", count=count, **options)

    @rule()
    def server_recovers(self) -> None:
        self.admin.clear_faults()

    @rule(patience=st.integers(1, 3), during=st.booleans())
    def crash_and_reopen(self, patience: int, during: bool) -> None:
        if during:  # die while a batch is in flight, maybe committed at the central
            with contextlib.suppress(Stopped, Paused):  # no release: the process is gone
                self._uplink(patience).drain()
        self.store.close()
        self.store = Store.open(StoreSettings(path=self.dir / "agent.db"))
        assert self.store.journal.counts().in_flight == 0

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def central_holds_a_prefix_of_the_journal_and_every_acked_event(self) -> None:
        journal = self.store.journal.events(limit=10_000)
        assert [e.seq for e in journal] == list(range(1, self.journaled + 1))
        stored = self.admin.all_device_events(self.device_id)
        expected = [(e.seq, e.id, e.hash.hex()) for e in journal[: len(stored)]]
        assert [(e["seq"], e["id"], e["hash"]) for e in stored] == expected
        acked = [e.seq for e in journal if e.status is SyncStatus.ACKED]
        assert all(seq <= len(stored) for seq in acked)

    def teardown(self) -> None:
        try:
            self.admin.clear_faults()
            self._uplink(50).drain()
            journal = self.store.journal.events(limit=10_000)
            stored = self.admin.all_device_events(self.device_id)
            assert [(e["seq"], e["id"], e["hash"]) for e in stored] == [
                (e.seq, e.id, e.hash.hex()) for e in journal
            ]
            assert all(e.status is SyncStatus.ACKED for e in journal)
            summary = next(
                d
                for d in self.admin.received(verify=True)["devices"]
                if d["device_id"] == self.device_id
            )
            assert summary["unique_events"] == self.journaled
            assert summary["chain_ok"] and summary["chain_verified"]
        finally:
            self.client.close()
            self.store.close()
            self.admin.close()
            shutil.rmtree(self.dir, ignore_errors=True)


UplinkMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_uplink_state_machine = UplinkMachine.TestCase
