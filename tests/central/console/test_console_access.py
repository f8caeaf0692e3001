"""The console's access pages (issue #14), over plain HTTP against a real central: badges and
guards (a PIN hashed, never shown), access levels (schedules with line-by-line errors,
holidays), the rights explanation, who sees what, the audit rows."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from central.settings import CentralSettings
from central.store import CentralStore
from central.testing import enroll_device
from portier_common.pins import verify_pin

from .conftest import ConsoleClient

pytestmark = pytest.mark.processes

GUARD_UID = "04C0FFEE000001"
STAFF_UID = "04A1B2C3D4E5F6"


@pytest.fixture(scope="module")
def doors(console_central) -> None:
    """Two enrolled doors: gate-a (zone perimeter), lab (zone labs)."""
    for door, zones in (("gate-a", ["perimeter"]), ("lab", ["labs"])):
        _, session = enroll_device(
            console_central.url, door=door, zones=zones, token=console_central.token
        )
        session.close()


@pytest.fixture
def store(console_central) -> Iterator[CentralStore]:
    """The central's own database, read beside the running server (what it stored)."""
    with CentralStore(CentralSettings(data_dir=console_central.data_dir)) as opened:
        yield opened


def _form(client: ConsoleClient, **fields: str) -> dict[str, str]:
    return {"csrf": client.cookie("portier_console_csrf") or "", **fields}


def _badge(client: ConsoleClient, **fields: str) -> Any:
    base = {
        "uid": STAFF_UID,
        "holder": "Sam Staff",
        "kind": "ntag424",
        "doors": "gate-a",
        "zones": "",
        "enabled": "on",
    }
    return client.request("/console/badges", _form(client, **{**base, **fields}))


def _journal(store: CentralStore, action: str) -> list[dict[str, Any]]:
    return [
        {**e, "detail": json.loads(e["detail"])}
        for e in store.operator_journal()
        if e["action"] == action
    ]


def test_who_sees_which_access_page(client: ConsoleClient, console_central) -> None:
    expected = {
        "olivia": {"badges", "access", "rights", "operators"},
        "paul": {"badges", "rights"},  # the Pass Office
        "ada": {"rights"},  # an auditor reads
    }
    for name, visible in expected.items():
        browser = ConsoleClient(client.base)
        assert browser.login(name).status == 303
        home = browser.request("/console/").text
        for page in ("badges", "access", "rights", "operators"):
            shown = f'href="/console/{page}"' in home
            assert shown == (page in visible), (name, page)
            status = browser.request(f"/console/{page}").status
            assert status == (200 if page in visible else 403), (name, page)
    # A role that may not change badges cannot post one either.
    auditor = ConsoleClient(client.base)
    auditor.login("ada")
    assert _badge(auditor).status == 403
    assert (
        auditor.request(
            "/console/access/holidays", _form(auditor, date="2026-12-25", name="x")
        ).status
        == 403
    )


def test_badge_forms_refuse_bad_input_in_words(client: ConsoleClient, console_central) -> None:
    assert client.login("paul").status == 303
    cases = [
        ({"uid": "xyz"}, "The UID is 4, 7 or 10 bytes in hexadecimal"),
        ({"holder": ""}, "Give the holder's name."),
        ({"doors": "", "zones": ""}, "Give at least one door or one zone."),
        ({"doors": "front door"}, "front door is not a door or zone name"),
        ({"not_before": "2026-12-10T08:00", "not_after": "2026-12-09T08:00"}, "must come after"),
        ({"schedule": "nowhere"}, "No schedule is set for nowhere"),
        ({"guard": "on", "pin": "12ab56"}, "A PIN is 6 to 12 digits."),
        ({"guard": "on", "pin": "12345"}, "A PIN is 6 to 12 digits."),
        ({"pin": "12345"}, "A PIN is 6 to 12 digits."),
        ({"guard": "on", "uid": "04999999999999"}, "A guard needs a PIN of 6 to 12 digits."),
        ({"guard_id": "gail"}, "A guard id is for a guard's badge only"),
    ]
    for fields, words in cases:
        answer = _badge(client, **fields)
        assert answer.status == 400 and words in answer.text, (fields, answer.text[-2000:])
    # The form keeps what was typed, except the PIN.
    answer = _badge(client, holder="Kept Name", doors="", guard="on", pin="246813")
    assert 'value="Kept Name"' in answer.text and "246813" not in answer.text
    client.request("/console/lang/fr?next=/console/badges")
    french = _badge(client, doors="", zones="")
    assert french.status == 400 and "Indiquez au moins une porte ou une zone." in french.text
    client.request("/console/lang/en?next=/console/badges")
    # No CSRF token, a cross-site post: refused.
    assert client.request("/console/badges", {"uid": STAFF_UID, "holder": "x"}).status == 403
    cross = client.request(
        "/console/badges", _form(client, uid=STAFF_UID), headers={"Origin": "http://evil.example"}
    )
    assert cross.status == 403


