"""Issue #18.4: a request its caller abandoned is never acted on, however late it is read.

A real ``edge-agent run`` is stopped (SIGSTOP: what a hung agent looks like from the
kiosk, inside the watchdog's window) while the kiosk's client presents a valid
invitation with a short timeout; the client gives up; the agent resumes and reads
the request. Before the deadline header, the door unlocked then, seconds after the
visitor was told the check failed.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from edge_agent.client import DEADLINE_HEADER, AgentClient, AgentUnavailable, ApiError
from edge_agent.store import Store, StoreSettings
from tests.edge_agent.test_local_api import GUARD_PIN, GUARD_UID, invite_now, start_agent

pytestmark = pytest.mark.processes


def _journal(database: Path) -> list:
    with Store.open(StoreSettings(path=database), read_only=True) as store:
        return store.journal.events()


def _present_while_stopped(agent, call) -> None:
    """Run ``call`` (which must give up) while the agent is stopped, then resume it."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            failures.append(exc)

    agent.process.send_signal(signal.SIGSTOP)
    try:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join(10)
        assert not worker.is_alive()
    finally:
        agent.process.send_signal(signal.SIGCONT)
    assert failures and isinstance(failures[0], AgentUnavailable), failures


def test_a_presentation_abandoned_during_a_hang_never_opens_the_door(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "a")
    try:
        impatient = AgentClient(agent.socket, timeout=1.0)
        token = invite_now("inv-abandoned", single_use=True)
        _present_while_stopped(agent, lambda: impatient.present_qr(token, source="kiosk-camera"))
        time.sleep(1.5)  # the agent reads the request now
        status = agent.client.status()
        assert status["door"]["unlocked"] is False
        events = _journal(agent.database)
        kinds = [e.type for e in events]
        assert "door.unlocked" not in kinds
        assert "access.decision" not in kinds  # not decided: the single use is not spent
        expired = [e for e in events if e.type == "access.request_expired"]
        assert len(expired) == 1 and expired[0].payload["request"] == "present"
        assert expired[0].payload["late_ms"] > 0
        # The visitor tries again (the kiosk asks again): the invitation still works.
        assert agent.client.present_qr(token)["granted"] is True
    finally:
        agent.stop()


def test_an_opening_abandoned_during_a_hang_is_refused(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "b")
    try:
        client = agent.client
        answer = client.present_qr(invite_now("inv-later"), open_mode="on_request")
        grant = answer["grant"]["id"]
        impatient = AgentClient(agent.socket, timeout=1.0)
        _present_while_stopped(agent, lambda: impatient.open_grant(grant))
        time.sleep(1.5)
        assert client.status()["door"]["unlocked"] is False
        events = _journal(agent.database)
        assert "door.unlocked" not in [e.type for e in events]
        expired = [e for e in events if e.type == "access.request_expired"]
        assert [e.payload["request"] for e in expired] == ["open_grant"]
        assert client.open_grant(grant)["opened"] is True  # asked again in time: opens
    finally:
        agent.stop()


def test_a_request_past_its_deadline_gets_408_and_a_bad_deadline_400(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "c")
    try:
        client = agent.client
        past = str(int(time.monotonic() * 1000) - 5000)
        with pytest.raises(ApiError) as refused:
            client.request(
                "POST",
                "/v1/present",
                {"qr": invite_now("inv-past")},
                headers={DEADLINE_HEADER: past},
            )
        assert refused.value.status == 408 and refused.value.code == "request_expired"
        with pytest.raises(ApiError) as bad:
            client.request(
                "POST",
                "/v1/present",
                {"qr": invite_now("inv-bad")},
                headers={DEADLINE_HEADER: "soon"},
            )
        assert bad.value.status == 400
        kinds = [e.type for e in _journal(agent.database)]
        assert kinds.count("access.request_expired") == 1 and "access.decision" not in kinds
    finally:
        agent.stop()


def test_a_guard_action_abandoned_during_a_hang_is_refused(tmp_path: Path) -> None:
    # The console told the guard "open once" failed: it must not open 8 s later.
    agent = start_agent(tmp_path / "d", guard={"console": True, "accept_uid_login": True})
    try:
        guard = AgentClient(agent.socket, timeout=1.0)
        guard.guard_login(GUARD_UID, GUARD_PIN)
        _present_while_stopped(agent, lambda: guard.guard_action("open_once", "Delivery"))
        time.sleep(1.5)
        assert agent.client.status()["door"]["unlocked"] is False
        events = _journal(agent.database)
        kinds = [e.type for e in events]
        assert "door.unlocked" not in kinds and "guard.action" not in kinds
        expired = [e for e in events if e.type == "access.request_expired"]
        assert [e.payload["request"] for e in expired] == ["guard_action"]
        assert expired[0].payload["action"] == "open_once"
    finally:
        agent.stop()
