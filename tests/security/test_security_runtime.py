"""Security of the agent's runtime (issue #10, properties 10 and 11), attacked for real.

10. A clock set back does not resurrect expired credentials: the agent keeps a durable
    time floor (journal head, central heartbeat, NTP) and refuses time-bounded
    credentials with ``clock_untrusted`` while the wall clock is below it, with an alarm.
11. The local API cannot be starved: 1,100 idle connections on the Unix socket neither
    lock the kiosk out nor starve the uplink of file descriptors; a huge declared
    Content-Length is refused at once.

Real parts throughout: SQLite stores, the Agent on simulated hardware, ``edge-agent
run`` processes, the reference central as a process, raw Unix sockets.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from central.testing import CentralProcess
from edge_agent.agent import Agent
from edge_agent.client import AgentClient, AgentUnavailable
from edge_agent.config import AgentConfig, load_config, parse_config
from edge_agent.devices import open_devices
from edge_agent.policy import Credential, DoorPolicy
from edge_agent.store import Badge, Delta, Store, StoreSettings
from edge_agent.sync import CentralLink
from portier_common.reasons import Reason
from tests.edge_agent.test_agent import (
    KEY,
    NOW,
    STAFF_UID,
    base_delta,
    invite,
    make_config,
)
from tests.support.sync_rig import EDGE_AGENT, enroll_with, wait_until
from tests.support.sync_rig import make_config as make_sync_config

DAY = 86_400.0
UID_DOOR = {"door": {"accept_uid": True}}
CONTRACTOR_UID = "04000000000099"  # a badge with a validity window


class TestClock:
    """A wall clock the test sets (Unix seconds) and a monotonic clock that follows real
    time; both the store (journal timestamps) and the agent read it, as on a device."""

    __test__ = False

    def __init__(self, wall: float) -> None:
        self.offset = wall - time.time()

    def set(self, wall: float) -> None:
        """Set the wall clock (``date -s``): the monotonic clock does not move."""
        self.offset = wall - time.time()

    def now(self) -> float:
        return time.time() + self.offset

    # The store's Clock protocol.
    def wall_ms(self) -> int:
        return int(self.now() * 1000)

    def mono_ns(self) -> int:
        return time.monotonic_ns()


@dataclass
class Door:
    agent: Agent
    store: Store
    clock: TestClock
    config: AgentConfig

    def present_qr(self, text: str) -> dict[str, Any]:
        return self.agent.present(Credential.qr(text))

    def present_uid(self, uid: str) -> dict[str, Any]:
        return self.agent.present(Credential.badge(bytes.fromhex(uid)))

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.store.journal.events(limit=100_000) if e.type == kind]

    def clock_alarms(self) -> list[str]:
        return [
            kind.split(".")[1]
            for e in self.store.journal.events(limit=100_000)
            if (kind := e.type) in ("alarm.raised", "alarm.cleared")
            and e.payload.get("alarm") == "clock_untrusted"
        ]


@contextmanager
def door(
    state: Path,
    clock: TestClock,
    *,
    delta: Delta | None = None,
    ntp: Callable[[], bool] | None = None,
    **sections: dict[str, Any],
) -> Iterator[Door]:
    """An Agent on simulated hardware whose store and wall clock read ``clock``.

    ``delta`` is applied to the cache first (a fresh store gets the base delta).
    ``ntp`` is the OS's "clock synchronised" answer (default: never synchronised).
    """
    state.mkdir(parents=True, exist_ok=True)
    config = make_config(state, **{**UID_DOOR, **sections})
    config.paths.state_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        store = stack.enter_context(
            Store.open(StoreSettings(path=config.paths.database, reserve_bytes=0), clock=clock)
        )
        if delta is not None:
            store.cache.apply_delta(delta)
        devices = stack.enter_context(open_devices(config.hardware, camera=False))
        agent = Agent(
            config,
            store,
            devices,
            wall_clock=clock.now,
            ntp_synced=ntp or (lambda: False),
        )
        stack.callback(agent.close)
        yield Door(agent, store, clock, config)


def contractor_delta() -> Delta:
    """The base delta plus a contractor's badge valid until two days before NOW."""
    base = base_delta()
    badge = Badge(CONTRACTOR_UID, "uid", "Carl Contractor", not_after=int(NOW - 2 * DAY))
    return Delta(
        cursor=base.cursor,
        signing_keys=base.signing_keys,
        badges=[*base.badges, badge],
        revocations=base.revocations,
        invitations=base.invitations,
        schedules=base.schedules,
    )


