"""The store's reads for the statistics and who is on site (central/store/stats.py), on SQLite
and PostgreSQL: counts per quarter hour over a period, refusals by reason, alarms per door,
device availability from heartbeats, and the on-site list replayed from the check-ins and
check-outs as the doors keep it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from central.settings import CentralSettings
from central.store import CentralStore
from central.store.stats import QUARTER_MS
from central.testing import ChainBuilder

pytestmark = pytest.mark.processes  # PostgreSQL: a real server the tests start

#: A quarter hour's start (2030-03-17 ...), so the buckets below are exact.
NOW_MS = (1_900_000_000_000 // QUARTER_MS) * QUARTER_MS
HOUR = 3_600_000


def _device(store: CentralStore, device_id: str, door: str, zones: list[str]) -> None:
    token = store.create_enroll_token(door=door, zones=zones)["enroll_token"]
    store.enroll({"enroll_token": token, "device_id": device_id})


def test_counts_availability_and_who_is_on_site(
    tmp_path: Path, central_db: Callable[[], str | None]
):
    clock = [NOW_MS]
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db())
    with CentralStore(settings, clock=lambda: clock[0]) as store:
        _device(store, "dev-a", "gate-a", ["north"])
        _device(store, "dev-b", "gate-b", ["north", "lab"])
        invitation = store.create_invitation(
            {
                "visitor": "Ada Lovelace",
                "host": "Charles Babbage",
                "doors": ["gate-a", "gate-b"],
                "not_before": NOW_MS // 1000 - 3600,
                "expires": NOW_MS // 1000 + 3600,
            }
        )["invitation"]
        a, b = ChainBuilder(), ChainBuilder()
        since, until = NOW_MS - 24 * HOUR, NOW_MS + HOUR
        store.upload_events(
            "dev-a",
            [
                a.event("access.decision", {"granted": True, "kind": "qr"}, wall_ms=NOW_MS - HOUR),
                a.event(
                    "access.decision", {"granted": True, "kind": "qr"}, wall_ms=NOW_MS - HOUR + 1
                ),
                # A name that holds the refusal's text is escaped in canonical JSON: a grant.
                a.event(
                    "access.decision",
                    {"granted": True, "kind": "qr", "holder": '"granted":false'},
                    wall_ms=NOW_MS,
                ),
                a.event(
                    "access.decision",
                    {"granted": False, "kind": "badge", "reason": "revoked"},
                    wall_ms=NOW_MS,
                ),
                a.event(
                    "access.decision",
                    {"granted": False, "kind": "qr", "reason": "lockdown"},
                    wall_ms=NOW_MS + 1,
                ),
                a.event(
                    "access.open_refused",
                    {"door": "gate-a", "reason_code": "lockdown"},
                    wall_ms=NOW_MS + 2,
                ),
                # Before the period: not counted.
                a.event(
                    "access.decision",
                    {"granted": False, "kind": "badge", "reason": "revoked"},
                    wall_ms=since - 1,
                ),
                a.event("alarm.raised", {"alarm": "forced_open", "door": "gate-a"}, wall_ms=NOW_MS),
                a.event("alarm.raised", {"alarm": "forced_open", "door": "gate-a"}, wall_ms=NOW_MS),
                # No door in the payload: the device's door.
                a.event("alarm.raised", {"alarm": "tamper"}, wall_ms=NOW_MS),
                # Grace checks in at gate-a (the agent's fields), then Ada, then Grace leaves.
                a.event(
                    "visitor.checked_in",
                    {
                        "invitation_id": "inv-grace",
                        "visitor": "Grace Hopper",
                        "host": "Howard Aiken",
                        "door": "gate-a",
                        "not_after": NOW_MS // 1000 + 600,
                        "by": "visitor",
                    },
                    wall_ms=NOW_MS - 2 * HOUR,
                ),
                # No name nor host: the invitation's.
                a.event(
                    "visitor.checked_in",
                    {"invitation_id": invitation["id"], "by": "guard:g1"},
                    wall_ms=NOW_MS - HOUR,
                ),
                a.event(
                    "visitor.checked_out",
                    {"invitation_id": "inv-grace", "how": "expired", "by": "agent"},
                    wall_ms=NOW_MS - HOUR + 5,
                ),
            ],
        )
        store.upload_events(
            "dev-b",
            [
                b.event(
                    "visitor.checked_in",
                    {"invitation_id": "inv-alan", "visitor": "Alan Turing", "door": "gate-b"},
                    wall_ms=NOW_MS - 30 * 60_000,
                ),
                # Checked in twice at the same door: one entry, the later one.
                b.event(
                    "visitor.checked_in",
                    {"invitation_id": "inv-alan", "visitor": "Alan Turing", "door": "gate-b"},
                    wall_ms=NOW_MS - 10 * 60_000,
                ),
                # A check-out at another door than the check-in does not empty gate-a's list.
                b.event(
                    "visitor.checked_out",
                    {"invitation_id": invitation["id"], "how": "kiosk"},
                    wall_ms=NOW_MS - 5 * 60_000,
                ),
            ],
        )

        counts = store.event_counts(since, until)
        quarter = NOW_MS // QUARTER_MS
        assert counts["entries"] == {quarter - 4: 2, quarter: 1}
        assert counts["checkins"] == {
            quarter - 8: 1,
            quarter - 4: 1,
            quarter - 2: 1,
            quarter - 1: 1,
        }
        assert sorted(counts["denies"]) == [
            ("decision", "lockdown", 1),
            ("decision", "revoked", 1),
            ("open_refused", "lockdown", 1),
        ]
        assert sorted(counts["alarms"]) == [
            ("dev-a", "gate-a", "forced_open", 2),
            ("dev-a", "gate-a", "tamper", 1),
        ]
        # The period's end is exclusive, its start inclusive.
        assert store.event_counts(NOW_MS + 3, until)["denies"] == []
        assert store.event_counts(since - 1, since)["denies"] == [("decision", "revoked", 1)]

        # Availability: heartbeats in 3 quarter hours (two in one of them) of dev-a.
        for at in (NOW_MS - HOUR, NOW_MS - HOUR + 60_000, NOW_MS - QUARTER_MS, NOW_MS + 1):
            store.heartbeat("dev-a", {"sent_at_ms": at}, at)
        clock[0] = NOW_MS + 2
        devices = {d["device_id"]: d for d in store.device_availability(NOW_MS - 2 * HOUR, until)}
        # enrolled at NOW_MS: the period counts from then, the current quarter included
        assert (devices["dev-a"]["heard"], devices["dev-a"]["quarters"]) == (3, 1)
        assert devices["dev-b"]["heard"] == 0 and devices["dev-b"]["door"] == "gate-b"

        on_site = store.on_site()
        assert [(e["door"], e["visitor"]) for e in on_site] == [
            ("gate-a", "Ada Lovelace"),
            ("gate-b", "Alan Turing"),
        ]
        ada, alan = on_site
        assert ada["host"] == "Charles Babbage" and ada["not_after"] == invitation["expires"]
        assert ada["entered_ms"] == NOW_MS - HOUR and ada["how"] == "guard:g1"
        assert ada["zones"] == ["north"] and alan["zones"] == ["north", "lab"]
        assert alan["entered_ms"] == NOW_MS - 10 * 60_000 and alan["host"] == ""


def test_the_statistics_read_through_the_index(tmp_path: Path):
    """A year of events is not read whole: each statistic's query searches schema 14's
    index on the event type and time (the page's cost stays that of the period), and who is
    on site reads the open visits and their check-ins by key, not every check-in ever."""
    with CentralStore(CentralSettings(data_dir=tmp_path / "data")) as store:
        conn = store._conn
        for call, expected in (
            (lambda: store.event_counts(0, NOW_MS), 4),
            (store.on_site, 1),
        ):
            seen: list[str] = []
            conn.set_trace_callback(seen.append)
            call()
            conn.set_trace_callback(None)
            queries = [q for q in seen if "FROM events" in q or "FROM onsite_visits" in q]
            assert len(queries) == expected
            for query in queries:
                plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query))
                assert "SCAN events" not in plan, (query, plan)
                if expected == 1:  # on site: the open visits, each check-in by its key
                    assert "SCAN v" in plan and "SEARCH e USING" in plan, (query, plan)
                else:
                    assert "USING INDEX events_kind_time" in plan, (query, plan)


def test_a_database_of_schema_13_gets_who_is_on_site_from_its_events(tmp_path: Path):
    """Schema 14 fills the open visits from the check-ins and check-outs stored before it."""
    settings = CentralSettings(data_dir=tmp_path / "data")
    with CentralStore(settings, clock=lambda: NOW_MS) as store:
        _device(store, "dev-a", "gate-a", [])
        chain = ChainBuilder()
        store.upload_events(
            "dev-a",
            [
                chain.event("visitor.checked_in", {"invitation_id": "i1", "visitor": "Ann"}),
                chain.event("visitor.checked_in", {"invitation_id": "i2", "visitor": "Bob"}),
                chain.event("visitor.checked_out", {"invitation_id": "i1", "how": "kiosk"}),
            ],
        )
        before = store.on_site()
        conn = store._conn
        conn.execute("DROP INDEX events_kind_time")
        conn.execute("DROP TABLE device_contact")
        conn.execute("DROP TABLE onsite_visits")
        conn.execute("DROP TABLE holidays")  # schema 15's
        conn.execute("DROP TABLE event_packs")  # schema 16's
        conn.execute("ALTER TABLE devices DROP COLUMN pack_key")
        conn.execute("PRAGMA user_version = 13")
    with CentralStore(settings, clock=lambda: NOW_MS) as store:
        after = store.on_site()
    assert [e["visitor"] for e in after] == ["Bob"] and after == before
