"""The agent and the reference central as real processes, every fault switched on in turn.

One central, one agent (``edge-agent run``) for the whole module. For each fault of
the central's injector, credentials are presented through the agent's local API
while the fault is on; the test then waits until the central holds every event of
the journal. At the end every journaled event is at the central exactly once, in
order, with the chain verified on arrival and walked again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.admin import CentralAdmin
from central.testing import CentralProcess
from edge_agent.config import AgentConfig
from tests.support.sync_rig import (
    STAFF_UID,
    AgentProcess,
    assert_exactly_once,
    enroll_with,
    journal_events,
    make_config,
    running_agent,
    synced_up,
    wait_until,
)

pytestmark = pytest.mark.processes

PORTIER_CENTRAL = str(Path(sys.executable).with_name("portier-central"))

# name, fault options, whether the central stores what the agent never heard back about
FAULTS: list[tuple[str, dict[str, Any], bool]] = [
    ("latency", {"delay_s": 0.3}, False),
    ("timeout", {"delay_s": 3.0, "count": 2}, True),  # longer than the agent's 1.5 s timeout
    ("error", {"status": 500, "every": 2}, False),
    ("error", {"status": 503, "count": 3}, False),
    ("throttle", {"retry_after_s": 1, "count": 2}, False),
    ("drop_mid_body", {"count": 3}, False),
    ("drop_before_response", {"count": 3}, False),
    ("lost_after_commit", {"count": 3}, True),
]


class Rig:
    def __init__(self, central: CentralProcess, agent: AgentProcess, config: AgentConfig) -> None:
        self.central = central
        self.agent = agent
        self.config = config
        self.admin = central.admin()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    where: Path = tmp_path_factory.mktemp("faults")
    with CentralProcess(where / "central") as central:
        with central.admin() as admin:
            admin.put_badge(uid=STAFF_UID, holder="Sam Staff", doors=["gate-a"], kind="uid")
            config = make_config(
                where / "agent",
                central.url,
                device="faulty-gate",
                central={"timeout_s": 1.5, "batch_size": 4},
            )
            enroll_with(admin, config)
        with running_agent(config) as agent:
            yield Rig(central, agent, config)


@pytest.mark.parametrize(
    ("name", "options", "stored_unheard"),
    FAULTS,
    ids=[f"{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for n, o, _ in FAULTS],
)
def test_every_event_arrives_once_through_the_fault(
    rig: Rig, name: str, options: dict[str, Any], stored_unheard: bool
) -> None:
    admin = rig.admin
    wait_until(lambda: synced_up(admin, rig.config), what="the agent to catch up first")
    duplicates_before = _duplicates(admin, rig.config.device.id)
    admin.set_fault(name, endpoint="events", **options)
    try:
        decisions = [rig.agent.client.present_badge(STAFF_UID) for _ in range(6)]
        # Door decisions never wait for the network, whatever the fault.
        assert all(d["granted"] for d in decisions)
        wait_until(lambda: synced_up(admin, rig.config), 60, f"upload through {name}")
        fault = next(f for f in admin.faults() if f["name"] == name)
        assert fault["fired"] >= 1, f"the {name} fault never acted: {fault}"
    finally:
        admin.clear_faults()
    summary = assert_exactly_once(admin, rig.config)
    if stored_unheard:
        # The central committed batches the agent never heard about: resent, acked
        # as duplicates, stored once.
        assert summary["duplicates_seen"] > duplicates_before
    assert rig.agent.status()["online"] is True


def test_status_reports_the_link(rig: Rig) -> None:
    wait_until(lambda: synced_up(rig.admin, rig.config), what="upload")
    status = rig.agent.status()
    sync = status["sync"]
    assert status["online"] is True and status["events_waiting"] == 0
    assert sync["enrolled"] is True and sync["device_id"] == "faulty-gate"
    assert sync["last_upload_ms"] and sync["last_sync_ms"] and sync["last_heartbeat_ms"]
    assert abs(sync["clock_offset_ms"]) < 5_000  # same machine, same clock
    assert sync["alarms"] == []


def _duplicates(admin: CentralAdmin, device_id: str) -> int:
    for device in admin.received()["devices"]:
        if device["device_id"] == device_id:
            return device["duplicates_seen"]
    return 0


def test_the_central_cli_reports_every_event_once_chain_verified(rig: Rig) -> None:
    wait_until(lambda: synced_up(rig.admin, rig.config), what="upload")
    done = subprocess.run(
        [PORTIER_CENTRAL, "events", "--url", rig.central.url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    device = next(d for d in view["devices"] if d["device_id"] == "faulty-gate")
    journal = journal_events(rig.config)
    assert device["unique_events"] == len(journal) and device["rejected"] == 0
    assert device["chain_ok"] is True and device["chain_verified"] is True
    assert view["totals"]["chain_ok"] is True