def expired_two_days_ago() -> str:
    """An invitation valid for three days that ended two days before NOW."""
    return invite(
        KEY, invitation_id="inv-old", not_before=int(NOW - 5 * DAY), expires=int(NOW - 2 * DAY)
    )


# -- 10: the time floor ------------------------------------------------------------------


def test_a_pi_three_days_behind_after_a_power_cut_refuses_an_expired_invitation(
    tmp_path: Path,
) -> None:
    """The review's case: no RTC, the clock comes back 3 days behind; the journal says
    the agent already ran at NOW, so an invitation that expired 2 days ago stays dead."""
    clock = TestClock(NOW)
    with door(tmp_path, clock, delta=contractor_delta()) as d:  # yesterday's run, clock right
        assert d.present_uid(STAFF_UID)["granted"] is True
    clock.set(NOW - 3 * DAY + 60)  # power cut; boots with the clock 3 days behind
    with door(tmp_path, clock) as d:
        refused = d.present_qr(expired_two_days_ago())
        assert refused["granted"] is False
        assert refused["reason"] == Reason.CLOCK_UNTRUSTED.value
        assert refused["credential_id"] == "inv-old"  # the token was genuine: journaled who
        # A badge whose window ended is not resurrected either.
        contractor = d.present_uid(CONTRACTOR_UID)
        assert (contractor["granted"], contractor["reason"]) == (False, "clock_untrusted")
        # A badge on a schedule cannot be checked against a wrong clock either.
        assert d.present_uid("04000000000015")["reason"] == "clock_untrusted"
        # A staff badge without time bounds still opens (documented in docs/tokens.md).
        assert d.present_uid(STAFF_UID)["granted"] is True
        status = d.agent.status()
        assert status["clock_trusted"] is False
        floor = status["time_floor"]
        assert floor["trusted"] is False and floor["source"] == "journal"
        assert 3 * DAY - 600 < floor["behind_s"] < 3 * DAY + 600
        assert d.clock_alarms() == ["raised"]
        raised = next(e for e in d.events("alarm.raised") if e["alarm"] == "clock_untrusted")
        assert raised["floor_ms"] > raised["wall_ms"] + 3 * DAY * 1000 - 600_000
        # NTP comes up and steps the clock to the real time: trusted again, alarm cleared.
        clock.set(NOW + 3600)
        assert d.present_qr(invite(KEY, not_before=int(NOW), expires=int(NOW + 2 * 3600)))[
            "granted"
        ]
        assert d.present_qr(expired_two_days_ago())["reason"] == "expired"
        assert d.agent.status()["clock_trusted"] is True
        assert d.clock_alarms() == ["raised", "cleared"]


def test_a_clock_set_back_while_running_is_caught_by_the_monotonic_clock(
    tmp_path: Path,
) -> None:
    """``date -s`` three days back under a running agent: the floor (journal head at
    start-up, advanced with the monotonic clock) is still ahead."""
    clock = TestClock(NOW - 10)
    with door(tmp_path, clock, delta=contractor_delta()):
        pass  # a first run journals at NOW - 10
    clock.set(NOW)
    with door(tmp_path, clock) as d:
        assert d.agent.status()["clock_trusted"] is True
        clock.set(NOW - 3 * DAY)
        assert d.present_qr(expired_two_days_ago())["reason"] == "clock_untrusted"
        assert d.present_uid(CONTRACTOR_UID)["reason"] == "clock_untrusted"
        assert d.clock_alarms() == ["raised"]


