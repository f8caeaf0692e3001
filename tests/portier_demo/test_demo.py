"""``edge-agent demo --headless --dir DIR``: the command-line contract, end to end.

Spawned as the acceptance checks do: read its one JSON line, mint an invitation with
``portier-central invite create``, present it with ``edge-agent present``, check the
demo material the kiosk reads, log a guard in, then SIGTERM (exit 0, both children
gone) -- and SIGKILL (the children still go, through PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import selectors
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from central.admin import CentralAdmin
from edge_agent.client import AgentClient
from edge_agent.config import load_config
from kiosk import demo_material
from tests.support.sync_rig import EDGE_AGENT, wait_until

pytestmark = pytest.mark.processes

PORTIER_CENTRAL = str(Path(sys.executable).with_name("portier-central"))


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for a reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Demo:
    def __init__(self, where: Path) -> None:
        self.dir = where
        self.process = subprocess.Popen(
            [EDGE_AGENT, "demo", "--headless", "--dir", str(where)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(90):
                self.process.kill()
                pytest.fail("the demo printed nothing within 90 s")
        line = self.process.stdout.readline()
        if not line:
            pytest.fail(f"the demo exited: {self.process.wait()} {self.process.stderr.read()}")
        self.info: dict[str, Any] = json.loads(line)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(60)
        finally:
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path / "demo")
    yield running
    running.stop(signal.SIGKILL)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def test_demo_contract(demo: Demo) -> None:
    info = demo.info
    assert set(info) == {
        "central_url",
        "central_token_file",
        "console_url",
        "console_password_file",
        "door",
        "config",
        "agent_pid",
        "central_pid",
    }
    token_file = Path(info["central_token_file"])
    assert token_file == demo.dir / "central.token" and token_file.stat().st_mode & 0o077 == 0
    assert info["config"] == str(demo.dir / "agent.toml") and info["door"] == "gate-a"
    assert not gone(info["agent_pid"]) and not gone(info["central_pid"])
    config = load_config(info["config"])
    assert config.central.url == info["central_url"] and config.central.sync_interval_s <= 1
    assert config.paths.socket.parent == demo.dir and config.paths.state_dir.is_relative_to(
        demo.dir
    )
    # The web console: its address, and the demo operator's password in a 0600 file.
    password_file = Path(info["console_password_file"])
    assert password_file == demo.dir / "console.password"
    assert password_file.stat().st_mode & 0o077 == 0 and len(password_file.read_text()) > 12
    assert info["console_url"] == info["central_url"] + "/console/"
    with urllib.request.urlopen(info["console_url"] + "login", timeout=10) as page:
        assert page.status == 200 and "Portier console" in page.read().decode()

    minted = run(
        PORTIER_CENTRAL, "invite", "create", "--url", info["central_url"],
        "--token-file", info["central_token_file"],
        "--visitor", "Ada Lovelace", "--door", info["door"],
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    agent = AgentClient(config.paths.socket, timeout=10)
    operator_token = token_file.read_text().strip()
    with CentralAdmin(info["central_url"], token=operator_token) as admin:
        head = admin.info()["deltas_cursor"]
        wait_until(lambda: agent.status()["sync"]["cursor"] == head, 15, "the new invitation")
    presented = run(EDGE_AGENT, "present", "--config", info["config"], "--qr", token)
    assert presented.returncode == 0, presented.stderr
    decision = json.loads(presented.stdout)
    assert decision["granted"] is True and decision["reason"] == "granted"

    # The kiosk's demo material: each entry gets the answer it announces.
    material = demo_material.load(demo.dir)
    for invitation in material.invitations:
        answer = agent.present_qr(invitation.token)
        assert answer["reason"] == invitation.expect, invitation.label
    for badge in material.badges:
        assert agent.present_badge(badge.uid)["reason"] == badge.expect, badge.label
    assert material.guard is not None
    session = agent.guard_login(material.guard.uid, material.guard.pin)
    assert session["name"] == "Gail Guard"

    assert demo.stop(signal.SIGTERM) == 0
    assert gone(info["agent_pid"]) and gone(info["central_pid"])


def test_children_do_not_outlive_a_killed_demo(demo: Demo) -> None:
    pids = demo.info["agent_pid"], demo.info["central_pid"]
    demo.stop(signal.SIGKILL)
    wait_until(lambda: all(gone(pid) for pid in pids), 30, "the children to stop")


@pytest.mark.ui
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run")
def test_demo_with_the_kiosk_ends_when_the_kiosk_is_closed(tmp_path: Path) -> None:
    where = tmp_path / "demo"
    process = subprocess.Popen(
        ["xvfb-run", "-a", "-s", "-screen 0 800x480x24", EDGE_AGENT, "demo", "--dir", str(where)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        kiosk = wait_until(lambda: _kiosk_of(where), 60, "the kiosk process")
        log = where / "kiosk.log"
        wait_until(lambda: "agent reachable" in log.read_text(), 60, "the kiosk on the agent")
        kiosk.terminate()  # the person closes the kiosk
        assert process.wait(60) == 0
        assert gone(info["agent_pid"]) and gone(info["central_pid"]) and gone(kiosk.pid)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _kiosk_of(demo_dir: Path) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "--demo" in cmdline and str(demo_dir) in cmdline and any("kiosk" in a for a in cmdline):
            return proc
    return None
