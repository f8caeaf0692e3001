"""The central link in process (an Agent on the simulator, the reference central as a
process): alarms for clock drift, disk pressure and a growing backlog, raised and
cleared as journal events and shown in status and heartbeats."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from edge_agent.devices import open_devices
from edge_agent.policy import Credential
from edge_agent.store import Store, StoreSettings
from edge_agent.sync import CentralLink, clock_offset_ms
from tests.support.sync_rig import (
    STAFF_UID,
    device_summary,
    enroll_with,
    make_config,
    wait_until,
)

pytestmark = pytest.mark.processes

MIB = 1024 * 1024


class Disk:
    """A disk whose free space the test sets."""

    def __init__(self) -> None:
        self.free = 10_000 * MIB

    def __call__(self, path: Path) -> tuple[int, int]:
        return self.free, 20_000 * MIB


@contextmanager
def linked_agent(
    config: AgentConfig, *, skew_s: list[float] | None = None, disk: Disk | None = None
) -> Iterator[tuple[Agent, CentralLink]]:
    config.paths.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(StoreSettings(path=config.paths.database), disk_usage=disk)
    devices = open_devices(config.hardware, camera=False)
    skew = skew_s if skew_s is not None else [0.0]
    agent = Agent(
        config,
        store,
        devices,
        link=lambda agent: CentralLink(agent, config, wall_clock=lambda: time.time() + skew[0]),
    )
    link = agent.link
    assert isinstance(link, CentralLink)
    link.start()
    try:
        yield agent, link
    finally:
        agent.close()
        link.stop()
        devices.close()
        store.close()


def _alarm_events(agent: Agent) -> list[dict[str, Any]]:
    return [e.payload for e in agent.store.journal.events(limit=10_000) if e.type == "sync.alarm"]


def _codes(agent: Agent) -> list[str]:
    return [a["code"] for a in agent.status()["sync"]["alarms"]]


def test_clock_offset_formula() -> None:
    # The central is 500 ms ahead; 40 ms each way on the wire, 20 ms in the server.
    offset, rtt = clock_offset_ms(t0=1_000, t1=1_540, t2=1_560, t3=1_100)
    assert (offset, rtt) == (500.0, 80.0)


def _states(agent: Any, alarm: str, last: str) -> list[dict[str, Any]] | None:
    """The journaled events of ``alarm`` once the newest is in state ``last``, else None."""
    events = [e for e in _alarm_events(agent) if e["alarm"] == alarm]
    return events if events and events[-1]["state"] == last else None


def test_clock_drift_raises_and_clears_an_alarm(central, tmp_path: Path) -> None:
    skew = [-600.0]  # this agent's clock is ten minutes slow
    config = make_config(
        tmp_path / "a", central.url, device="drifting", central={"clock_drift_alarm_s": 120}
    )
    with central.admin() as admin:
        enroll_with(admin, config)
        with linked_agent(config, skew_s=skew) as (agent, link):
            wait_until(lambda: "clock_drift" in _codes(agent), what="clock alarm")
            assert 590_000 <= link.clock_offset_ms <= 610_000  # the central is ahead
            sync = agent.status()["sync"]
            assert sync["clock_offset_ms"] == link.clock_offset_ms
            beat = wait_until(
                lambda: (device_summary(admin, "drifting").get("last_heartbeat") or {}).get(
                    "alarms"
                ),
                what="the alarm in a heartbeat",
            )
            assert "clock_drift" in [a["code"] for a in beat]
            skew[0] = 0.0  # NTP fixed it
            wait_until(lambda: "clock_drift" not in _codes(agent), what="alarm cleared")
            # The alarm leaves memory just before its event is journaled: wait for that too.
            events = wait_until(
                lambda: _states(agent, "clock_drift", "cleared"), what="cleared journaled"
            )
    assert [e["state"] for e in events] == ["raised", "cleared"]
    assert events[0]["offset_ms"] > 590_000


def test_disk_pressure_raises_an_alarm_and_evicts_photos(central, tmp_path: Path) -> None:
    disk = Disk()
    config = make_config(tmp_path / "a", central.url, device="full-disk")
    with central.admin() as admin:
        enroll_with(admin, config)
        with linked_agent(config, disk=disk) as (agent, _link):
            photo = agent.store.media.put(b"\xff\xd8" + b"x" * 4096, content_type="image/jpeg")
            agent.store.media.mark_uploaded(photo.id)
            disk.free = 100 * MIB  # below the store's 256 MiB warning level
            wait_until(lambda: "disk_low" in _codes(agent), what="disk alarm")
            wait_until(lambda: agent.store.media.item(photo.id).state.name == "EVICTED",
                       what="the uploaded photo evicted")  # fmt: skip
            # Access decisions go on: events are never what is given up for space.
            assert agent.present(Credential.badge(bytes.fromhex(STAFF_UID)))["seq"] > 0
            disk.free = 10_000 * MIB
            wait_until(lambda: "disk_low" not in _codes(agent), what="alarm cleared")
            events = wait_until(
                lambda: _states(agent, "disk_low", "cleared"), what="cleared journaled"
            )
    assert [e["state"] for e in events] == ["raised", "cleared"]


def test_a_growing_backlog_raises_an_alarm_until_drained(central, tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "a", central.url, device="backlogged", central={"backlog_alarm_events": 20}
    )
    with central.admin() as admin:
        enroll_with(admin, config)
        with linked_agent(config) as (agent, _link):
            wait_until(lambda: agent.status()["online"], what="online")
            admin.set_fault("error", endpoint="events", status=503)
            try:
                badge = Credential.badge(bytes.fromhex(STAFF_UID))
                for _ in range(25):
                    agent.present(badge)
                wait_until(lambda: "backlog" in _codes(agent), what="backlog alarm")
                detail = agent.status()["sync"]["alarms"][0]["detail"]
                assert "events waiting (limit 20)" in detail
            finally:
                admin.clear_faults()
            wait_until(lambda: agent.status()["events_waiting"] == 0, what="drained")
            wait_until(lambda: "backlog" not in _codes(agent), what="alarm cleared")
            states = [e["state"] for e in _alarm_events(agent) if e["alarm"] == "backlog"]
    assert states == ["raised", "cleared"]