def test_a_guard_badge_keeps_only_a_pin_hash_and_never_shows_it(
    client: ConsoleClient, console_central, store: CentralStore, doors
) -> None:
    assert client.login("olivia").status == 303
    answer = _badge(
        client,
        uid="04:c0:ff:ee:00:00:01",
        holder="Gail Guard",
        kind="uid",
        doors="",
        zones="perimeter",
        guard="on",
        guard_id="gail",
        pin="246813",
    )
    assert answer.status == 303, answer.text[-2000:]
    assert answer.headers["Location"].startswith("/console/badges?done=saved")
    stored = store.badge_pin_hash(GUARD_UID)
    assert stored is not None and verify_pin("246813", stored)
    page = client.request("/console/badges?q=gail").text
    row = re.search(r'<tr id="badge-04c0ffee000001">.*?</tr>', page, re.S)
    assert row is not None and "Guard (gail)" in row.group(0) and "PIN set" in row.group(0)
    assert "scrypt" not in page and "246813" not in page
    # Editing without a PIN keeps the hash; the edit form says a PIN is set.
    edit = client.request(f"/console/badges?edit={GUARD_UID}").text
    assert "A PIN is set: leave empty to keep it." in edit and "scrypt" not in edit
    answer = _badge(
        client,
        uid=GUARD_UID,
        holder="Gail Guard",
        kind="uid",
        doors="",
        zones="perimeter, labs",
        guard="on",
        guard_id="gail",
        editing="1",
    )
    assert answer.status == 303
    assert store.badge_pin_hash(GUARD_UID) == stored
    # The audit row: the admin API's action, via the console, the UID; never the hash.
    rows = _journal(store, "POST /admin/badges")
    assert rows[-1]["operator"] == "olivia" and rows[-1]["detail"]["via"] == "console"
    assert rows[-1]["detail"]["uid"] == GUARD_UID.lower() and rows[-1]["detail"]["role"] == "guard"
    assert "scrypt" not in json.dumps([r["detail"] for r in rows])
    with console_central.admin() as admin:
        assert admin.list_badges("gail")[0]["has_pin"] is True
        assert "pin_hash" not in admin.list_badges("gail")[0]
    # The central hands the hash to a device with a guard console only (a kiosk), not to a
    # headless door: the badge the console saved reaches both, as the deltas say.
    for console_device in (True, False):
        _, device = enroll_device(
            console_central.url,
            door="gate-a",
            zones=["perimeter"],
            guard_console=console_device,
            token=console_central.token,
        )
        with device:
            page = device.get(f"{console_central.url}/v1/deltas", timeout=10).json()
        gail = next(b for b in page["badges"] if b["uid"] == GUARD_UID.lower())
        assert gail["role"] == "guard" and gail["guard_id"] == "gail"
        assert ("pin_hash" in gail) is console_device
        if console_device:
            assert verify_pin("246813", gail["pin_hash"])


def test_any_badge_may_carry_a_pin_for_card_and_pin_doors(
    client: ConsoleClient, console_central, store: CentralStore, doors
) -> None:
    """A staff badge's PIN (card + PIN wall readers): hashed like a guard's, never shown,
    kept on edit unless removed, and sent to every door of the site (not a guard's secret)."""
    assert client.login("olivia").status == 303
    uid = "04A1B2C3D4E5A7"
    answer = _badge(client, uid=uid, holder="Pat Pin", kind="uid", pin="135790")
    assert answer.status == 303, answer.text[-2000:]
    stored = store.badge_pin_hash(uid)
    assert stored is not None and verify_pin("135790", stored) and not verify_pin("135791", stored)
    assert store.get_badge(uid).get("role") is None
    page = client.request("/console/badges?q=pat").text
    row = re.search(rf'<tr id="badge-{uid.lower()}">.*?</tr>', page, re.S)
    assert row is not None and "PIN set" in row.group(0) and "Guard" not in row.group(0)
    assert "scrypt" not in page and "135790" not in page
    edit = client.request(f"/console/badges?edit={uid}").text
    assert "A PIN is set: leave empty to keep it." in edit and "Remove the PIN" in edit
    assert _badge(client, uid=uid, holder="Pat Pin", kind="uid", editing="1").status == 303
    assert store.badge_pin_hash(uid) == stored  # kept
    rows = _journal(store, "POST /admin/badges")
    assert "scrypt" not in json.dumps([r["detail"] for r in rows])
    # A headless door (no guard console) gets this badge's hash: its card + PIN check.
    _, device = enroll_device(
        console_central.url,
        door="gate-a",
        zones=["perimeter"],
        guard_console=False,
        token=console_central.token,
    )
    with device:
        page_json = device.get(f"{console_central.url}/v1/deltas", timeout=10).json()
    pat = next(b for b in page_json["badges"] if b["uid"] == uid.lower())
    assert verify_pin("135790", pat["pin_hash"])
    # Removing it: the badge has no PIN any more (a card + PIN door says pin_required).
    answer = _badge(client, uid=uid, holder="Pat Pin", kind="uid", editing="1", clear_pin="on")
    assert answer.status == 303
    assert store.badge_pin_hash(uid) is None


