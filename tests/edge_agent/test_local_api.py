"""The local API for real: ``edge-agent run`` in its own process, on a real Unix socket.

The test process (and ``edge-agent present|status|journal verify`` subprocesses)
call it as the kiosk and the acceptance checks do: through
:class:`edge_agent.client.AgentClient`, raw HTTP for malformed requests, and the
CLI. The configuration is the packaged simulator configuration with its paths
moved under ``tmp_path``.

One agent serves the module's read-mostly tests (each leaves the door in normal
mode); tests that stop or break an agent start their own.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import queue
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edge_agent.api import make_app
from edge_agent.client import AgentClient, AgentUnavailable, ApiError
from edge_agent.config import load_config, simulator_config_path
from edge_agent.store import Badge, Delta, Invitation, Store, StoreSettings
from portier_common.passes import new_pass_id
from portier_common.tokens import InvitationClaims, mint
from tests.edge_agent.test_agent import (
    FILE_KEY,
    GUARD_PIN,
    GUARD_UID,
    JPEG,
    KEY,
    META_KEY,
    NTAG_UID,
    STAFF_UID,
    base_delta,
    sun_url,
)

pytestmark = pytest.mark.processes

EDGE_AGENT = str(Path(sys.executable).with_name("edge-agent"))
LOCKED_GUARD_UID = "04C0FFEE000002"  # the lockout test's own guard, so others can log in
START_TIMEOUT_S = 30.0


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    raise TypeError(value)


def write_config(where: Path, socket_mode: int = 0o660, **sections: dict[str, Any]) -> Path:
    """The simulator configuration, paths under ``where``, ``sections`` keys added.

    Written as text from the packaged file (so whatever the simulator config
    holds is what runs here), minus the camera and QR decoder the agent never
    opens.
    """
    tables: dict[str, list[str]] = {"": []}
    current = ""
    for line in simulator_config_path().read_text().splitlines():
        if line.startswith("["):
            current = line.strip()[1:-1]
            tables[current] = []
        else:
            tables[current].append(line)
    for dropped in ("hardware.camera", "hardware.qr"):
        del tables[dropped]
    tables["paths"] = [
        f"state_dir = {_toml(str(where / 'state'))}",
        f"socket = {_toml(str(where / 'run' / 'agent.sock'))}",
        f"socket_mode = 0o{socket_mode:o}",
    ]
    tables["ntag424"] = [
        f"meta_read_key = {_toml(META_KEY.hex())}",
        f"file_read_key = {_toml(FILE_KEY.hex())}",
    ]
    tables["hardware.nfc"].append("debounce = 0")
    for name, values in sections.items():
        lines = tables.setdefault(name, [])
        lines[:] = [line for line in lines if line.partition("=")[0].strip() not in values]
        lines.extend(f"{k} = {_toml(v)}" for k, v in values.items())
    text = "\n".join(
        "\n".join(([f"[{name}]"] if name else []) + lines) for name, lines in tables.items()
    )
    path = where / "agent.toml"
    where.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def fill_cache(config_path: Path) -> None:
    """Give the agent's store the base delta plus a second guard, before the agent starts."""
    cfg = load_config(config_path)
    cfg.paths.state_dir.mkdir(parents=True, exist_ok=True)
    guard = next(b for b in base_delta().badges if b.holder == "Gail Guard")
    with Store.open(StoreSettings(path=cfg.paths.database, reserve_bytes=0)) as store:
        store.cache.apply_delta(base_delta())
        store.cache.apply_delta(
            Delta(
                cursor="c-2",
                # Another guard (one lockout per guard: locking Larry must not lock Gail).
                badges=[
                    Badge(
                        LOCKED_GUARD_UID,
                        "uid",
                        "Larry Locked",
                        data={**(guard.data or {}), "guard_id": "g-8"},
                    )
                ],
                invitations=[Invitation("inv-api-once", "Carla Checkin")],
            )
        )