def test_the_floor_is_durable_and_never_moves_back(tmp_path: Path) -> None:
    """An NTP-synchronised clock sets the floor; it is kept in the store, so neither a
    restart nor a journal written with a clock set back lowers it."""
    clock = TestClock(NOW)
    with door(tmp_path, clock, delta=contractor_delta(), ntp=lambda: True) as d:
        assert d.agent.status()["time_floor"]["source"] == "ntp"
    clock.set(NOW - 3 * DAY)
    # The attacker's run: the clock set back, many events journaled with that time.
    with door(tmp_path, clock) as d:
        for _ in range(3):
            d.present_uid(STAFF_UID)
        assert d.agent.status()["clock_trusted"] is False
    with door(tmp_path, clock) as d:  # the journal head is 3 days back now: the meta row holds
        assert d.present_qr(expired_two_days_ago())["reason"] == "clock_untrusted"
        assert d.agent.status()["time_floor"]["floor"] >= NOW - 60
    # NTP says "synchronised" with the clock still back (a spoofed NTP answer on the
    # LAN is how a clock is set back): it raises the floor, it never vouches below it.
    with door(tmp_path, clock, ntp=lambda: True) as d:
        assert d.present_qr(expired_two_days_ago())["reason"] == "clock_untrusted"


@pytest.mark.processes
def test_a_heartbeat_from_the_real_central_sets_the_floor(tmp_path: Path) -> None:
    """A first boot 3 days behind (empty journal, nothing local to compare with): the
    central's heartbeat says what time it is, and the expired badge stays refused."""
    real_now = time.time()
    with CentralProcess(tmp_path / "central") as central, central.admin() as admin:
        admin.put_badge(
            uid=CONTRACTOR_UID,
            holder="Carl Contractor",
            kind="uid",
            doors=["gate-a"],
            not_after=int(real_now - 2 * DAY),
        )
        config = make_sync_config(tmp_path / "a", central.url, device="late-pi")
        enroll_with(admin, config)
        config.paths.state_dir.mkdir(parents=True, exist_ok=True)
        clock = TestClock(real_now - 3 * DAY)
        store = Store.open(StoreSettings(path=config.paths.database), clock=clock)
        devices = open_devices(config.hardware, camera=False)
        agent = Agent(
            config,
            store,
            devices,
            wall_clock=clock.now,
            ntp_synced=lambda: False,
            link=lambda agent: CentralLink(agent, config, wall_clock=clock.now),
        )
        link = agent.link
        assert isinstance(link, CentralLink)
        link.start()
        try:
            wait_until(lambda: agent.status()["sync"]["cursor"] is not None, what="sync")
            wait_until(lambda: agent.status()["clock_trusted"] is False, what="floor")
            assert agent.status()["time_floor"]["source"] == "central"
            refused = agent.present(Credential.badge(bytes.fromhex(CONTRACTOR_UID)))
            assert (refused["granted"], refused["reason"]) == (False, "clock_untrusted")
            # The clock is fixed: the next heartbeat finds it right, the alarm clears.
            clock.set(time.time())
            wait_until(lambda: agent.status()["clock_trusted"], what="trusted again")
            again = agent.present(Credential.badge(bytes.fromhex(CONTRACTOR_UID)))
            assert again["reason"] == "expired"
        finally:
            agent.close()
            link.stop()
            devices.close()
            store.close()


