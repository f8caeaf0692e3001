"""Who is on site, the muster list and the statistics over plain HTTP (a real central whose
site is in Asia/Kathmandu, UTC+05:45: a day that is not the UTC day, an offset of quarter
hours): the pages by role, the per-door and per-zone lists, the muster list for print, the
charts (SVG with a title, a table of the numbers), the period checks and each CSV export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import time
from zoneinfo import ZoneInfo

import pytest

from central.console.stats import CSV_NAMES
from central.testing import ChainBuilder, enroll_device

from .conftest import ConsoleClient

pytestmark = pytest.mark.processes

ZONE = ZoneInfo("Asia/Kathmandu")
CENTRAL_OPTIONS = {"extra_args": ["--time-zone", "Asia/Kathmandu"]}


def _five_past_midnight() -> dt.datetime:
    """The latest 00:05 of the site that is past: 18:20 UTC of the UTC day before."""
    now = dt.datetime.now(ZONE)
    moment = dt.datetime.combine(now.date(), dt.time(0, 5), ZONE)
    return moment if moment <= now - dt.timedelta(minutes=1) else moment - dt.timedelta(days=1)


@pytest.fixture(scope="module")
def site(console_central):
    """Two doors of zone north (gate-b also in lab) that uploaded check-ins, a check-out,
    entries, refusals and alarms, and heartbeats."""
    url = console_central.url
    _, gate_a = enroll_device(url, door="gate-a", device_id="st-gate-a", zones=["north"])
    _, gate_b = enroll_device(url, door="gate-b", device_id="st-gate-b", zones=["north", "lab"])
    midnight = _five_past_midnight()
    at = int(midnight.timestamp() * 1000)
    now = int(time.time() * 1000)
    a, b = ChainBuilder(), ChainBuilder()
    events_a = [
        a.event(
            "visitor.checked_in",
            {
                "invitation_id": "st-inv-grace",
                "visitor": "Grace Hopper",
                "host": "Howard Aiken",
                "door": "gate-a",
                "not_after": now // 1000 + 3600,
                "by": "visitor",
            },
            wall_ms=at,
        ),
        a.event(
            "visitor.checked_in",
            {
                "invitation_id": "st-inv-old",
                "visitor": "Zed Overstay",
                "host": "Nobody",
                "door": "gate-a",
                "not_after": now // 1000 - 60,  # ended: the door will check them out
                "by": "guard:g1",
            },
            wall_ms=at + 1,
        ),
        a.event(
            "visitor.checked_in",
            {"invitation_id": "st-inv-left", "visitor": "Left Early", "door": "gate-a"},
            wall_ms=at + 2,
        ),
        a.event(
            "visitor.checked_out",
            {
                "invitation_id": "st-inv-left",
                "visitor": "Left Early",
                "how": "kiosk",
                "by": "visitor",
            },
            wall_ms=at + 3,
        ),
        a.event("access.decision", {"granted": True, "kind": "qr"}, wall_ms=at),
        a.event(
            "access.decision",
            {"granted": False, "kind": "badge", "reason": "revoked"},
            wall_ms=at,
        ),
        a.event(
            "access.decision",
            {"granted": False, "kind": "badge", "reason": "revoked"},
            wall_ms=at,
        ),
        a.event("access.open_refused", {"reason_code": "lockdown"}, wall_ms=at),
        # What a device sends is text a spreadsheet must not run.
        a.event(
            "access.decision",
            {"granted": False, "kind": "qr", "reason": '=HYPERLINK("http://evil.example")'},
            wall_ms=at,
        ),
        a.event("alarm.raised", {"alarm": "forced_open", "door": "gate-a"}, wall_ms=at),
    ]
    events_b = [
        b.event(
            "visitor.checked_in",
            {
                "invitation_id": "st-inv-alan",
                "visitor": "Alan Turing",
                "host": "Max Newman",
                "door": "gate-b",
            },
            wall_ms=at + 60_000,
        ),
    ]
    for session, events in ((gate_a, events_a), (gate_b, events_b)):
        answer = session.post(f"{url}/v1/events", json={"events": events}, timeout=10)
        assert answer.status_code == 200, answer.text
    assert gate_a.post(f"{url}/v1/heartbeat", json={"sent_at_ms": now}, timeout=10).ok
    return {"day": midnight.date()}


def _logged_in(client: ConsoleClient, name: str) -> ConsoleClient:
    assert client.login(name).status == 303
    return client


def test_who_sees_the_pages(client: ConsoleClient, site):
    pass_office = _logged_in(client, "paul")
    home = pass_office.request("/console/").text
    assert 'href="/console/onsite"' in home and 'href="/console/stats"' not in home
    assert pass_office.request("/console/stats").status == 403
    assert pass_office.request("/console/stats/denies.csv").status == 403
    auditor = _logged_in(ConsoleClient(client.base), "ada")
    home = auditor.request("/console/").text
    assert 'href="/console/stats"' in home and 'href="/console/onsite"' not in home
    assert auditor.request("/console/onsite").status == 403
    assert auditor.request("/console/onsite/muster").status == 403
    assert auditor.request("/console/stats").status == 200
    # Not logged in: the login page.
    anonymous = ConsoleClient(client.base)
    for path in ("/console/onsite", "/console/onsite/muster", "/console/stats/alarms.csv"):
        answer = anonymous.request(path)
        assert answer.status == 303 and "/console/login" in answer.headers["Location"]


def test_who_is_on_site_by_door_and_zone(client: ConsoleClient, site):
    olivia = _logged_in(client, "olivia")
    page = olivia.request("/console/onsite").text
    assert re.search(r'id="onsite-count">3<', page)
    door_a = page[page.index('id="door-gate-a"') : page.index('id="door-gate-b"')]
    assert "Grace Hopper" in door_a and "Howard Aiken" in door_a
    assert "Checked in at the kiosk" in door_a and "Checked in by a guard" in door_a
    assert f"{site['day']} 00:05" in door_a  # the site's time of entry
    assert "Left Early" not in page  # checked out at the kiosk
    overstay = re.search(r'<tr class="warn">.*?</tr>', door_a, re.S)
    assert overstay is not None and "Zed Overstay" in overstay.group(0)
    assert "Ended: the door checks them out." in overstay.group(0)
    zones = re.search(r'<table id="zones">.*?</table>', page, re.S)
    assert zones is not None
    rows = re.findall(
        r"<tr[^>]*><td><a[^>]*>(\w+)</a></td><td>([^<]*)</td><td>(\d+)</td>", zones.group(0)
    )
    assert rows == [("lab", "gate-b", "1"), ("north", "gate-a, gate-b", "3")]
    lab = olivia.request("/console/onsite?zone=lab").text
    assert "Alan Turing" in lab and "Grace Hopper" not in lab
    assert "Showing the doors of zone lab." in lab

    # The check-out in words on the live page.
    live = olivia.request("/console/live").text
    assert "Left Early checked out at gate-a" in live

    olivia.request("/console/lang/fr?next=/console/onsite")
    french = olivia.request("/console/onsite").text
    assert "Left Early a quitté le site à gate-a" in olivia.request("/console/live").text
    assert '<html lang="fr">' in french and "Qui est sur le site" in french
    assert "Enregistré à la borne" in french
    olivia.request("/console/lang/en?next=/console/onsite")


def test_the_muster_list_prints(client: ConsoleClient, site):
    olivia = _logged_in(client, "olivia")
    answer = olivia.request("/console/onsite/muster")
    assert answer.status == 200
    page = answer.text
    table = re.search(r'<table id="muster">.*?</table>', page, re.S)
    assert table is not None
    names = re.findall(r"<td>\d+</td><td>([^<]+)</td>", table.group(0))
    assert names == ["Alan Turing", "Grace Hopper", "Zed Overstay"]  # by name, each once
    assert "Visitors on site: 3." in page and "Site hq, at" in page
    assert re.search(r'<script src="/console/static/print\.js\?v=[^"]+"></script>', page)
    css = olivia.request(re.search(r'href="(/console/static/console\.css[^"]*)"', page).group(1))
    assert "@page { size: A4" in css.text and "@media print" in css.text


def test_statistics_page_charts_and_period(client: ConsoleClient, site):
    auditor = _logged_in(client, "ada")
    page = auditor.request("/console/stats?days=30").text
    for chart in ("chart-days", "chart-weeks", "chart-hours", "chart-denies", "chart-alarms"):
        svg = re.search(rf'<svg class="chart" id="{chart}"[^>]*>(.*?)</svg>', page, re.S)
        assert svg is not None, chart
        assert f'aria-labelledby="{chart}-title {chart}-desc"' in page
        assert re.search(rf'<title id="{chart}-title">[^<]+</title>', svg.group(1))
    assert "<script" not in page  # drawn on the server
    assert '<option value="30" selected>' in page
    assert "4 check-ins in 30 days; the busiest day: " in page
    days = re.search(r'id="chart-days".*?</svg>', page, re.S).group(0)
    assert f"<title>{site['day']}: 4</title>" in days  # the site's day, not UTC's
    assert "4 refusals at the doors" in page
    assert "Door in lockdown" in page or "door in lockdown" in page
    for bad in ("5", "abc", "-7", "3650"):
        answer = auditor.request(f"/console/stats?days={bad}")
        assert answer.status == 400 and "Choose a period of 7, 30 or 90 days." in answer.text
    auditor.request("/console/lang/fr?next=/console/stats")
    french = auditor.request("/console/stats").text
    assert "Statistiques" in french and "Visiteurs par jour" in french
    auditor.request("/console/lang/en?next=/console/stats")


def _csv(client: ConsoleClient, name: str, days: int = 7) -> list[list[str]]:
    answer = client.request(f"/console/stats/{name}.csv?days={days}")
    assert answer.status == 200, answer.text
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="{name}-' in answer.headers["Content-Disposition"]
    return list(csv.reader(io.StringIO(answer.text)))


def test_each_statistic_exports_as_csv(client: ConsoleClient, site):
    olivia = _logged_in(client, "olivia")
    day = site["day"]
    per_day = _csv(olivia, "visits-per-day")
    assert per_day[0] == ["date", "check_ins"] and len(per_day) == 8
    assert [day.isoformat(), "4"] in per_day
    assert sum(int(row[1]) for row in per_day[1:]) == 4
    weeks = _csv(olivia, "visits-per-week")
    assert weeks[0] == ["week", "week_start", "check_ins"]
    monday = day - dt.timedelta(days=day.weekday())
    year, week, _ = monday.isocalendar()
    assert [f"{year}-W{week:02d}", monday.isoformat(), "4"] in weeks
    hours = _csv(olivia, "peak-hours")
    assert hours[0] == ["hour", "entries", "check_ins"] and len(hours) == 25
    assert hours[1] == ["00:00", "1", "4"]  # 00:05 at the site (18:20 UTC)
    assert _csv(olivia, "denies") == [
        ["reason_code", "reason", "count"],
        ["revoked", "revoked", "2"],
        ['\'=HYPERLINK("http://evil.example")', '\'=HYPERLINK("http://evil.example")', "1"],
        ["lockdown", "door in lockdown", "1"],
    ]
    alarms = _csv(olivia, "alarms")
    assert alarms == [
        ["door", "alarm_code", "alarm", "count"],
        ["gate-a", "forced_open", "Door forced open", "1"],
    ]
    availability = _csv(olivia, "availability", days=90)
    assert availability[0] == [
        "device_id",
        "door",
        "enabled",
        "available_percent",
        "quarters_heard",
        "quarters",
    ]
    mine = {row[0]: row for row in availability[1:]}
    assert mine["st-gate-a"][4] == "1" and mine["st-gate-b"][4] == "0"
    assert float(mine["st-gate-a"][3]) > 0 and mine["st-gate-b"][3] == "0.0"
    # In French: the words, not the columns.
    olivia.request("/console/lang/fr?next=/console/stats")
    assert _csv(olivia, "denies")[1] == ["revoked", "révoqué", "2"]
    olivia.request("/console/lang/en?next=/console/stats")
    assert olivia.request("/console/stats/nothing.csv").status == 404
    assert olivia.request("/console/stats/denies.csv?days=1").status == 400
    assert set(CSV_NAMES) == {
        "visits-per-day",
        "visits-per-week",
        "peak-hours",
        "denies",
        "alarms",
        "availability",
    }


def test_check_outs_in_words():
    from central.console.i18n import translations
    from central.console.words import describe

    for lang, how, text in (
        ("en", "expired", "Ada checked out at gate-a: invitation ended"),
        ("en", "guard", "Ada checked out at gate-a by a guard"),
        ("en", "kiosk", "Ada checked out at gate-a"),
        ("fr", "expired", "Ada a quitté le site à gate-a : fin de l’invitation"),
    ):
        event = {
            "type": "visitor.checked_out",
            "door": "gate-a",
            "name": "Ada",
            "payload": {"how": how},
        }
        assert describe(event, translations(lang).gettext) == (text, False)