@dataclass
class Served:
    """A running ``edge-agent run`` process and how to reach it."""

    config: Path
    socket: Path
    database: Path
    process: subprocess.Popen
    log: Path

    @property
    def client(self) -> AgentClient:
        return AgentClient(self.socket, timeout=10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_agent(where: Path, env: dict[str, str] | None = None, **sections: Any) -> Served:
    """Start ``edge-agent run`` on a fresh, filled store; return once it answers."""
    config = write_config(where, **sections)
    fill_cache(config)
    return run_agent(config, where / "agent.log", env=env)


def run_agent(
    config: Path,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    wrap: Callable[[list[str]], list[str]] = lambda argv: argv,
) -> Served:
    """Run ``edge-agent run --config CONFIG`` (its command line passed through ``wrap``,
    e.g. into a mount namespace), output to ``log``; return once it answers."""
    cfg = load_config(config)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    child_env.update(env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            wrap([EDGE_AGENT, "run", "--config", str(config)]),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env,
        )
    served = Served(config, cfg.paths.socket, cfg.paths.database, process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"edge-agent run exited with {process.returncode}:\n{served.output()}")
        try:
            served.client.status()
            return served
        except AgentUnavailable:
            time.sleep(0.05)
    served.stop(signal.SIGKILL)
    pytest.fail(f"edge-agent run did not answer within {START_TIMEOUT_S} s:\n{served.output()}")


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``edge-agent ARGS`` as the acceptance checks do."""
    return subprocess.run(
        [EDGE_AGENT, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def raw(
    served: Served, method: str, path: str, body: bytes | None = None, token: str | None = None
) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
    """One HTTP request with exactly these bytes; returns (status, JSON body, response)."""
    conn = _UnixHTTP(served.socket)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    assert response.getheader("Content-Type", "").startswith("application/json"), data[:200]
    return response.status, json.loads(data), response


def invite_now(invitation_id: str, single_use: bool = False) -> str:
    now = int(time.time())
    claims = InvitationClaims(
        invitation_id=invitation_id,
        visitor="Ada Lovelace",
        host="Charles Babbage",
        site="hq",
        not_before=now - 600,
        expires=now + 3600,
        single_use=single_use,
        doors=("gate-a",),
    )
    return mint(claims, KEY)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)


_counter = iter(range(100, 10_000_000))


def fresh_sun() -> str:
    """A SUN URL with a counter never used before in this module."""
    return sun_url(next(_counter))


class EventStream:
    """``AgentClient.events()`` in a child process, each event a JSON line on stdout."""

    SCRIPT = (
        "import json, sys\n"
        "from edge_agent.client import AgentClient\n"
        "for event in AgentClient(sys.argv[1]).events(timeout=60):\n"
        "    print(json.dumps(event), flush=True)\n"
    )

    def __init__(self, served: Served) -> None:
        before = served.client.status()["event_streams"]
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(served.socket)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        while served.client.status()["event_streams"] <= before:
            assert time.monotonic() < deadline, "the event stream never opened"
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def next_of(self, *kinds: str, after: int = 0, timeout: float = 15) -> dict[str, Any]:
        """The next event of one of ``kinds`` journaled after seq ``after`` (others skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kinds} event within {timeout} s"
            event = self.events.get(timeout=left)
            assert event is not None, "the event stream ended"
            if event["type"] in kinds and event.get("seq", after + 1) > after:
                return event

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    agent = start_agent(
        tmp_path_factory.mktemp("served"),
        socket_mode=0o600,
        door={"unlock_s": 1},
        # A kiosk's agent whose test guard has a bare-UID badge; many logins in a row.
        guard={
            "console": True,
            "accept_uid_login": True,
            "max_pin_failures": 3,
            "lockout_s": 600,
            "login_attempts_per_minute": 6000,
            "login_burst": 1000,
        },
    )
    yield agent
    agent.stop()


@pytest.fixture
def guard(served: Served) -> Iterator[AgentClient]:
    """A logged-in guard client; the door is back in normal mode afterwards."""
    client = served.client
    client.guard_login(GUARD_UID, GUARD_PIN)
    yield client
    client.guard_login(GUARD_UID, GUARD_PIN)
    client.guard_action("normal", "test over")
    client.guard_logout()


# -- status and present ------------------------------------------------------------------


def test_derived_config_is_the_simulator_config(served: Served) -> None:
    cfg = load_config(served.config)
    sim = load_config(simulator_config_path())
    assert cfg.device == sim.device
    assert cfg.hardware.gpio == sim.hardware.gpio
    assert cfg.paths.socket == served.socket
    assert cfg.ntag424.configured


def test_status(served: Served) -> None:
    status = served.client.status()
    assert (status["device"], status["site"], status["door_id"]) == ("sim-gate-a", "hq", "gate-a")
    assert status["door"]["mode"] in ("normal", "lockdown", "free_access")
    assert status["reader"] is True and status["hardware_errors"] == {}
    assert status["last_sync"] is not None

    done = cli("status", "--config", str(served.config), "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["running"] is True and printed["device"] == "sim-gate-a"

    done = cli("status", "--config", str(served.config))
    assert done.returncode == 0 and "device sim-gate-a door gate-a" in done.stdout


def test_socket_file_mode_comes_from_the_config(served: Served) -> None:
    mode = served.socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_present_qr_and_badges(served: Served) -> None:
    client = served.client
    granted = client.present_qr(invite_now("inv-api-multi"), source="kiosk-camera")
    assert (granted["granted"], granted["reason"], granted["source"]) == (
        True,
        "granted",
        "kiosk-camera",
    )
    assert granted["holder"] == "Ada Lovelace" and isinstance(granted["seq"], int)

    crypto = client.present_badge(NTAG_UID, fresh_sun())
    assert (crypto["granted"], crypto["holder"]) == (True, "Nina Ntag")
    assert client.present_badge(STAFF_UID)["reason"] == "uid_not_allowed"
    assert client.present_badge("04:99:99:99")["reason"] == "unknown_badge"
    assert client.present_qr("not a token")["reason"] == "malformed"


def test_cli_present_prints_one_json_decision(served: Served) -> None:
    once = invite_now("inv-cli-once", single_use=True)
    first = cli("present", "--config", str(served.config), "--qr", once)
    assert first.returncode == 0, first.stderr
    decision = json.loads(first.stdout)
    assert (decision["granted"], decision["reason"], decision["source"]) == (True, "granted", "cli")

    again = cli("present", "--config", str(served.config), "--qr", once)
    assert again.returncode == 0  # whatever the decision
    assert json.loads(again.stdout)["reason"] == "replayed"

    badge = cli(
        "present", "--config", str(served.config), "--badge-uid", NTAG_UID, "--sun-url", fresh_sun()
    )
    assert badge.returncode == 0 and json.loads(badge.stdout)["granted"] is True
    denied = cli("present", "--config", str(served.config), "--badge-uid", STAFF_UID)
    assert denied.returncode == 0
    printed = json.loads(denied.stdout)  # exactly one JSON object, nothing else
    assert isinstance(printed, dict) and printed["granted"] is False


BAD_BODIES = [
    ("POST", "/v1/present", b"not json"),
    ("POST", "/v1/present", b"[1, 2]"),
    ("POST", "/v1/present", b"\xff\xfe{"),
    ("POST", "/v1/present", b""),
    ("POST", "/v1/present", b"{}"),
    ("POST", "/v1/present", json.dumps({"qr": "x", "badge_uid": "04"}).encode()),
    ("POST", "/v1/present", json.dumps({"qr": 5}).encode()),
    ("POST", "/v1/present", json.dumps({"qr": "x" * 5000}).encode()),
    ("POST", "/v1/present", json.dumps({"badge_uid": "zz"}).encode()),
    ("POST", "/v1/present", json.dumps({"badge_uid": ""}).encode()),
    ("POST", "/v1/present", json.dumps({"badge_uid": "00" * 17}).encode()),
    ("POST", "/v1/present", json.dumps({"badge_uid": ["04"]}).encode()),
    ("POST", "/v1/present", json.dumps({"badge_uid": "04", "sun_url": 1}).encode()),
    ("POST", "/v1/guard/login", json.dumps({"badge_uid": GUARD_UID}).encode()),
    ("POST", "/v1/guard/login", json.dumps({"badge_uid": "guard!", "pin": "1"}).encode()),
    ("POST", "/v1/guard/actions", json.dumps({"action": 1, "reason": "x"}).encode()),
    ("POST", "/v1/guard/actions", json.dumps({"action": "x", "alarm": ["a"]}).encode()),
    ("POST", "/v1/checkin", json.dumps({"consent": True}).encode()),
    ("POST", "/v1/checkin", json.dumps({"invitation_id": "i", "consent": "yes"}).encode()),
    (
        "POST",
        "/v1/checkin",
        json.dumps({"invitation_id": "i", "consent": True, "photo_jpeg_b64": "%%%"}).encode(),
    ),
    (
        "POST",
        "/v1/checkin",
        json.dumps(
            {
                "invitation_id": "i",
                "consent": True,
                "photo_jpeg_b64": base64.b64encode(b"GIF89a...").decode(),
            }
        ).encode(),
    ),
    ("GET", "/v1/visitors", None),
    ("GET", "/v1/visitors?q=%20", None),
    ("POST", "/v1/sim/badge", json.dumps({"uid": "xyz"}).encode()),
    ("POST", "/v1/sim/badge", json.dumps({}).encode()),
    ("POST", "/v1/sim/door_open", b"{"),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_BODIES)
def test_bad_requests_get_400_with_a_clear_error(served, method, path, body) -> None:
    status, answer, _ = raw(served, method, path, body)
    assert status == 400, answer
    assert answer["error"] == "bad_request"
    assert answer["message"] and isinstance(answer["message"], str)


def test_guard_recent_limit_must_be_an_integer(served: Served, guard: AgentClient) -> None:
    status, answer, _ = raw(served, "GET", "/v1/guard/recent?limit=many", token=guard.token)
    assert (status, answer["error"]) == (400, "bad_request")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/v1/nothing", None, 404, "not_found"),
        ("GET", "/", None, 404, "not_found"),
        ("GET", "/v1/present", None, 405, "method_not_allowed"),
        ("POST", "/v1/status", b"{}", 405, "method_not_allowed"),
        ("POST", "/v1/sim/teleport", b"{}", 404, "unknown_action"),
        (
            "POST",
            "/v1/checkin",
            b'{"photo_jpeg_b64": "' + b"A" * (5 << 20) + b'"}',
            413,
            "too_large",
        ),
    ],
)
def test_other_errors_are_json_too(served, method, path, body, status, code) -> None:
    got, answer, response = raw(served, method, path, body)
    assert (got, answer["error"]) == (status, code)
    if status == 405:
        assert response.getheader("Allow")