def test_names_typed_into_a_badge_are_shown_as_text(client: ConsoleClient, doors) -> None:
    """A holder's name is what an officer typed: it is escaped, never run, on every page."""
    assert client.login("olivia").status == 303
    answer = _badge(client, uid="04EEEEEEEEEE01", holder='<script>alert("x")</script>')
    assert answer.status == 303
    for path in ("/console/badges", "/console/rights?uid=04eeeeeeeeee01&door=gate-a"):
        page = client.request(path).text
        assert '<script>alert("x")</script>' not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page, path


def test_search_edit_and_revoke_a_badge(client: ConsoleClient, store: CentralStore, doors) -> None:
    assert client.login("paul").status == 303
    answer = _badge(
        client,
        holder="Sam Staff",
        not_before="2026-01-01T08:00",
        not_after="2030-01-01T08:00",
    )
    assert answer.status == 303, answer.text[-2000:]
    # Adding the same UID again does not replace Sam's badge: editing does.
    again = _badge(client, uid="04:A1:B2:C3:D4:E5:F6", holder="Someone Else")
    assert again.status == 400
    assert "A badge with UID 04A1B2C3D4E5F6 exists already (Sam Staff)" in again.text
    found = client.request("/console/badges?q=SAM").text
    assert "Sam Staff" in found and "Gail Guard" not in found
    assert (
        "No badge matches nobody-at-all." in client.request("/console/badges?q=nobody-at-all").text
    )
    edit = client.request(f"/console/badges?edit={STAFF_UID.lower()}").text
    assert 'value="2026-01-01T08:00"' in edit and 'value="Sam Staff"' in edit
    assert client.request("/console/badges?edit=04FFFFFFFFFFFF").status == 404
    revoked = client.request(f"/console/badges/{STAFF_UID.lower()}/revoke", _form(client))
    assert revoked.status == 303 and revoked.headers["Location"] == "/console/badges?done=revoked"
    row = re.search(
        r'<tr id="badge-04a1b2c3d4e5f6">.*?</tr>', client.request("/console/badges").text, re.S
    )
    assert row is not None and "Revoked" in row.group(0)
    assert _journal(store, "POST /admin/badges/{uid}/revoke")[-1]["detail"]["uid"] == (
        STAFF_UID.lower()
    )
    assert client.request("/console/badges/04FFFFFFFFFFFF/revoke", _form(client)).status == 404