def test_the_central_vouches_for_a_clock_below_a_floor_that_ran_ahead(tmp_path: Path) -> None:
    """A clock that once ran a month ahead left a journal (and floor) in the future: the
    central, whose time agrees with our wall clock, resets the floor."""
    clock = TestClock(NOW + 30 * DAY)
    with door(tmp_path, clock, delta=contractor_delta()):
        pass  # one run with the clock a month ahead: its journal sets the floor there
    clock.set(NOW)
    with door(tmp_path, clock) as d:
        valid = invite(KEY, not_before=int(NOW - 60), expires=int(NOW + 3600))
        assert d.present_qr(valid)["reason"] == "clock_untrusted"
        # A heartbeat whose server time is 2 s ahead of ours: within the tolerance.
        d.agent.note_central_time(int((NOW + 2) * 1000), 2000.0)
        assert d.agent.status()["clock_trusted"] is True
        assert d.present_qr(valid)["granted"] is True
        reset = d.events("clock.floor_reset")
        assert len(reset) == 1 and reset[0]["by"] == "central"
        assert reset[0]["from_ms"] > (NOW + 29 * DAY) * 1000
        assert d.clock_alarms() == ["raised", "cleared"]
        # A central that says we are 3 days off does not vouch (and sets no floor back).
        d.agent.note_central_time(int((NOW + 3 * DAY) * 1000), 3 * DAY * 1000)
        assert d.agent.status()["clock_trusted"] is False


def test_staleness_is_measured_from_the_floor(tmp_path: Path) -> None:
    """With the clock set back a stale cache would look fresh (even synced "in the
    future"): a door with a staleness limit measures from the floor."""
    clock = TestClock(NOW)
    sections = {"door": {"accept_uid": True, "max_offline_staleness_s": 3600}}
    with door(tmp_path, clock, delta=contractor_delta(), **sections) as d:
        assert d.present_uid(STAFF_UID)["granted"] is True  # synced at NOW: fresh
    clock.set(NOW + 2 * 3600)  # two hours offline, the limit is one
    with door(tmp_path, clock, **sections) as d:
        assert d.present_uid(STAFF_UID)["reason"] == "cache_stale"
    clock.set(NOW - 3 * DAY)  # ... so the clock is set back
    with door(tmp_path, clock, **sections) as d:
        assert d.present_uid(STAFF_UID)["reason"] == "cache_stale"


def test_default_expiry_skew_is_what_ntp_clocks_need(tmp_path: Path) -> None:
    """60 s, not 300: an invitation that expired two minutes ago is refused."""
    config = parse_config({"device": {"id": "d", "site": "hq"}, "door": {"id": "gate-a"}}, tmp_path)
    assert config.door.max_clock_skew_s == 60.0
    assert DoorPolicy(site="hq", door="gate-a").max_skew_s == 60.0
    clock = TestClock(NOW)
    with door(tmp_path, clock, delta=contractor_delta()) as d:
        late = invite(KEY, not_before=int(NOW - 3600), expires=int(NOW - 120))
        assert d.present_qr(late)["reason"] == "expired"


# -- 11: the local API cannot be starved ---------------------------------------------------

#: The agent's open-files limit in these tests: systemd's default soft limit, made hard
#: so the agent cannot raise it: only the connection cap keeps descriptors free.
AGENT_NOFILE = 1024
ATTACK_CONNECTIONS = 1100