def test_client_raises_api_error_with_the_code(served: Served) -> None:
    with pytest.raises(ApiError) as caught:
        served.client.request("POST", "/v1/present", {"qr": None})
    assert (caught.value.status, caught.value.code) == (400, "bad_request")


# -- the event stream ----------------------------------------------------------------------


def test_event_stream_pushes_decisions_and_door_state(served: Served) -> None:
    wait_for(lambda: not served.client.status()["door"]["unlocked"])  # earlier grants over
    stream = EventStream(served)
    try:
        decision = served.client.present_badge(NTAG_UID, fresh_sun())
        assert decision["granted"]
        got = stream.next_of("access.decision", after=decision["seq"] - 1)
        assert (got["seq"], got["reason"], got["holder"]) == (
            decision["seq"],
            "granted",
            "Nina Ntag",
        )
        unlocked = stream.next_of("door.unlocked", "door.locked", after=decision["seq"])
        assert unlocked["type"] == "door.unlocked"
        locked = stream.next_of("door.locked", after=unlocked["seq"])  # unlock_s = 1 here
        assert locked["why"] == "unlock time over"

        served.client.simulate("door_open")
        assert stream.next_of("door.opened", "door.closed")["type"] == "door.opened"
        served.client.simulate("door_close")
        assert stream.next_of("door.opened", "door.closed")["type"] == "door.closed"
    finally:
        stream.close()


