"""The whole agent (``edge-agent run``) against the reference central, end to end.

Enrollment while the agent runs, the heartbeat the central keeps, key rotation
without a restart, a door refusing offline decisions past its staleness limit, a
single-use invitation used at one door and refused at another, and door settings
pushed by the central.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from central.admin import CentralAdmin
from central.testing import CentralProcess
from tests.support.sync_rig import (
    EDGE_AGENT,
    STAFF_UID,
    assert_exactly_once,
    device_summary,
    enroll_with,
    make_config,
    running_agent,
    synced_up,
    wait_until,
)

pytestmark = pytest.mark.processes


@pytest.fixture
def central(central_per_test: CentralProcess) -> CentralProcess:
    """Each test enrolls into a central of its own (conftest's ``central`` is one per module)."""
    return central_per_test


def _caught_up(agent: Any, admin: CentralAdmin) -> bool:
    """True once the agent's cache is at the central's newest cursor."""
    sync = agent.status()["sync"] or {}
    return sync.get("cursor") == admin.info()["deltas_cursor"]


def test_enrolling_while_running_starts_the_sync(central: CentralProcess, tmp_path: Path) -> None:
    config = make_config(tmp_path / "a", central.url, device="late-door")
    with central.admin() as admin, running_agent(config) as agent:
        admin.put_badge(uid=STAFF_UID, holder="Sam Staff", doors=["gate-a"], kind="uid")
        status = wait_until(
            lambda: (s := agent.status())["sync"]["alarms"] and s, what="not_enrolled alarm"
        )
        assert status["online"] is False and status["sync"]["enrolled"] is False
        assert [a["code"] for a in status["sync"]["alarms"]] == ["not_enrolled"]
        denied = agent.client.present_badge(STAFF_UID)  # the cache is empty until enrolled
        assert denied["granted"] is False and denied["reason"] == "unknown_badge"
        token = admin.create_enroll_token("gate-a")["enroll_token"]
        done = subprocess.run(
            [EDGE_AGENT, "enroll", "--config", str(config.source), "--token", token],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        wait_until(lambda: agent.status()["online"], what="online after enrollment")
        wait_until(lambda: _caught_up(agent, admin), what="first sync")
        assert agent.client.present_badge(STAFF_UID)["granted"] is True
        wait_until(lambda: synced_up(admin, config), what="upload")
        assert agent.status()["sync"]["alarms"] == []
        assert_exactly_once(admin, config)  # including what was journaled before enrolling
    alarms = [e.payload for e in _events(config, "sync.alarm")]
    assert alarms[:2] == [
        {"alarm": "not_enrolled", "state": "raised", "detail": alarms[0]["detail"]},
        {"alarm": "not_enrolled", "state": "cleared"},
    ]


def test_heartbeat_reports_health_to_the_central(central: CentralProcess, tmp_path: Path) -> None:
    config = make_config(tmp_path / "a", central.url, device="beating-door")
    with central.admin() as admin:
        enroll_with(admin, config)
        with running_agent(config) as agent:
            wait_until(lambda: agent.status()["online"], what="online")
            beat = wait_until(
                lambda: (
                    (device_summary(admin, "beating-door").get("last_heartbeat") or {}).get(
                        "last_sync_ms"
                    )
                    and device_summary(admin, "beating-door")["last_heartbeat"]
                ),
                what="a heartbeat after the first sync",
            )
    assert set(beat) >= {
        "sent_at_ms", "backlog", "last_sync_ms", "cache_cursor", "clock_offset_ms", "disk",
        "versions", "alarms", "doors", "uptime_s",
    }  # fmt: skip
    assert beat["backlog"]["dead_letter"] == 0
    assert beat["disk"]["free_bytes"] > 0 and beat["disk"]["db_bytes"] > 0
    assert beat["versions"]["agent"] and beat["doors"][0]["door"] == "gate-a"
    assert beat["doors"][0]["mode"] == "normal"


def test_key_rotation_without_a_restart(central: CentralProcess, tmp_path: Path) -> None:
    config = make_config(tmp_path / "a", central.url, device="rotating-door")
    with central.admin() as admin:
        enroll_with(admin, config)
        with running_agent(config) as agent:
            before = admin.create_invitation(visitor="Before", doors=["gate-a"])["token"]
            wait_until(lambda: _caught_up(agent, admin), what="sync")
            assert agent.client.present_qr(before)["granted"] is True
            pid = agent.pid
            admin.rotate_key(retire_now=True)
            after = admin.create_invitation(visitor="After", doors=["gate-a"])["token"]
            wait_until(lambda: _caught_up(agent, admin), what="the rotation")
            assert agent.client.present_qr(after)["granted"] is True
            # (The retired key still verifies within the door's clock-skew allowance:
            # test_sync_downlink checks it is refused past that.)
            assert agent.pid == pid  # same process: no restart


def test_a_door_refuses_offline_decisions_past_its_staleness_limit(
    central: CentralProcess, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path / "a",
        central.url,
        device="strict-door",
        door_settings={"max_offline_staleness_s": 2},
    )
    with central.admin() as admin:
        admin.put_badge(uid=STAFF_UID, holder="Sam Staff", doors=["gate-a"], kind="uid")
        enroll_with(admin, config)
        with running_agent(config) as agent:
            wait_until(lambda: _caught_up(agent, admin), what="sync")
            assert agent.client.present_badge(STAFF_UID)["granted"] is True
            admin.set_fault("error", endpoint="*", status=503)  # the central is down
            try:
                wait_until(
                    lambda: (agent.status()["cache_staleness_s"] or 0) > 2.5, what="staleness"
                )
                refused = agent.client.present_badge(STAFF_UID)
                assert refused["granted"] is False and refused["reason"] == "cache_stale"
                assert agent.status()["online"] is False
            finally:
                admin.clear_faults()
            wait_until(lambda: agent.status()["online"], what="back online")
            wait_until(lambda: (agent.status()["cache_staleness_s"] or 99) < 2, what="fresh cache")
            assert agent.client.present_badge(STAFF_UID)["granted"] is True
            wait_until(lambda: synced_up(admin, config), what="upload")
        assert_exactly_once(admin, config)


def test_single_use_at_one_door_is_refused_at_another(
    central: CentralProcess, tmp_path: Path
) -> None:
    door_a = make_config(tmp_path / "a", central.url, device="door-a", door="gate-a")
    door_b = make_config(tmp_path / "b", central.url, device="door-b", door="gate-b")
    with central.admin() as admin:
        enroll_with(admin, door_a)
        enroll_with(admin, door_b)
        token = admin.create_invitation(
            visitor="Grace Hopper", doors=["gate-a", "gate-b"], single_use=True
        )["token"]
        with running_agent(door_a) as a, running_agent(door_b) as b:
            wait_until(lambda: _caught_up(a, admin) and _caught_up(b, admin), what="sync")
            first = a.client.present_qr(token)
            assert first["granted"] is True
            # A uploads invitation.used; the central shares it; B pulls it.
            wait_until(lambda: synced_up(admin, door_a), what="A's upload")
            wait_until(lambda: _caught_up(b, admin), what="B's sync")
            second = b.client.present_qr(token)
            assert second["granted"] is False and second["reason"] == "replayed"
            assert a.client.present_qr(token)["reason"] == "replayed"
    used = [e.payload for e in _events(door_a, "invitation.used")]
    assert used == [{"invitation_id": first["credential_id"], "door": "gate-a",
                     "expires": used[0]["expires"]}]  # fmt: skip


def test_door_settings_from_the_central(central: CentralProcess, tmp_path: Path) -> None:
    config = make_config(tmp_path / "a", central.url, device="managed-door")
    with central.admin() as admin:
        admin.put_badge(uid=STAFF_UID, holder="Sam Staff", doors=["gate-a"], kind="uid")
        enroll_with(admin, config)
        with running_agent(config) as agent:
            wait_until(lambda: _caught_up(agent, admin), what="sync")
            admin.put_door_settings("gate-a", {"mode": "lockdown"})
            wait_until(lambda: agent.status()["door"]["mode"] == "lockdown", what="lockdown")
            assert agent.client.present_badge(STAFF_UID)["reason"] == "lockdown"
            admin.put_door_settings("gate-a", {"mode": "normal", "accept": ["qr"]})
            wait_until(lambda: agent.status()["door"]["mode"] == "normal", what="normal")
            assert agent.client.present_badge(STAFF_UID)["reason"] == "uid_not_allowed"
        # Kept across a restart: the cursor has moved on, the settings file has them.
        with running_agent(config) as agent:
            assert agent.client.present_badge(STAFF_UID)["reason"] == "uid_not_allowed"
    changes = [e.payload for e in _events(config, "mode.changed")]
    assert [(c["mode"], c["by"]) for c in changes] == [
        ("lockdown", "central"),
        ("normal", "central"),
    ]


def _events(config: Any, kind: str) -> list[Any]:
    from tests.support.sync_rig import journal_events

    return [e for e in journal_events(config) if e.type == kind]
