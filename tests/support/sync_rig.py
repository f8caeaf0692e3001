"""Shared rig of the sync tests: a reference central and agents in real processes.

Imported by the sync, chaos, demo, reliability and security tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from central.admin import CentralAdmin
from edge_agent.client import AgentClient, AgentUnavailable
from edge_agent.config import AgentConfig, load_config
from edge_agent.enroll import DeviceCredential, enroll
from edge_agent.store import Event, Store, StoreSettings
from portier_demo.demo import write_agent_config

EDGE_AGENT = str(Path(sys.executable).with_name("edge-agent"))
START_TIMEOUT_S = 30.0

#: Short intervals so that tests wait seconds, not minutes.
FAST_CENTRAL: dict[str, Any] = {
    "timeout_s": 2.0,
    "sync_interval_s": 0.2,
    "heartbeat_interval_s": 1.0,
    "backoff_base_s": 0.05,
    "backoff_cap_s": 0.5,
}

STAFF_UID = "04A1B2C3D4E5F6"


def wait_until(predicate: Callable[[], Any], timeout_s: float = 30.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(0.05)


def make_config(
    where: Path,
    central_url: str | None,
    *,
    device: str,
    door: str = "gate-a",
    site: str = "hq",
    door_settings: dict[str, Any] | None = None,
    central: dict[str, Any] | None = None,
) -> AgentConfig:
    """Write ``where/agent.toml`` for an agent on simulated hardware; return it loaded."""
    where.mkdir(parents=True, exist_ok=True)
    path = write_agent_config(
        where,
        central_url,
        site,
        device=device,
        door=door,
        door_settings=door_settings,
        central={**FAST_CENTRAL, **(central or {})},
    )
    return load_config(path)


def enroll_with(admin: CentralAdmin, config: AgentConfig) -> DeviceCredential:
    """Mint a one-time token for the agent's door and enroll with it."""
    token = admin.create_enroll_token(config.door.id)["enroll_token"]
    return enroll(config, token)


@dataclass
class AgentProcess:
    """``edge-agent run`` in a child process."""

    config: AgentConfig
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def client(self) -> AgentClient:
        return AgentClient(self.config.paths.socket, timeout=10.0)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, wait: bool = True) -> AgentProcess:
        assert self.config.source is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [EDGE_AGENT, "-v", "run", "--config", str(self.config.source)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith(("NOTIFY_", "WATCHDOG_"))
                },
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"agent exited with {self.process.returncode}:\n{self.output()}")
            try:
                self.client.status()
                return
            except AgentUnavailable:
                time.sleep(0.05)
        self.kill()
        pytest.fail(f"agent did not answer within {START_TIMEOUT_S} s:\n{self.output()}")

    def status(self) -> dict[str, Any]:
        return self.client.status()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(f"agent ignored signal {sig}:\n{self.output()}")
        return process.returncode

    def kill(self) -> int | None:
        return self.stop(signal.SIGKILL)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def running_agent(config: AgentConfig) -> Iterator[AgentProcess]:
    """An agent process for the ``with`` block (SIGTERM at the end, kill if stuck)."""
    agent = AgentProcess(config, config.paths.state_dir.parent / "agent.log").start()
    try:
        yield agent
    finally:
        agent.stop()


def journal_events(config: AgentConfig) -> list[Event]:
    """Every event in the agent's journal (read-only: the agent may be running)."""
    with Store.open(StoreSettings(path=config.paths.database), read_only=True) as store:
        events: list[Event] = []
        while True:
            page = store.journal.events(from_seq=events[-1].seq + 1 if events else 1, limit=5000)
            if not page:
                return events
            events.extend(page)


def device_summary(admin: CentralAdmin, device_id: str, verify: bool = False) -> dict[str, Any]:
    """The central's ``DeviceSummary`` of ``device_id`` (empty dict if unknown)."""
    for device in admin.received(verify=verify)["devices"]:
        if device["device_id"] == device_id:
            return device
    return {}


def synced_up(admin: CentralAdmin, config: AgentConfig) -> bool:
    """True once the central holds every event of the agent's journal and nothing waits."""
    with Store.open(StoreSettings(path=config.paths.database), read_only=True) as store:
        counts = store.journal.counts()
        head = store.journal.head().seq
    summary = device_summary(admin, config.device.id)
    return counts.backlog == 0 and summary.get("unique_events") == head


def assert_exactly_once(admin: CentralAdmin, config: AgentConfig) -> dict[str, Any]:
    """Every journaled event is at the central exactly once, in order, chain verified.

    The journal may have trimmed acknowledged events (beyond ``keep_acked``): the
    central then holds them before the journal's first event, chained to it.
    Returns the device's summary (duplicates seen and so on).
    """
    journal = journal_events(config)
    first = journal[0].seq if journal else 1
    assert [e.seq for e in journal] == list(range(first, first + len(journal))), "journal gap"
    stored = admin.all_device_events(config.device.id)
    head = journal[-1].seq if journal else 0
    assert [e["seq"] for e in stored] == list(range(1, head + 1))
    assert [(e["seq"], e["id"], e["hash"]) for e in stored[first - 1 :]] == [
        (e.seq, e.id, e.hash.hex()) for e in journal
    ]
    if first > 1:  # the trimmed prefix ends with the hash the journal links to
        assert stored[first - 2]["hash"] == journal[0].prev_hash.hex()
    assert all(e["status"] == "stored" and e["link_ok"] for e in stored)
    summary = device_summary(admin, config.device.id, verify=True)
    assert summary["unique_events"] == head
    assert summary["chain_ok"] is True and summary["chain_verified"] is True
    assert summary["rejected"] == 0
    return summary