# -- guards ------------------------------------------------------------------------------


def test_guard_login_wrong_pin_401_then_lockout_423(served: Served) -> None:
    client = served.client
    for _ in range(2):
        with pytest.raises(ApiError) as caught:
            client.guard_login(LOCKED_GUARD_UID, "0000")
        assert (caught.value.status, caught.value.code) == (401, "not_recognised")
    with pytest.raises(ApiError) as caught:
        client.guard_login(LOCKED_GUARD_UID, "0000")
    assert (caught.value.status, caught.value.code) == (423, "locked_out")
    with pytest.raises(ApiError) as caught:
        client.guard_login(LOCKED_GUARD_UID, GUARD_PIN)  # right PIN, still locked out
    assert caught.value.status == 423
    assert 0 < caught.value.body["retry_after_s"] <= 600
    with pytest.raises(ApiError) as caught:
        client.guard_login("04123456", GUARD_PIN)
    # the same answer as a wrong PIN: the API does not reveal which badges are guards'
    assert (caught.value.status, caught.value.code) == (401, "not_recognised")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/guard/actions", {"action": "lockdown", "reason": "x"}),
        ("GET", "/v1/guard/recent", None),
        ("GET", "/v1/visitors?q=ada", None),
        ("POST", "/v1/checkin", {"invitation_id": "inv-bob", "consent": False}),
    ],
)
def test_guard_endpoints_need_a_session(served, method, path, body) -> None:
    client = served.client
    client.token = "not-a-session"
    with pytest.raises(ApiError) as caught:
        client.request(method, path, body)
    assert caught.value.status == 401
    assert caught.value.code in ("not_logged_in", "guard_required")


