"""``edge-agent run`` under a systemd-like supervisor: sd_notify READY, watchdog, stop.

The notify socket is a real datagram socket the test binds, as systemd does
(``NOTIFY_SOCKET``); messages are sent by the sdnotify library in the agent.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.api import SocketInUse, start_server
from edge_agent.client import AgentClient
from edge_agent.service import serve, watchdog_interval_s
from tests.edge_agent.test_agent import rigs
from tests.edge_agent.test_local_api import start_agent


class NotifySocket:
    """A bound ``SOCK_DGRAM`` Unix socket collecting sd_notify messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, predicate, timeout: float = 30.0) -> list[str]:
        """Receive until ``predicate(messages)`` holds; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not predicate(self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"sd_notify messages so far: {self.messages}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.extend(data.decode().splitlines())
        return self.messages

    def drain(self, seconds: float) -> list[str]:
        """Collect whatever arrives in the next ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                self.messages.extend(self.sock.recv(4096).decode().splitlines())
            except TimeoutError:
                break
        return self.messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def make_rig(tmp_path: Path):
    with rigs(tmp_path) as build:
        yield build


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.close()


@pytest.mark.processes
def test_ready_then_watchdog_pings_then_stopping(tmp_path: Path, notify_socket) -> None:
    agent = start_agent(
        tmp_path / "agent",
        env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"},
    )
    try:
        messages = notify_socket.wait_for(lambda m: m.count("WATCHDOG=1") >= 2)
        assert messages[0] == "READY=1"  # nothing before the socket is up
        assert any(m.startswith("STATUS=") for m in messages)
        assert messages.index("READY=1") < messages.index("WATCHDOG=1")
    finally:
        assert agent.stop() == 0
    assert notify_socket.wait_for(lambda m: "STOPPING=1" in m)[-1] == "STOPPING=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "100"}, 0.5),  # never ping more often than twice a second
        ({"WATCHDOG_USEC": "nonsense"}, None),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "<self>"}, 10.0),
    ],
)
def test_watchdog_interval(monkeypatch, env, expected) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, str(os.getpid()) if value == "<self>" else value)
    assert watchdog_interval_s() == expected


class InProcess:
    """``serve()`` on a thread's event loop, so the test can reach into the agent."""

    def __init__(self, rig) -> None:
        self.rig = rig
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(
                serve(self.rig.agent, self.rig.config, stop=self.stop, on_ready=self.ready.set)
            )
        except BaseException as exc:
            self.error = exc
        finally:
            self.loop.close()

    def __enter__(self) -> InProcess:
        self.thread.start()
        assert self.ready.wait(20) or self.error, "serve() never became ready"
        if self.error:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(20)
        assert not self.thread.is_alive()


def test_watchdog_is_not_pinged_while_unhealthy(make_rig, monkeypatch, notify_socket) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every 0.5 s when healthy
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    rig = make_rig()
    healthy = threading.Event()
    monkeypatch.setattr(rig.agent, "healthy", healthy.is_set)
    with InProcess(rig):
        notify_socket.wait_for(lambda m: "READY=1" in m)
        assert "WATCHDOG=1" not in notify_socket.drain(1.6)  # three intervals, no ping
        healthy.set()
        notify_socket.wait_for(lambda m: "WATCHDOG=1" in m)


def test_serve_replaces_a_stale_socket_and_removes_it_at_stop(make_rig) -> None:
    rig = make_rig()
    path = rig.config.paths.socket
    path.parent.mkdir(parents=True, exist_ok=True)
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))  # what a crashed agent leaves behind: a file nobody listens on
    leftover.close()
    assert path.exists()
    with InProcess(rig):
        status = AgentClient(path).status()
        assert status["door_id"] == "gate-a"
        assert (path.stat().st_mode & 0o777) == rig.config.paths.socket_mode
    assert not path.exists()
    rig.agent.close()
    assert rig.events("agent.stopped")[-1].payload["relay_energised"] is False


def test_start_server_refuses_a_socket_in_use(make_rig) -> None:
    rig = make_rig()
    path = rig.config.paths.socket
    path.parent.mkdir(parents=True, exist_ok=True)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    other.listen()
    try:
        with pytest.raises(SocketInUse):
            asyncio.run(start_server(rig.agent, path, 0o660))
        assert path.exists()  # the other agent's socket is left alone
    finally:
        other.close()