@contextmanager
def agent_process(config: AgentConfig, nofile: int = AGENT_NOFILE) -> Iterator[subprocess.Popen]:
    """``edge-agent run`` with RLIMIT_NOFILE = ``nofile`` (soft and hard), ready to answer."""
    assert config.source is not None
    log_path = config.source.parent / "agent.log"

    # The limit is set in the child right before it becomes the agent (no preexec_fn).
    limit = (
        "import os, resource, sys; n = int(sys.argv[1]); "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                limit,
                str(nofile),
                EDGE_AGENT,
                "-v",
                "run",
                "--config",
                str(config.source),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        client = AgentClient(config.paths.socket, timeout=5)
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                client.status()
                break
            except AgentUnavailable:
                assert time.monotonic() < deadline, "the agent did not start"
                time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle_connections(path: Path, count: int) -> list[socket.socket]:
    """``count`` connections to the socket that never send a byte (the attacker)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 512:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
    held: list[socket.socket] = []
    deadline = time.monotonic() + 30
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        while True:
            try:
                sock.connect(str(path))
                break
            except BlockingIOError:  # the listen backlog is full: retry as it drains
                if time.monotonic() > deadline:
                    break
                time.sleep(0.001)
        held.append(sock)
    return held


class Stream:
    """The kiosk's event stream, read in a thread."""

    def __init__(self, path: Path) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(path,), daemon=True)
        self._thread.start()

    def _read(self, path: Path) -> None:
        with contextlib.suppress(Exception):
            for event in AgentClient(path).events(timeout=120):
                self.events.put(event)

    def wait_for(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} {match} on the event stream"
            event = self.events.get(timeout=left)
            if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event


@pytest.mark.processes
def test_1100_idle_connections_starve_neither_the_kiosk_nor_the_uplink(tmp_path: Path) -> None:
    """The review's attack: 1,100 idle connections on the socket of an agent with the
    default open-files limit. The kiosk's status and decisions still answer within a
    second or two, its event stream keeps flowing, the agent's descriptors stay bounded
    and the uplink still syncs: a badge revoked at the central is refused."""
    with CentralProcess(tmp_path / "central") as central, central.admin() as admin:
        admin.put_badge(uid=STAFF_UID, holder="Sam Staff", kind="uid", doors=["gate-a"])
        config = make_sync_config(tmp_path / "a", central.url, device="flooded")
        enroll_with(admin, config)
        socket_path = config.paths.socket
        with agent_process(config) as process:
            kiosk = AgentClient(socket_path, timeout=2.0)
            wait_until(lambda: kiosk.present_badge(STAFF_UID)["granted"], what="first sync")
            stream = Stream(socket_path)
            wait_until(lambda: kiosk.status()["event_streams"] >= 1, what="the event stream")
            baseline = open_fds(process.pid)

            held = idle_connections(socket_path, ATTACK_CONNECTIONS)
            try:
                assert len(held) >= 1000, "the attack could not even connect"
                # (a) the kiosk is not locked out.
                started = time.monotonic()
                assert kiosk.status()["door_id"] == "gate-a"
                assert time.monotonic() - started < 2.0
                started = time.monotonic()
                granted = kiosk.present_badge(STAFF_UID)
                assert granted["granted"] is True
                assert time.monotonic() - started < 2.0
                stream.wait_for("access.decision", seq=granted["seq"])
                # (b) the agent holds a bounded number of descriptors.
                assert open_fds(process.pid) <= baseline + 64 + 16
                # (c) the uplink still syncs: a revocation arrives, the badge is refused.
                admin.revoke_badge(STAFF_UID)
                refused = wait_until(
                    lambda: (d := kiosk.present_badge(STAFF_UID))["reason"] == "revoked" and d,
                    timeout_s=30,
                    what="the revocation",
                )
                assert refused["granted"] is False
                # A second flood while the stream is open: the stream still delivers.
                held += idle_connections(socket_path, 200)
                again = kiosk.present_badge(STAFF_UID)
                stream.wait_for("access.decision", seq=again["seq"])
                assert open_fds(process.pid) <= baseline + 64 + 16
            finally:
                for sock in held:
                    sock.close()