def test_guard_actions_with_bearer_token(served: Served, guard: AgentClient) -> None:
    state = guard.guard_action("lockdown", "drill at 10:00")
    assert state["door"]["mode"] == "lockdown"
    assert served.client.present_qr(invite_now("inv-api-multi"))["reason"] == "lockdown"
    assert guard.guard_action("free_access", "open day")["door"]["unlocked"] is True
    assert guard.guard_action("normal", "back to normal")["door"]["mode"] == "normal"
    assert guard.guard_action("open_once", "courier")["door"]["unlocked"] is True

    with pytest.raises(ApiError) as caught:
        guard.guard_action("lockdown", "")
    assert (caught.value.status, caught.value.code) == (400, "reason_required")
    with pytest.raises(ApiError) as caught:
        guard.guard_action("acknowledge", "seen", alarm="held_open")
    assert (caught.value.status, caught.value.code) == (409, "no_such_alarm")

    recent = guard.recent(limit=20)
    actions = [(e["action"], e["why"]) for e in recent if e["type"] == "guard.action"]
    # The refused acknowledge is journaled as refused, not as an action done.
    refused = [e for e in recent if e["type"] == "guard.action_refused"]
    assert [(e["action"], e["reason_code"]) for e in refused] == [("acknowledge", "no_such_alarm")]
    assert actions[:3] == [
        ("open_once", "courier"),
        ("normal", "back to normal"),
        ("free_access", "open day"),
    ]
    assert all(e["guard_id"] == "g-7" for e in recent if e["type"] == "guard.action")
    assert [e["seq"] for e in recent] == sorted((e["seq"] for e in recent), reverse=True)


def test_guard_logout_ends_the_session(served: Served) -> None:
    client = served.client
    client.guard_login(GUARD_UID, GUARD_PIN)
    token = client.token
    client.guard_logout()
    client.token = token
    with pytest.raises(ApiError) as caught:
        client.recent()
    assert caught.value.status == 401


def test_visitors_and_manual_checkin(served: Served, guard: AgentClient) -> None:
    found = guard.visitors("ad")
    assert [v["visitor"] for v in found] == ["Ada Lovelace", "Adam Smith"]
    assert {
        "invitation_id",
        "host",
        "doors",
        "not_before",
        "not_after",
        "single_use",
        "used",
    } <= set(found[0])
    result = guard.checkin("inv-bob", consent=True, photo_jpeg=JPEG)
    assert result["checked_in"] and result["photo"]
    assert any(
        e["type"] == "visitor.checked_in"
        and e["by"] == "guard:g-7"
        and e["photo"] == result["photo"]
        for e in guard.recent(10)
    )


def test_self_checkin_after_a_grant(served: Served) -> None:
    client = served.client
    assert client.present_qr(invite_now("inv-api-once", single_use=True))["granted"]
    with pytest.raises(ApiError) as caught:
        client.checkin("inv-api-once", consent=False, photo_jpeg=JPEG)
    assert (caught.value.status, caught.value.code) == (400, "no_consent")
    result = client.checkin("inv-api-once", consent=True, photo_jpeg=JPEG)
    assert result["checked_in"] and result["photo"]
    with pytest.raises(ApiError) as caught:  # no grant for this one: needs a guard
        client.checkin("inv-bob", consent=False)
    assert (caught.value.status, caught.value.code) == (401, "guard_required")


