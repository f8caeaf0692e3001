"""Chaos: ``kill -9`` the agent at random moments while credentials are presented and
the network fails; in the end the central holds every journaled event exactly once.

A reference central runs with every fault switched on at random (errors, throttling,
connections dropped mid-body and before the answer, answers lost after the commit,
requests held past the client's timeout) on every device endpoint. An agent
(``edge-agent run``) is started, SIGKILLed after a random time -- during start-up,
mid-upload, mid-delta, whenever -- and started again, over and over, while two
threads present credentials: badges and QR invitations through the local API, and
badges tapped on the simulated reader. Then the faults go off, the agent catches up
and stops, and the test checks:

* every decision the agent answered (so reported durable) is in the journal, with
  the id it reported;
* the journal's chain verifies, with no gap;
* the central holds every journaled event exactly once, in order (same seq, id and
  hash), its chain verified on arrival and walked again.

The default run lasts about a minute (``CHAOS_SECONDS``, 50 s of chaos); the soak,
marked slow, runs ten minutes.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from central.admin import CentralAdmin
from central.testing import CentralProcess
from edge_agent.client import AgentClient, AgentUnavailable, ApiError
from edge_agent.store import Store, StoreSettings
from tests.support.sync_rig import (
    STAFF_UID,
    AgentProcess,
    assert_exactly_once,
    enroll_with,
    make_config,
    synced_up,
    wait_until,
)

pytestmark = pytest.mark.processes

SEED = int(os.environ.get("CHAOS_SEED", "20261122"))

#: Faults on every device endpoint, each firing at random (seeded).
CHAOS_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("latency", {"delay_s": 0.05, "probability": 0.3}),
    ("timeout", {"delay_s": 1.5, "probability": 0.03}),  # the agent gives up after 1 s
    ("error", {"status": 503, "probability": 0.08}),
    ("throttle", {"retry_after_s": 1, "probability": 0.04}),
    ("drop_mid_body", {"probability": 0.05}),
    ("drop_before_response", {"probability": 0.05}),
    ("lost_after_commit", {"probability": 0.08}),
]


class Presenter(threading.Thread):
    """Presents credentials in a loop; keeps what the agent answered."""

    def __init__(self, config: Any, stop: threading.Event, kind: str, seed: int) -> None:
        super().__init__(name=f"presenter-{kind}", daemon=True)
        self.client = AgentClient(config.paths.socket, timeout=3.0)
        self.stop_event = stop
        self.kind = kind
        self.rng = random.Random(seed)
        self.tokens: list[str] = []
        self.answered: list[dict[str, Any]] = []
        self.refused = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self.kind == "api":
                    if self.tokens and self.rng.random() < 0.5:
                        answer = self.client.present_qr(self.rng.choice(self.tokens))
                    else:
                        answer = self.client.present_badge(STAFF_UID)
                    self.answered.append(answer)
                else:  # the simulated reader: the agent's NFC loop journals the tap
                    self.client.simulate("badge", uid=self.rng.choice([STAFF_UID, "04DEAD01"]))
            except (AgentUnavailable, ApiError, OSError):
                self.refused += 1  # the agent is down (or going down): try again
            self.stop_event.wait(self.rng.uniform(0.0, 0.03))


def run_chaos(tmp_path: Path, seconds: float, min_kills: int = 0) -> dict[str, Any]:
    rng = random.Random(SEED)
    with CentralProcess(tmp_path / "central") as central:
        admin = central.admin()
        admin.put_badge(uid=STAFF_UID, holder="Sam Staff", doors=["gate-a"], kind="uid")
        tokens = [
            admin.create_invitation(
                visitor=f"Visitor {n}", doors=["gate-a"], single_use=n % 2 == 0
            )["token"]
            for n in range(6)
        ]
        config = make_config(
            tmp_path / "agent",
            central.url,
            device="chaos-gate",
            central={"timeout_s": 1.0, "batch_size": 20, "backoff_cap_s": 0.3},
        )
        enroll_with(admin, config)
        for n, (name, options) in enumerate(CHAOS_FAULTS):
            admin.set_fault(name, endpoint="*", seed=SEED + n, **options)
        stop = threading.Event()
        presenters = [
            Presenter(config, stop, "api", SEED + 100),
            Presenter(config, stop, "reader", SEED + 200),
        ]
        presenters[0].tokens = tokens
        agent = AgentProcess(config, tmp_path / "agent.log")
        kills = 0
        try:
            for presenter in presenters:
                presenter.start()
            # At least `seconds` of chaos and at least `min_kills` kill cycles: on a loaded
            # machine an agent start takes longer, and a fixed window alone would count fewer
            # cycles than the test asks for (up to four times the window, then it fails).
            started = time.monotonic()
            deadline, cap = started + seconds, started + 4 * seconds
            while time.monotonic() < deadline or (kills < min_kills and time.monotonic() < cap):
                agent.start(wait=rng.random() < 0.85)  # sometimes killed during start-up
                time.sleep(rng.uniform(0.05, 1.2))
                agent.stop(signal.SIGKILL)
                kills += 1
        finally:
            stop.set()
            for presenter in presenters:
                presenter.join(10)
            if agent.process is not None:
                agent.stop(signal.SIGKILL)
        fired = {f["name"]: f["fired"] for f in admin.faults()}
        admin.clear_faults()
        agent.start()
        try:
            wait_until(lambda: synced_up(admin, config), 120, "the agent to catch up")
        finally:
            assert agent.stop() == 0
        summary = assert_exactly_once(admin, config)
        check_reported_durable(admin, config, presenters[0].answered)
        result = {
            "kills": kills,
            "events": summary["unique_events"],
            "duplicates": summary["duplicates_seen"],
            "decisions": len(presenters[0].answered),
            "fired": fired,
        }
        admin.close()
    print(f"chaos: {result}")
    return result


def check_reported_durable(admin: CentralAdmin, config: Any, answered: list[dict[str, Any]]):
    """Every decision the agent answered was journaled under the id it reported (checked
    at the central, which holds the events the journal may have trimmed since)."""
    stored = {e["seq"]: e for e in admin.all_device_events(config.device.id)}
    for answer in answered:
        event = stored.get(answer["seq"])
        assert event is not None and event["id"] == answer["event_id"], answer
        assert event["type"] == "access.decision"
        assert event["payload"]["reason"] in (answer["reason"], "granted"), answer
    with Store.open(StoreSettings(path=config.paths.database), read_only=True) as store:
        assert store.journal.verify_chain().ok


def test_chaos_kill_9_under_load_and_network_faults(tmp_path: Path) -> None:
    result = run_chaos(tmp_path, float(os.environ.get("CHAOS_SECONDS", "50")), min_kills=20)
    assert result["kills"] >= 20
    assert result["decisions"] > 50
    assert result["events"] > result["decisions"]
    # The faults really happened, including answers lost after a commit.
    assert result["fired"].get("lost_after_commit", 0) > 0
    assert sum(result["fired"].values()) > 20


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_chaos_soak(tmp_path: Path) -> None:
    result = run_chaos(tmp_path, float(os.environ.get("CHAOS_SOAK_SECONDS", "600")), min_kills=300)
    assert result["kills"] >= 300
