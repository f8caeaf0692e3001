"""Access levels in the store (central/store/access.py) and a badge's rights explained
(central/rights.py), on SQLite and on a real PostgreSQL the tests start."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from central.errors import BadRequest, NotFound
from central.rights import explain
from central.settings import CentralSettings
from central.store import CentralStore
from portier_common.pins import hash_pin

pytestmark = pytest.mark.processes  # PostgreSQL: a real server the tests start

ZONE = ZoneInfo("Europe/Brussels")
#: Wednesday 2 December 2026, 10:00 in Brussels.
WEDNESDAY_10 = int(dt.datetime(2026, 12, 2, 10, 0, tzinfo=ZONE).timestamp())
PIN_HASH = hash_pin("246813", n=2**14)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CentralStore]:
    settings = CentralSettings(data_dir=tmp_path / "data", time_zone="Europe/Brussels")
    clock = [WEDNESDAY_10 * 1000]
    if request.param == "sqlite":
        opened = CentralStore(settings, clock=lambda: clock[0])
    else:
        from central.store.postgres import PostgresDatabase

        url = request.getfixturevalue("postgres_server").create_database()
        opened = CentralStore(settings, clock=lambda: clock[0], database=PostgresDatabase(url))
    with opened:
        yield opened


def _schedule_changes(store: CentralStore) -> list[dict]:
    return [item for item in store.deltas("hq", None)["schedules"]]


def enroll(store: CentralStore, door: str, zones: list[str]) -> None:
    token = store.create_enroll_token(door=door, zones=zones)["enroll_token"]
    store.enroll({"enroll_token": token, "device_id": f"dev-{door}"})


BUSINESS = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}]


def test_holidays_travel_inside_every_schedule_of_the_site(store: CentralStore) -> None:
    store.put_schedule("perimeter", {"timezone": "Europe/Brussels", "rules": BUSINESS})
    store.put_schedule("gate-a", {"timezone": "UTC", "rules": BUSINESS})
    assert all(s["holidays"] == [] for s in _schedule_changes(store))
    done = store.put_holiday("2026-12-25", {"name": "  Christmas   Day "})
    assert done == {"site": "hq", "date": "2026-12-25", "name": "Christmas Day", "schedules": 2}
    store.put_holiday("2026-12-24", {"name": "Christmas Eve"})
    expected = [
        {"date": "2026-12-24", "name": "Christmas Eve"},
        {"date": "2026-12-25", "name": "Christmas Day"},
    ]
    assert store.list_holidays() == expected
    assert [s["holidays"] for s in _schedule_changes(store)] == [expected, expected]
    # A schedule set later carries them too; the stored schedule stays as it was given.
    store.put_schedule("lab", {"timezone": "UTC", "rules": BUSINESS})
    lab = next(s for s in _schedule_changes(store) if s["id"] == "lab")
    assert lab["holidays"] == expected
    assert "holidays" not in next(s for s in store.list_schedules() if s["id"] == "lab")
    # Renaming, removing: published again; an incremental page holds the change.
    cursor = store.head_cursor()
    store.delete_holiday("2026-12-24")
    page = store.deltas("hq", cursor)
    assert {s["id"] for s in page["schedules"]} == {"gate-a", "lab", "perimeter"}
    assert all(s["holidays"] == expected[1:] for s in page["schedules"])
    with pytest.raises(NotFound):
        store.delete_holiday("2026-12-24")


@pytest.mark.parametrize(
    ("day", "body", "named"),
    [
        ("2026-13-01", {"name": "x"}, "date"),
        ("25/12/2026", {"name": "x"}, "date"),
        ("2026-12-25", {}, "name"),
        ("2026-12-25", {"name": "   "}, "name"),
        ("2026-12-25", {"name": "x" * 81}, "name"),
        ("2026-12-25", {"name": "x", "colour": "red"}, "unknown"),
    ],
)
def test_bad_holidays_are_refused_by_name(store: CentralStore, day, body, named) -> None:
    with pytest.raises(BadRequest, match=named):
        store.put_holiday(day, body)
    assert store.list_holidays() == []


def test_any_badge_may_carry_a_pin_hash_for_card_and_pin(store: CentralStore) -> None:
    """POST /admin/badges: a PIN hash on an ordinary badge (card + PIN doors), kept back
    from every listing; a malformed one, or a guard without one, is refused by name."""
    base = {"uid": "04A1B2C3D4E5F7", "holder": "Pat Pin", "doors": ["gate-a"], "kind": "uid"}
    store.put_badge({**base, "pin_hash": PIN_HASH})
    assert store.badge_pin_hash("04A1B2C3D4E5F7") == PIN_HASH
    [pat] = store.list_badges("pat")
    assert pat["has_pin"] and pat.get("role") is None and "pin_hash" not in pat
    for bad in ("246813", "scrypt$1$2$3", 12, ""):
        with pytest.raises(BadRequest, match="pin_hash"):
            store.put_badge({**base, "pin_hash": bad})
    with pytest.raises(BadRequest, match=r"role: guard_id is for role .guard. only"):
        store.put_badge({**base, "guard_id": "pat"})
    with pytest.raises(BadRequest, match="pin_hash: a guard badge needs"):
        store.put_badge({**base, "role": "guard"})
    # Saving the badge again without it removes the PIN (the record is replaced).
    store.put_badge(base)
    assert store.badge_pin_hash("04A1B2C3D4E5F7") is None


def test_badges_listed_with_guard_revocation_and_key_version_never_a_pin_hash(
    store: CentralStore,
) -> None:
    store.put_badge({"uid": "04A1B2C3D4E5F6", "holder": "Sam Staff", "doors": ["gate-a"]})
    store.put_badge(
        {
            "uid": "04C0FFEE000001",
            "holder": "Gail Guard",
            "zones": ["perimeter"],
            "kind": "uid",
            "role": "guard",
            "pin_hash": PIN_HASH,
            "guard_id": "gail",
            "schedule": "perimeter",
        }
    )
    store.put_badge({"uid": "04ABABABABAB01", "holder": "Rex Revoked", "doors": ["lab"]})
    store.revoke_badge("04ABABABABAB01")
    with store._tx() as conn:  # the Pass Office issued Sam's card at key version 3
        conn.execute(
            "INSERT INTO badge_issues (uid, site, key_version, state, updated_ms) "
            "VALUES (?, 'hq', 3, 'issued', 0)",
            ("04a1b2c3d4e5f6",),
        )
    badges = store.list_badges()
    assert [b["holder"] for b in badges] == ["Gail Guard", "Rex Revoked", "Sam Staff"]
    gail, rex, sam = badges
    assert gail["role"] == "guard" and gail["has_pin"] and gail["guard_id"] == "gail"
    assert gail["schedule"] == "perimeter" and gail["key_version"] is None
    assert rex["revoked"] and rex["revoked_at"] == WEDNESDAY_10 and not rex["enabled"]
    assert sam["key_version"] == 3 and sam["issue_state"] == "issued" and not sam["has_pin"]
    assert "scrypt" not in json.dumps(badges) and "pin_hash" not in json.dumps(badges)
    assert "pin_hash" not in store.get_badge("04C0FFEE000001")
    assert store.badge_pin_hash("04C0FFEE000001") == PIN_HASH
    # Search: holder, UID, door, zone, guard id; case does not matter.
    assert [b["holder"] for b in store.list_badges("GAIL")] == ["Gail Guard"]
    assert [b["holder"] for b in store.list_badges("abab")] == ["Rex Revoked"]
    assert [b["holder"] for b in store.list_badges("gate-a")] == ["Sam Staff"]
    assert [b["holder"] for b in store.list_badges("perim")] == ["Gail Guard"]
    assert store.list_badges("nobody") == []
    with pytest.raises(BadRequest, match="schedule"):
        store.put_badge({"uid": "04A1B2C3", "holder": "x", "doors": ["d"], "schedule": "a b"})


def _facts(store: CentralStore, uid: str, door: str = "gate-a") -> dict:
    return store.rights_facts(uid, door)


def _open_hours(spans: list, day: int) -> list[tuple[str, str]]:
    """The granted spans of the week's *day* (0 = Monday) as local HH:MM pairs."""
    hours = []
    for span in spans:
        if not span.granted:
            continue
        start = dt.datetime.fromtimestamp(span.start, ZONE)
        end = dt.datetime.fromtimestamp(span.end, ZONE)
        if start.weekday() == day:
            hours.append((start.strftime("%H:%M"), end.strftime("%H:%M")))
    return hours


