"""The store's reads for the security pages (central/store/monitor.py) on both backends:
live events with the names they concern, alarms and their acknowledgements, the devices'
overview, the technical log and the self-test reports kept over time (schema 9)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from central.errors import BadRequest, NotFound
from central.settings import CentralSettings
from central.store import CentralStore
from central.testing import ChainBuilder

pytestmark = pytest.mark.processes  # PostgreSQL: a real server the tests start

NOW_MS = 1_900_000_000_000


def test_security_reads_on_each_backend(tmp_path: Path, central_db: Callable[[], str | None]):
    clock = [NOW_MS]
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db())
    with CentralStore(settings, clock=lambda: clock[0]) as store:
        token = store.create_enroll_token(door="gate-a")["enroll_token"]
        store.enroll({"enroll_token": token, "device_id": "dev-a"})
        invitation = store.create_invitation(
            {
                "visitor": "Ada Lovelace",
                "host": "Charles",
                "doors": ["gate-a"],
                "not_before": NOW_MS // 1000 - 60,
                "expires": NOW_MS // 1000 + 3600,
            }
        )["invitation"]
        chain = ChainBuilder()
        store.upload_events(
            "dev-a",
            [
                chain.event(
                    "access.decision",
                    {"granted": True, "kind": "qr", "credential_id": invitation["id"]},
                    wall_ms=NOW_MS - 2000,
                ),
                chain.event("alarm.raised", {"alarm": "tamper"}, wall_ms=NOW_MS - 1000),
            ],
        )
        clock[0] += 5000
        store.upload_events(
            "dev-a",
            [chain.event("sync.alarm", {"code": "backlog", "state": "raised"}, wall_ms=NOW_MS)],
        )

        events = store.live_events(limit=10)
        assert [e["type"] for e in events] == ["sync.alarm", "alarm.raised", "access.decision"]
        assert events[-1]["name"] == "Ada Lovelace"  # the invitation's visitor
        assert events[-1]["door"] == "gate-a" and events[-1]["key"] == "dev-a:1"
        assert [e["type"] for e in store.live_events(since_ms=NOW_MS + 1000)] == ["sync.alarm"]
        # The live page's filter: by door (the device's), by group of event types.
        alarms = store.live_events(group="alarms")
        assert [e["type"] for e in alarms] == ["sync.alarm", "alarm.raised"]
        assert [e["type"] for e in store.live_events(group="access")] == ["access.decision"]
        assert store.live_events(group="guards") == []
        assert len(store.live_events(door="gate-a")) == 3
        assert store.live_events(door="gate-b") == []
        assert store.live_events(door="gate-a", group="alarms") == alarms
        with pytest.raises(BadRequest, match="group"):
            store.live_events(group="everything")

        # Alarms: what the latest heartbeat lists; acknowledged once, with a note.
        assert store.active_alarms() == []
        store.heartbeat(
            "dev-a",
            {
                "sent_at_ms": NOW_MS,
                "backlog": {"pending": 7},
                "clock_offset_ms": 12,
                "alarms": [{"code": "door.tamper", "since_ms": NOW_MS - 1000, "detail": "x"}],
            },
            clock[0],
        )
        [alarm] = store.active_alarms()
        assert (alarm["device_id"], alarm["code"], alarm["ack"]) == ("dev-a", "door.tamper", None)
        with pytest.raises(BadRequest):
            store.acknowledge_alarm("dev-a", "door.tamper", NOW_MS - 1000, "olivia", "  ")
        with pytest.raises(NotFound):
            store.acknowledge_alarm("dev-a", "door.tamper", NOW_MS + 60_000, "olivia", "other")
        with pytest.raises(NotFound):
            store.acknowledge_alarm("nope", "door.tamper", NOW_MS - 1000, "olivia", "no device")
        ack = store.acknowledge_alarm("dev-a", "door.tamper", NOW_MS - 1000, "olivia", "checked")
        assert ack["operator"] == "olivia" and ack["at_ms"] == clock[0]
        with pytest.raises(BadRequest):
            store.acknowledge_alarm("dev-a", "door.tamper", NOW_MS - 1000, "olivia", "again")
        assert store.active_alarms()[0]["ack"] == {
            "operator": "olivia",
            "at_ms": clock[0],
            "note": "checked",
        }
        # A door's alarm comes back with since_ms worked out again from its age: the same
        # raise, still acknowledged; a raise a minute later is a new one.
        for since, acked in ((NOW_MS - 1003, True), (NOW_MS + 60_000, False)):
            store.heartbeat(
                "dev-a",
                {"sent_at_ms": NOW_MS, "alarms": [{"code": "door.tamper", "since_ms": since}]},
                clock[0],
            )
            assert (store.active_alarms()[0]["ack"] is not None) is acked
            if acked:
                with pytest.raises(BadRequest):
                    store.acknowledge_alarm("dev-a", "door.tamper", since, "olivia", "again")
        store.heartbeat(
            "dev-a",
            {
                "sent_at_ms": NOW_MS,
                "backlog": {"pending": 7},
                "alarms": [{"code": "door.tamper", "since_ms": NOW_MS - 1000, "detail": "x"}],
            },
            clock[0],
        )

        # Self-tests: every report is kept (the latest stays the admin API's).
        store.put_selftest("dev-a", {"ok": True, "results": []}, clock[0] - 10)
        store.put_selftest(
            "dev-a",
            {"ok": False, "results": [{"component": "relay", "check": "io", "status": "fail"}]},
            clock[0],
        )
        reports = store.selftest_reports("dev-a")
        assert [r["ok"] for r in reports] == [False, True]
        assert store.selftest("dev-a")["ok"] is False
        with pytest.raises(NotFound):
            store.selftest_reports("nope")

        [device] = store.devices_overview()
        assert device["last_contact_ms"] == clock[0]
        assert device["heartbeat"]["backlog"]["pending"] == 7
        assert device["selftest"] == {"ok": False, "received_at_ms": clock[0]}

        log = store.technical_log(device_id="dev-a")
        assert [(e["kind"], e["code"]) for e in log] == [
            ("alarm.raised", "tamper"),
            ("sync.alarm", "backlog raised"),
            ("selftest", "ok"),
            ("selftest", "failed"),
            ("alarm.console_ack", "door.tamper"),
        ]
        assert log[3]["detail"] == "relay/io"
        assert log[4]["detail"] == "olivia: checked"
        assert store.technical_log(device_id="other") == []
        assert store.technical_log(since_ms=clock[0] + 1) == []


def test_event_groups_match_as_sql_like_does():
    """The SQL filter matches ``LIKE 'prefix%'``: a prefix holding a wildcard would match
    more than :func:`event_in_group` does (the stream's filter)."""
    from central.store.monitor import EVENT_GROUPS, event_in_group

    for group, prefixes in EVENT_GROUPS.items():
        for prefix in prefixes:
            assert "%" not in prefix and "_" not in prefix, (group, prefix)
            assert event_in_group(prefix + "x", group)
    assert event_in_group("anything", None)
    assert not event_in_group("guard.login", "alarms")