def _raw_unix(path: Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the agent sends until it closes (or ``timeout``); and when it closed."""
    sock.settimeout(timeout)
    started = time.monotonic()
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic() - started


def _api_agent(factory: pytest.TempPathFactory, name: str, api_toml: str) -> Iterator[AgentConfig]:
    """``edge-agent run`` (no central) with these ``[api]`` keys, while the caller yields."""
    config = make_sync_config(factory.mktemp(name), None, device=name)
    assert config.source is not None
    with config.source.open("a") as fh:
        fh.write(f"\n[api]\n{api_toml}\n")
    config = load_config(config.source)
    with agent_process(config):
        yield config


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentConfig]:
    """An agent (no central) with short [api] timeouts."""
    yield from _api_agent(
        tmp_path_factory,
        "limited",
        "header_timeout_s = 1.0\nbody_timeout_s = 1.0\nidle_timeout_s = 2.0",
    )


@pytest.mark.processes
def test_a_huge_declared_body_is_refused_at_once(limited: AgentConfig) -> None:
    sock = _raw_unix(limited.paths.socket)
    started = time.monotonic()
    sock.sendall(
        b"POST /v1/present HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(10**12).encode() + b"\r\n\r\n"
    )
    data, _ = _read_until_closed(sock, timeout=5.0)
    elapsed = time.monotonic() - started
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), data[:200]
    assert json.loads(body)["error"] == "too_large"
    assert elapsed < 1.0  # answered and closed at once, not after reading (or waiting)


@pytest.mark.processes
def test_a_request_head_sent_byte_by_byte_is_cut_off(limited: AgentConfig) -> None:
    sock = _raw_unix(limited.paths.socket)
    head = b"GET /v1/status HTTP/1.1\r\nHost: agent\r\n"
    started = time.monotonic()
    with contextlib.suppress(OSError):
        for byte in head:
            sock.sendall(bytes([byte]))
            time.sleep(0.1)
        sock.sendall(b"X-Slow: " + b"a" * 10)
    data, _ = _read_until_closed(sock, timeout=5.0)
    sock.close()
    assert data == b""  # closed, never answered
    assert time.monotonic() - started < 1.0 + 0.1 * len(head) + 1.0


@pytest.mark.processes
def test_a_body_that_never_ends_is_cut_off(limited: AgentConfig) -> None:
    sock = _raw_unix(limited.paths.socket)
    sock.sendall(
        b"POST /v1/present HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"qr": '
    )
    data, closed_after = _read_until_closed(sock, timeout=5.0)
    sock.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert closed_after < 3.0


@pytest.mark.processes
def test_an_idle_connection_is_closed(limited: AgentConfig) -> None:
    sock = _raw_unix(limited.paths.socket)
    _, closed_after = _read_until_closed(sock, timeout=6.0)
    sock.close()
    assert closed_after < 4.0  # idle_timeout_s = 2


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentConfig]:
    """An agent (no central) with room for 8 connections and a patient body timeout."""
    yield from _api_agent(tmp_path_factory, "small", "max_connections = 8\nbody_timeout_s = 60.0")


@pytest.mark.processes
def test_slow_bodies_do_not_keep_the_kiosk_out(small: AgentConfig) -> None:
    """Connections whose request waits for a body that trickles in are not "busy": they
    are closed to make room, so the kiosk's requests still get through."""
    held = []
    try:
        for _ in range(20):
            sock = _raw_unix(small.paths.socket)
            sock.sendall(
                b"POST /v1/present HTTP/1.1\r\nHost: agent\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
            held.append(sock)
        time.sleep(0.3)  # every head parsed: 20 handlers waiting for their bodies
        kiosk = AgentClient(small.paths.socket, timeout=2.0)
        started = time.monotonic()
        assert kiosk.status()["door_id"] == "gate-a"
        assert kiosk.present_badge(STAFF_UID)["reason"] in ("granted", "unknown_badge")
        assert time.monotonic() - started < 2.0
    finally:
        for sock in held:
            sock.close()


@pytest.mark.processes
def test_the_agent_raises_its_open_files_limit() -> None:
    """systemd's default soft limit (1024) is raised to the hard limit at start-up."""
    code = (
        "import resource\n"
        "from edge_agent.service import raise_fd_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))\n"
        "print(raise_fd_limit(64), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4096", "4096"]