def test_rights_by_zone_schedule_and_holiday(store: CentralStore) -> None:
    enroll(store, "gate-a", ["perimeter"])
    store.put_schedule("perimeter", {"timezone": "Europe/Brussels", "rules": BUSINESS})
    store.put_holiday("2026-12-03", {"name": "Saint Nicholas"})  # the Thursday
    store.put_badge(
        {"uid": "04A1B2C3D4E5F6", "holder": "Zoe", "zones": ["perimeter"], "schedule": "perimeter"}
    )
    explained = explain(_facts(store, "04A1B2C3D4E5F6"), WEDNESDAY_10)
    assert explained["now"].granted and explained["now"].reason == "granted"
    assert explained["via"] == {"door": False, "zones": ["perimeter"]}
    assert explained["schedule"] == "perimeter" and explained["schedule_known"]
    assert explained["holidays"] == [{"date": "2026-12-03", "name": "Saint Nicholas"}]
    spans = explained["spans"]
    assert _open_hours(spans, 0) == [("08:00", "18:00")]  # Monday
    assert _open_hours(spans, 2) == [("08:00", "18:00")]  # Wednesday
    assert _open_hours(spans, 3) == []  # Thursday: the holiday
    assert _open_hours(spans, 5) == []  # Saturday
    thursday = [s for s in spans if dt.datetime.fromtimestamp(s.start, ZONE).day == 3]
    assert thursday[0].reason == "holiday" and "Saint Nicholas" in thursday[0].detail
    # The week is whole and in order.
    assert spans[0].start == explained["week_start"] and spans[-1].end == explained["week_end"]
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    # At 20:00 it is the schedule's reason.
    evening = explain(_facts(store, "04A1B2C3D4E5F6"), WEDNESDAY_10 + 10 * 3600)
    assert evening["now"].reason == "outside_schedule"