def test_schedules_and_holidays_with_clear_errors(
    client: ConsoleClient, store: CentralStore, doors
) -> None:
    assert client.login("olivia").status == 303
    bad = client.request(
        "/console/access/schedules",
        _form(
            client,
            schedule_id="perimeter",
            timezone="Mars/Olympus",
            rules=(
                "mon-fri 08:00-18:00\nfunday 08:00-09:00\nsat 25:00-26:00\n"
                "sun 18:00-08:00\nnonsense"
            ),
        ),
    )
    assert bad.status == 400
    for words in (
        "Mars/Olympus is not a time zone",
        "Line 2: funday is not a day",
        "Line 3: a time is 00:00 to 23:59",
        "Line 4: the end must come after the start",
        "Line 5: write the days, then the hours",
    ):
        assert words in bad.text, words
    assert "funday 08:00-09:00" in bad.text  # what was typed stays in the form
    assert store.list_schedules() == []
    good = client.request(
        "/console/access/schedules",
        _form(
            client,
            schedule_id="perimeter",
            timezone="Europe/Brussels",
            rules="mon-fri 8:00-18:00\nsat 09:00-12:00",
        ),
    )
    assert good.status == 303, good.text[-2000:]
    [schedule] = store.list_schedules()
    assert schedule["rules"] == [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"},
        {"days": ["sat"], "start": "09:00", "end": "12:00"},
    ]
    page = client.request("/console/access").text
    row = re.search(r'<tr id="schedule-perimeter">.*?</tr>', page, re.S)
    assert row is not None and "mon-fri 08:00-18:00" in row.group(0) and "(zone)" in row.group(0)
    # Holidays.
    missing = client.request("/console/access/holidays", _form(client, date="", name=""))
    assert missing.status == 400
    assert "Give the holiday's date." in missing.text and "Give the holiday's name." in missing.text
    added = client.request(
        "/console/access/holidays", _form(client, date="2026-12-25", name="Christmas")
    )
    assert added.status == 303
    assert store.list_holidays() == [{"date": "2026-12-25", "name": "Christmas"}]
    assert "Friday 2026-12-25" in client.request("/console/access").text
    deltas = store.deltas("hq", None)["schedules"]
    assert deltas[-1]["holidays"] == [{"date": "2026-12-25", "name": "Christmas"}]
    removed = client.request("/console/access/holidays/2026-12-25/delete", _form(client))
    assert removed.status == 303 and store.list_holidays() == []
    assert client.request("/console/access/holidays/2026-12-25/delete", _form(client)).status == 404
    for action in (
        "PUT /admin/schedules/{schedule_id}",
        "PUT /admin/holidays/{date}",
        "DELETE /admin/holidays/{date}",
    ):
        last = _journal(store, action)[-1]
        assert last["operator"] == "olivia" and last["detail"]["via"] == "console", action
    # French.
    client.request("/console/lang/fr?next=/console/access")
    french = client.request(
        "/console/access/schedules",
        _form(client, schedule_id="x", timezone="UTC", rules="lun 8:00-9:00"),
    )
    assert "Ligne 1 : lun n’est pas un jour" in french.text
    client.request("/console/lang/en?next=/console/access")


def test_rights_explained_now_this_week_and_why(
    client: ConsoleClient, console_central, store: CentralStore, doors
) -> None:
    with console_central.admin() as admin:
        admin.put_schedule(
            "labs",
            timezone="Europe/Brussels",
            rules=[
                {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "start": "00:00",
                    "end": "24:00",
                }
            ],
        )
        admin.put_badge(uid="04AAAAAAAAAA01", holder="Rita Rights", zones=["labs"], schedule="labs")
    assert client.login("ada").status == 303  # an auditor may read the rights
    page = client.request("/console/rights?uid=04aaaaaaaaaa01&door=lab").text
    assert "Rita Rights may enter at lab now." in page
    assert "The badge names zone labs, and lab is in it." in page
    assert "Hours: schedule labs (Europe/Brussels): mon-sun 00:00-24:00." in page
    assert page.count("00:00–24:00") == 7
    # At the other door: refused, and why.
    other = client.request("/console/rights?uid=04aaaaaaaaaa01&door=gate-a").text
    assert "Rita Rights may not enter at gate-a now." in other
    assert "The badge names neither this door nor a zone this door is in." in other
    assert "Not at all for the rest of this week." in other
    # A holiday today closes it, with the holiday's name: today in the schedule's zone.
    with console_central.admin() as admin:
        days = {dt.datetime.now(ZoneInfo("Europe/Brussels")).date().isoformat()}
        for day in days:
            admin.put_holiday(day, "Inventory day")
        try:
            closed = client.request("/console/rights?uid=04aaaaaaaaaa01&door=lab").text
        finally:
            for day in days:
                admin.delete_holiday(day)
    assert "Rita Rights may not enter at lab now." in closed
    assert "The schedule is closed for a holiday: Inventory day." in closed
    assert 'data-reason="holiday"' in closed
    # Open again at the next midnight in Brussels, said in site time (UTC here), if that
    # is still in the site's week.
    brussels = dt.datetime.now(ZoneInfo("Europe/Brussels"))
    midnight = dt.datetime.combine(
        brussels.date() + dt.timedelta(days=1), dt.time(), ZoneInfo("Europe/Brussels")
    ).astimezone(dt.UTC)
    utc_today = dt.datetime.now(dt.UTC).date()
    week_end = utc_today + dt.timedelta(days=7 - utc_today.weekday())
    if midnight.date() < week_end:
        assert f"Next time this week: {midnight:%A %Y-%m-%d at %H:%M}." in closed
    else:
        assert "Not at all for the rest of this week." in closed
    client.request("/console/lang/fr?next=/console/rights")
    french = client.request("/console/rights?uid=04aaaaaaaaaa01&door=gate-a").text
    assert "Rita Rights ne peut pas entrer à gate-a maintenant." in french
    client.request("/console/lang/en?next=/console/rights")
    # An unknown badge, a malformed one: said, not a crash.
    assert client.request("/console/rights?uid=04FFFFFFFFFFFF&door=lab").status == 404
    assert client.request("/console/rights?uid=zz&door=lab").status == 400