def test_onsite_muster_and_checkouts(served: Served, guard: AgentClient) -> None:
    """Check-in puts a visitor on GET /v1/muster; the pass checks them out at the kiosk;
    a guard's check-out needs a session and a reason."""
    answer = guard.checkin("inv-once", consent=False)
    muster = guard.muster()
    entry = next(v for v in muster["visitors"] if v["invitation_id"] == "inv-once")
    assert (entry["visitor"], entry["host"]) == ("Adam Smith", "Charles Babbage")
    assert muster["fire"] is False and muster["dropped"] == 0
    status, wrong, _ = raw(
        served, "POST", "/v1/checkout", json.dumps({"pass_id": new_pass_id()}).encode()
    )
    assert (status, wrong["error"]) == (404, "unknown_pass")
    status, _body, _ = raw(
        served, "POST", "/v1/guard/checkout", json.dumps({"invitation_id": "inv-once"}).encode()
    )
    assert status in (400, 401)  # no session (and no reason)
    with pytest.raises(ApiError) as caught:
        guard.guard_checkout("inv-once", "   ")
    assert (caught.value.status, caught.value.code) == (400, "bad_request")
    status, done, _ = raw(
        served, "POST", "/v1/checkout", json.dumps({"pass_id": answer["pass_id"]}).encode()
    )
    assert (status, done["checked_out"], done["visitor"]) == (200, True, "Adam Smith")
    assert "inv-once" not in [v["invitation_id"] for v in guard.muster()["visitors"]]
    with pytest.raises(ApiError) as caught:
        guard.guard_checkout("inv-once", "left")
    assert (caught.value.status, caught.value.code) == (409, "not_on_site")
    guard.checkin("inv-once", consent=False)
    guard.guard_checkout("inv-once", "left by the back door")
    (event,) = [e for e in guard.recent(5) if e["type"] == "visitor.checked_out"][:1]
    assert (event["how"], event["reason"], event["by"]) == (
        "guard",
        "left by the back door",
        "guard:g-7",
    )


# -- simulated hardware ------------------------------------------------------------------


def test_sim_endpoints_drive_the_simulated_door_and_reader(served: Served) -> None:
    client = served.client
    assert client.simulate("door_open") == {"ok": True, "action": "door_open"}
    wait_for(lambda: client.status()["door"]["door_open"] is True)  # after the debounce
    client.simulate("door_close")
    wait_for(lambda: client.status()["door"]["door_open"] is False)

    stream = EventStream(served)
    try:
        client.simulate("badge", uid=NTAG_UID, sun_url=fresh_sun())
        decision = stream.next_of("access.decision")
        assert (decision["source"], decision["granted"]) == ("nfc", True)
        client.simulate("rex")
        assert stream.next_of("rex.pressed")
        client.simulate("tamper", on=True)
        assert stream.next_of("alarm.raised")["alarm"] == "tamper"
        client.simulate("tamper", on=False)
        assert stream.next_of("alarm.cleared")["alarm"] == "tamper"
    finally:
        stream.close()


# -- journal verify, safe-state, no agent -------------------------------------------------