def test_rights_refusals_name_their_reason(store: CentralStore) -> None:
    enroll(store, "gate-a", ["perimeter"])
    store.put_badge({"uid": "04000000000001", "holder": "Wrong Door", "doors": ["lab"]})
    assert explain(_facts(store, "04000000000001"), WEDNESDAY_10)["now"].reason == "wrong_door"
    store.put_badge(
        {"uid": "04000000000002", "holder": "Ended", "doors": ["gate-a"], "not_after": WEDNESDAY_10}
    )
    ended = explain(_facts(store, "04000000000002"), WEDNESDAY_10)
    assert ended["now"].reason == "expired"
    # Open until it ended: Monday 00:00 to Wednesday 10:00, then refused.
    assert ended["spans"][0].granted and ended["spans"][0].end == WEDNESDAY_10
    store.put_badge({"uid": "04000000000003", "holder": "Gone", "doors": ["gate-a"]})
    store.revoke_badge("04000000000003")
    assert explain(_facts(store, "04000000000003"), WEDNESDAY_10)["now"].reason == "revoked"
    # A UID-only badge: refused unless the door's settings accept it.
    store.put_badge(
        {"uid": "04000000000004", "holder": "Cloneable", "doors": ["gate-a"], "kind": "uid"}
    )
    assert explain(_facts(store, "04000000000004"), WEDNESDAY_10)["now"].reason == (
        "uid_not_allowed"
    )
    store.put_door_settings("gate-a", {"settings": {"accept": ["qr", "uid", "ntag424"]}})
    assert explain(_facts(store, "04000000000004"), WEDNESDAY_10)["now"].granted
    # Lockdown set from the security office: refused all week, whatever the hours.
    store.set_door_mode("door", "gate-a", {"mode": "lockdown", "reason": "drill"}, by="olivia")
    locked = explain(_facts(store, "04000000000004"), WEDNESDAY_10)
    assert locked["now"].reason == "lockdown" and locked["mode"] == "lockdown"
    assert [(s.granted, s.reason) for s in locked["spans"]] == [(False, "lockdown")]
    # A schedule that does not exist fails closed, as at the door.
    store.put_badge(
        {"uid": "04000000000005", "holder": "Typo", "doors": ["gate-a"], "schedule": "nope"}
    )
    typo = explain(_facts(store, "04000000000005"), WEDNESDAY_10)
    assert not typo["schedule_known"]
    with pytest.raises(NotFound):
        store.rights_facts("04FFFFFFFFFFFF", "gate-a")