def test_journal_verify_while_the_agent_runs(served: Served) -> None:
    done = cli("journal", "verify", "--config", str(served.config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "journal OK" in done.stdout


def test_journal_verify_reports_a_tampered_payload(served: Served, tmp_path: Path) -> None:
    copy_config = write_config(tmp_path)
    copy_db = load_config(copy_config).paths.database
    copy_db.parent.mkdir(parents=True)
    source = sqlite3.connect(f"file:{served.database}?mode=ro", uri=True)
    target = sqlite3.connect(copy_db)
    source.backup(target)  # a consistent snapshot of the live journal
    source.close()
    done = cli("journal", "verify", "--config", str(copy_config))
    assert done.returncode == 0, done.stdout

    seq = target.execute(
        "SELECT seq FROM events WHERE type = 'access.decision' ORDER BY seq LIMIT 1"
    ).fetchone()[0]
    target.execute(
        "UPDATE events SET payload = replace(payload, '\"granted\":false', '\"granted\":true') "
        "WHERE seq = ?",
        (seq,),
    )
    target.execute("UPDATE events SET payload = payload || ' ' WHERE seq = ?", (seq,))
    target.commit()
    target.close()
    done = cli("journal", "verify", "--config", str(copy_config))
    assert done.returncode == 1
    assert f"BROKEN at seq {seq}" in done.stdout


def test_safe_state(served: Served) -> None:
    done = cli("safe-state", "--config", str(served.config))
    assert done.returncode == 0, done.stderr
    assert "de-energised" in done.stderr


def test_present_without_an_agent_fails_clearly(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = cli("present", "--config", str(config), "--badge-uid", STAFF_UID)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no running agent answered" in done.stderr and "agent.sock" in done.stderr
    done = cli("status", "--config", str(config), "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["running"] is False


# -- life cycle (own agents) --------------------------------------------------------------


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "a", door={"unlock_s": 30})
    stream = EventStream(agent)  # an open stream must not hold the shutdown up
    try:
        decision = agent.client.present_qr(invite_now("inv-sigterm"))
        assert decision["granted"] and agent.client.status()["door"]["unlocked"] is True
        assert agent.stop(signal.SIGTERM) == 0, agent.output()
        # The agent ended the stream: the kiosk's client sees a clean end, not a broken pipe.
        assert stream.process.wait(10) == 0
    finally:
        stream.close()
    assert not agent.socket.exists()
    assert "Traceback" not in agent.output()
    with Store.open(StoreSettings(path=agent.database), read_only=True) as store:
        events = store.journal.events()
    kinds = [e.type for e in events]
    assert kinds[-1] == "agent.stopped"
    assert events[-1].payload["relay_energised"] is False
    assert kinds.index("door.unlocked") < len(kinds) - 1
    assert "door.locked" not in kinds  # still unlocked when the stop came: safe_state locked it
    done = cli("journal", "verify", "--config", str(agent.config))
    assert done.returncode == 0 and f"{len(events)} events" in done.stdout

    # Tamper with the agent's own file: the decision now says someone else came in.
    with sqlite3.connect(agent.database) as db:
        db.execute(
            "UPDATE events SET payload = replace(payload, 'Ada Lovelace', 'Eve') WHERE seq = ?",
            (decision["seq"],),
        )
    done = cli("journal", "verify", "--config", str(agent.config))
    assert done.returncode == 1
    assert f"BROKEN at seq {decision['seq']}" in done.stdout


def test_second_agent_on_the_same_socket_refuses_to_start(served: Served, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = config.read_text().replace(
        f"socket = {_toml(str(tmp_path / 'run' / 'agent.sock'))}",
        f"socket = {_toml(str(served.socket))}",
    )
    config.write_text(text)
    done = cli("run", "--config", str(config))
    assert done.returncode == 1
    assert "another agent is serving" in done.stderr
    assert served.client.status()["device"] == "sim-gate-a"  # the first one still serves


def test_second_agent_on_the_same_journal_refuses_to_start(served: Served) -> None:
    done = cli("run", "--config", str(served.config))
    assert done.returncode == 1
    assert "cannot run" in done.stderr and "Traceback" not in done.stderr
    assert served.client.status()["device"] == "sim-gate-a"


def test_every_route_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "local-api.md").read_text()
    app = make_app(agent=None)  # type: ignore[arg-type]  # routes only, nothing served
    routes = [r for r in app.router.routes() if r.method != "HEAD"]
    assert len(routes) >= 10
    for route in routes:
        assert f"`{route.method} {route.resource.canonical}`" in doc, route


# -- the OpenAPI document is true to the server -------------------------------------------

DOCS = Path(__file__).parents[2] / "docs"


def _spec() -> dict[str, Any]:
    return yaml.safe_load((DOCS / "local-api.yaml").read_text())


def _resolve(node: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def conformance(value: Any, schema: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """What in ``value`` breaks ``schema`` (JSON Schema 2020-12, as OpenAPI 3.1 uses)."""
    # The schema's $refs point into the document: validate with its components as the root.
    root = {"components": spec["components"], **schema}
    validator = jsonschema.Draft202012Validator(root)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]


def test_openapi_lists_exactly_the_servers_routes() -> None:
    spec = _spec()
    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    app = make_app(agent=None)  # type: ignore[arg-type]
    served_routes = {
        (r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"
    }
    assert documented == served_routes


def test_openapi_reason_codes_are_the_agents() -> None:
    from portier_common.reasons import Reason

    assert _spec()["components"]["schemas"]["Reason"]["enum"] == [r.value for r in Reason]


def test_answers_match_the_openapi_schemas(served: Served, guard: AgentClient) -> None:
    spec = _spec()

    def check(method: str, path: str, route: str, body: bytes | None = None, token=None) -> Any:
        status, answer, _ = raw(served, method, path, body, token=token)
        responses = spec["paths"][route][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {route}: status {status} is not documented"
        schema = _resolve(responses[str(status)], spec)["content"]["application/json"]["schema"]
        assert conformance(answer, schema, spec) == [], (method, route, answer)
        return answer

    def post(path: str, body: Any, route: str | None = None, token=None) -> Any:
        return check("POST", path, route or path, json.dumps(body).encode(), token=token)

    token = guard.token
    check("GET", "/v1/status", "/v1/status")
    post("/v1/present", {"qr": invite_now("inv-api-multi")})
    post("/v1/present", {"badge_uid": STAFF_UID})
    post("/v1/present", {"badge_uid": "zz"})
    held = post("/v1/present", {"qr": invite_now("inv-api-multi"), "open": "on_request"})
    route = "/v1/grants/{grant_id}/open"
    post(f"/v1/grants/{held['grant']['id']}/open", {}, route)
    post(f"/v1/grants/{'x' * 32}/open", {}, route)
    post("/v1/grants/short/open", {}, route)
    post("/v1/guard/login", {"badge_uid": GUARD_UID, "pin": "0000"})
    post("/v1/guard/login", {"badge_uid": GUARD_UID, "pin": GUARD_PIN})
    post("/v1/guard/actions", {"action": "lockdown", "reason": "schema"}, token=token)
    post("/v1/guard/actions", {"action": "open_once", "reason": "schema"}, token=token)
    post("/v1/guard/actions", {"action": "normal", "reason": "schema"}, token=token)
    post("/v1/guard/actions", {"action": "normal", "reason": ""}, token=token)
    post("/v1/guard/actions", {"action": "normal", "reason": "x"}, token="nope")
    check("GET", "/v1/guard/recent?limit=5", "/v1/guard/recent", token=token)
    check("GET", "/v1/visitors?q=a", "/v1/visitors", token=token)
    check("GET", "/v1/visitors?q=a", "/v1/visitors", token="nope")
    photo = base64.b64encode(JPEG).decode()
    post(
        "/v1/checkin",
        {"invitation_id": "inv-bob", "consent": True, "photo_jpeg_b64": photo},
        token=token,
    )
    post("/v1/checkin", {"invitation_id": "inv-bob", "consent": False})
    check("GET", "/v1/muster", "/v1/muster")
    post("/v1/muster/print", {"pdf_b64": "JVBERi0xLjQK"})
    post("/v1/muster/print", {"pdf_b64": "!"})
    post("/v1/checkout", {"pass_id": "x"})
    post("/v1/checkout", {"pass_id": new_pass_id()})
    post("/v1/checkout", {"invitation_id": 1})
    reissued = post("/v1/guard/passes", {"invitation_id": "inv-bob"}, token=token)
    post("/v1/guard/passes", {"invitation_id": "inv-nobody"}, token=token)
    post("/v1/guard/passes", {"invitation_id": "inv-bob"}, token="nope")
    post("/v1/checkout", {"pass_id": reissued["pass_id"]})
    post("/v1/checkout", {"pass_id": reissued["pass_id"]})
    post("/v1/checkin", {"invitation_id": "inv-bob", "consent": False}, token=token)
    post("/v1/guard/checkout", {"invitation_id": "inv-bob", "reason": ""}, token=token)
    post("/v1/guard/checkout", {"invitation_id": "inv-bob", "reason": "x"}, token="nope")
    post("/v1/guard/checkout", {"invitation_id": "inv-bob", "reason": "schema"}, token=token)
    post("/v1/guard/checkout", {"invitation_id": "inv-bob", "reason": "schema"}, token=token)
    post("/v1/sim/door_close", {}, route="/v1/sim/{action}")
    post("/v1/sim/teleport", {}, route="/v1/sim/{action}")
    post("/v1/guard/logout", {}, token="nope")
