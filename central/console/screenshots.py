"""Save a screenshot of every console page, in English and French, with headless Chromium.

Usage::

    python -m central.console.screenshots docs/console [--width 1280]

It starts a demo central of its own (a temporary data directory, loopback, a free port),
adds operators with passwords (a security officer, an auditor), two enrolled doors of one
zone (one heard from, reporting lockdown; modes set for the zone and a door), a third that
sent events, alarms and self-tests (:func:`_seed_security`), two that sent a month of
check-ins, entries, refusals and alarms (:func:`_seed_stats`), a few invitations (valid, not
valid yet, single use, revoked, one held by the deny list) and the deny list, logs in through
the login page as a person would, and saves ``NAME-LANG.png`` for each page (the whole page,
not only the window): the login page, the security officer's pages (:func:`_shots`: home,
visitors, live events, alarms, devices, one device, doors, deny list, approvals, on site, the
muster list, statistics, badges, access levels, rights, operators, event packs), the printable
invitation a visitor gets (``invitation-LANG.png``: the PDF the Visitors page's link downloads,
drawn by poppler), a wrong password, and what an auditor sees (the home page without
Visitors, the refusal of that page).
Needs Debian's ``chromium`` and ``chromium-driver`` and Selenium (the dev extra); nothing
is downloaded.

:func:`chromium` and :func:`log_in` are what the console's browser tests use too.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LANGUAGES = ("en", "fr")
#: The browser's locale for each console language.
_LOCALES = {"en": "en-GB", "fr": "fr-FR"}
#: The demo operator of the screenshots.
OPERATOR, PASSWORD = "olivia", "screenshots-only-password"
#: An auditor: the pages a role may not open are hidden (and refused).
AUDITOR = "ada"


def chromium(width: int = 1280, height: int = 900, lang: str = "en") -> Any:
    """A headless Chromium driven by chromium-driver (Debian's ``chromium`` and
    ``chromium-driver``) whose own language (date fields, ``Accept-Language``) is *lang*.

    Raises:
        RuntimeError: chromium or chromedriver is not installed.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        raise RuntimeError(
            "chromium and chromedriver are needed: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespaces for the sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        f"--lang={_LOCALES[lang]}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": _LOCALES[lang]})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def log_in(browser: Any, base: str, name: str, password: str) -> None:
    """Fill in and send the login form at *base*/console/login."""
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/console/login")
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(password)
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


def follow(browser: Any, element: Any) -> None:
    """Click *element* and wait for the page it leads to.

    The click returns before the browser has loaded the next page: reading at once can find
    the old page's element (a "done" line carried in the URL) and see it go stale (a CI run
    failed that way). Waiting for the old document to go stale closes that race.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(old))


def set_language(browser: Any, base: str, lang: str, page: str = "/console/") -> None:
    """Switch the console to *lang* (its cookie), landing on *page*."""
    browser.get(f"{base}/console/lang/{lang}?next={page}")


def save_page(browser: Any, path: Path, width: int) -> None:
    """Save the whole page (its full height, beyond the window) as a PNG."""
    import base64

    height = browser.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
    )
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": max(600, int(height)), "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def _seed(data: Path, url: str, token: str | None) -> None:
    """The operator, two doors (one heard from just now), their modes, and a few invitations."""
    from central.settings import CentralSettings
    from central.store import CentralStore
    from central.testing import enroll_device

    with CentralStore(CentralSettings(data_dir=data)) as store:
        store.add_operator(OPERATOR, "security_officer", PASSWORD)
        store.add_operator(AUDITOR, "auditor", PASSWORD)
        now = store.now_ms() // 1000
        hour = now - now % 3600
        for body in (
            {
                "visitor": "Marie Dupont",
                "host": "Jean Martin",
                "doors": ["front"],
                "visitor_email": "marie.dupont@example.fr",
            },
            {"visitor": "Hélène Rousseau", "host": "Léa Bernard", "zones": ["labs"]},
            {"visitor": "Tom Baker", "host": "Sam Lee", "doors": ["front", "dock"]},
            {"visitor": "Ines Moreau", "host": "Jean Martin", "doors": ["front"]},
        ):
            store.create_invitation(
                {**body, "not_before": hour, "expires": hour + 8 * 3600, "lang": "fr"}
            )
        store.create_invitation(
            {
                "visitor": "Kenji Sato",
                "host": "Léa Bernard",
                "host_email": "lea.bernard@example.com",
                "visitor_email": "kenji.sato@example.com",
                "doors": ["front"],
                "single_use": True,
                "not_before": hour + 86400,
                "expires": hour + 86400 + 4 * 3600,
            }
        )
        revoked = store.create_invitation(
            {"visitor": "Paul Durand", "host": "Sam Lee", "doors": ["dock"]}
        )
        store.revoke_invitation(revoked["invitation"]["id"])
        # The deny list, and an invitation it holds for a security officer's approval.
        store.add_deny_entry(
            {"name": "Emilie du Chatelet", "reason": "Trespass in March (court order)"},
            by=OPERATOR,
        )
        store.add_deny_entry({"name": "Victor Lustig", "reason": "Fraud attempt"}, by=OPERATOR)
        store.create_invitation(
            {
                "visitor": "DU CHÂTELET Émilie",
                "host": "Jean Martin",
                "doors": ["front"],
                "not_before": hour + 86400,
                "expires": hour + 86400 + 8 * 3600,
                "lang": "fr",
            },
            by="paula",
        )
        _seed_visits(store, hour)
    _, device = enroll_device(url, door="front", token=token, zones=["ground-floor"])
    heartbeat: dict[str, Any] = {
        "sent_at_ms": int(time.time() * 1000),
        "doors": [{"door": "front", "mode": "lockdown", "state": "locked"}],
    }
    device.post(f"{url}/v1/heartbeat", json=heartbeat, timeout=10).raise_for_status()
    enroll_device(url, door="dock", token=token, zones=["ground-floor"])
    with CentralStore(CentralSettings(data_dir=data)) as store:  # the Doors page's modes
        store.set_door_mode(
            "zone", "ground-floor", {"mode": "lockdown", "reason": "Evacuation drill"}, by=OPERATOR
        )
        store.set_door_mode("door", "dock", {"mode": "normal", "reason": "Deliveries"}, by=OPERATOR)
    _seed_security(data, url, token)
    _seed_stats(data, url, token)
    _seed_access(data)
    _seed_eventpacks(data, url, token)


def _seed_stats(data: Path, url: str, token: str | None) -> None:
    """For who is on site and the statistics: a reception door and a lab door that uploaded
    30 days of check-ins, entries, refusals and alarms (a fixed pseudo-random pattern), three
    visitors checked in today and one checked out, and the doors' contact history of the
    period (the quarter hours heartbeats would have left: the reception went offline)."""
    import random

    from central.settings import CentralSettings
    from central.store import CentralStore
    from central.store.stats import QUARTER_MS
    from central.testing import ChainBuilder, enroll_device

    with CentralStore(CentralSettings(data_dir=data)) as store:
        ids = {i["visitor"]: i["id"] for i in store.list_invitations()}
    draw = random.Random(14)
    now = int(time.time() * 1000)
    day = 86_400_000
    midnight = now - now % day
    doors = {"reception": ["ground-floor"], "lab-1": ["labs"]}
    reasons = ["expired", "revoked", "wrong_door", "outside_schedule", "not_yet_valid"]
    for door, zones in doors.items():
        _, device = enroll_device(url, door=door, device_id=f"pi-{door}", token=token, zones=zones)
        chain = ChainBuilder()
        events: list[tuple[str, dict[str, Any], int]] = []
        for back in range(29, 0, -1):
            start = midnight - back * day
            weekend = (start // day + 3) % 7 >= 5  # 1970-01-01 was a Thursday
            for _ in range(draw.randint(0, 3) if weekend else draw.randint(4, 14)):
                at = start + int(draw.gauss(9.5, 1.5) * 3_600_000)
                visit = f"seed-{door}-{back}-{len(events)}"
                events.append(
                    (
                        "visitor.checked_in",
                        {
                            "invitation_id": visit,
                            "door": door,
                            "visitor": "Visitor",
                            "by": "visitor",
                        },
                        at,
                    )
                )
                events.append(
                    (
                        "visitor.checked_out",
                        {"invitation_id": visit, "how": "kiosk"},
                        at + 4 * 3_600_000,
                    )
                )
            for _ in range(draw.randint(2, 8) if weekend else draw.randint(30, 60)):
                hour = draw.choice([7, 8, 8, 8, 9, 9, 12, 13, 13, 14, 16, 17, 17, 18])
                at = start + hour * 3_600_000 + draw.randint(0, 3_599_999)
                events.append(("access.decision", {"granted": True, "kind": "badge"}, at))
            for _ in range(draw.randint(0, 4)):
                reason = draw.choice(reasons[: 2 + back % 4])
                events.append(
                    (
                        "access.decision",
                        {"granted": False, "kind": "badge", "reason": reason},
                        start + draw.randint(7, 18) * 3_600_000,
                    )
                )
            if draw.random() < (0.3 if door == "reception" else 0.1):
                alarm = draw.choice(["held_open", "held_open", "forced_open", "tamper"])
                events.append(
                    (
                        "alarm.raised",
                        {"alarm": alarm, "door": door},
                        start + draw.randint(0, 23) * 3_600_000,
                    )
                )
        if door == "reception":
            events.append(
                (
                    "access.open_refused",
                    {"door": door, "reason_code": "lockdown"},
                    now - 30 * 60_000,
                )
            )
            for name, back_min, by in (
                ("Marie Dupont", 95, "visitor"),
                ("Tom Baker", 70, "guard:g1"),
                ("Ines Moreau", 40, "visitor"),
            ):
                events.append(
                    (
                        "visitor.checked_in",
                        {"invitation_id": ids[name], "door": door, "visitor": name, "by": by},
                        now - back_min * 60_000,
                    )
                )
            events.append(
                (
                    "visitor.checked_out",
                    {"invitation_id": ids["Ines Moreau"], "how": "kiosk"},
                    now - 10 * 60_000,
                )
            )
        else:
            events.append(
                (
                    "visitor.checked_in",
                    {
                        "invitation_id": ids["Hélène Rousseau"],
                        "door": door,
                        "visitor": "Hélène Rousseau",
                        "by": "visitor",
                    },
                    now - 50 * 60_000,
                )
            )
        events.sort(key=lambda e: e[2])
        batch = [chain.event(kind, payload, wall_ms=at) for kind, payload, at in events]
        for first in range(0, len(batch), 500):
            device.post(
                f"{url}/v1/events", json={"events": batch[first : first + 500]}, timeout=30
            ).raise_for_status()
    # The contact history: every quarter hour of the period, but the reception's 4 days off.
    with CentralStore(CentralSettings(data_dir=data)) as store, store._tx() as conn:
        first = (midnight - 29 * day) // QUARTER_MS
        for door in doors:
            off = range((midnight - 12 * day) // QUARTER_MS, (midnight - 8 * day) // QUARTER_MS)
            quarters = [
                q
                for q in range(first, now // QUARTER_MS + 1)
                if door != "reception" or q not in off
            ]
            conn.executemany(
                "INSERT INTO device_contact (device_id, quarter) VALUES (?, ?) "
                "ON CONFLICT (device_id, quarter) DO NOTHING",
                [(f"pi-{door}", q) for q in quarters],
            )
        # enrolled a month ago, so the whole period counts
        conn.execute(
            "UPDATE devices SET enrolled_at_ms = ? WHERE device_id IN (?, ?)",
            (midnight - 40 * day, "pi-reception", "pi-lab-1"),
        )


def _seed_visits(store: Any, hour: int) -> None:
    """For the Visitors page: a recurring contractor, a group, an extended invitation."""
    import datetime as dt

    today = dt.datetime.fromtimestamp(hour, store.settings.zone).date()
    store.create_recurring_invitations(
        {
            "visitor": "Carlos Ruiz",
            "label": "Boiler maintenance (Carlos Ruiz)",
            "host": "Facilities",
            "zones": ["ground-floor"],
            "first_day": today.isoformat(),
            "last_day": (today + dt.timedelta(days=3)).isoformat(),
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "08:00",
            "end": "17:00",
        }
    )
    store.create_invitation_group(
        {
            "label": "Auditors from Lyon",
            "invitations": [
                {"visitor": name, "host": "Claire Petit", "doors": ["front"],
                 "not_before": hour + 86400, "expires": hour + 86400 + 6 * 3600}
                for name in ("Anne Girard", "Bruno Lefèvre", "Chloé Fontaine")
            ],
        }
    )  # fmt: skip
    short = store.create_invitation(
        {"visitor": "Nadia Haddad", "host": "Sam Lee", "doors": ["dock"],
         "not_before": hour, "expires": hour + 2 * 3600}
    )  # fmt: skip
    store.extend_invitation(short["invitation"]["id"], {"expires": hour + 2 * 86400})


#: A guest list with mistakes, for the import preview's shot.
IMPORT_WITH_ERRORS = (
    "\ufeffNom;Hôte;Début;Fin;Portes;Usage\n"
    "Marie Curie;Léa Bernard;05/12/2036 08:00;05/12/2036 18:00;front;unique\n"
    ";Léa Bernard;05/12/2036 08:00;05/12/2036 18:00;front;\n"
    "Pierre Curie;Léa Bernard;31/02/2036 08:00;05/12/2036 18:00;front;\n"
    "Irène Joliot-Curie;Sam Lee;05/12/2036 08:00;05/12/2036 18:00;cellar;\n"
    "Paul Langevin;Sam Lee;05/12/2036 08:00;05/12/2036 18:00;dock;twice\n"
)


def _seed_access(data: Path) -> None:
    """For the access pages: schedules, a holiday this week, badges (a guard, a revoked one,
    an issued NTAG 424 card) and a few more operators."""
    import datetime as dt

    from central.settings import CentralSettings
    from central.store import CentralStore
    from portier_common.pins import hash_pin

    with CentralStore(CentralSettings(data_dir=data)) as store:
        today = dt.date.today()
        monday = today - dt.timedelta(days=today.weekday())
        store.put_schedule(
            "gate-a",
            {
                "timezone": "UTC",
                "rules": [
                    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:00", "end": "19:00"},
                    {"days": ["sat"], "start": "08:00", "end": "13:00"},
                ],
            },
        )
        store.put_schedule(
            "labs",
            {
                "timezone": "Europe/Paris",
                "rules": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:30",
                           "end": "17:30"}],
            },
        )  # fmt: skip
        store.put_holiday((monday + dt.timedelta(days=2)).isoformat(), {"name": "Site closure"})
        store.put_holiday("2026-12-25", {"name": "Christmas"})
        for badge in (
            {"uid": "04A1B2C3D4E5F6", "holder": "Léa Bernard", "doors": ["gate-a"],
             "schedule": "gate-a", "pin_hash": hash_pin("135790", n=2**14)},
            {"uid": "04C0FFEE000001", "holder": "Gaston Garde", "kind": "uid",
             "zones": ["ground-floor"], "role": "guard", "guard_id": "g1",
             "pin_hash": hash_pin("246813", n=2**14)},
            {"uid": "04ABABABABAB01", "holder": "Hélène Rousseau", "zones": ["labs"],
             "schedule": "labs", "not_after": int(time.time()) + 30 * 86400},
            {"uid": "04DEADBEEF0001", "holder": "Paul Durand", "doors": ["dock"]},
        ):  # fmt: skip
            store.put_badge(badge)
        store.revoke_badge("04DEADBEEF0001")
        with store._tx() as conn:  # Léa's card, issued at the Pass Office
            conn.execute(
                "INSERT INTO badge_issues (uid, site, key_version, state, updated_ms) "
                "VALUES ('04a1b2c3d4e5f6', 'hq', 2, 'issued', 0)"
            )
        store.add_operator("paula", "pass_office", PASSWORD)
        store.add_operator("ines", "installer")
        store.disable_operator("ines")


def _seed_eventpacks(data: Path, url: str, token: str | None) -> None:
    """For the Event packs page: a kiosk that can receive packs, and a pack made for it."""
    from central.settings import CentralSettings
    from central.store import CentralStore
    from central.testing import enroll_device
    from portier_common.eventpack import generate_key, public_key_bytes
    from portier_common.signing import b64url

    key = b64url(public_key_bytes(generate_key()))
    enroll_device(url, door="hall", device_id="kiosk-fair", token=token, event_pack_key=key)
    with CentralStore(CentralSettings(data_dir=data)) as store:
        now = store.now_ms() // 1000
        day = now - now % 86400 + 86400
        guests = [i["id"] for i in store.list_invitations() if i.get("revoked_at") is None]
        store.create_event_pack(
            {
                "device_id": "kiosk-fair",
                "invitations": guests[:3],
                "event": {"name": "Salon de l'innovation", "starts": day, "ends": day + 9 * 3600},
                "kiosk": {"language": "fr", "welcome": "Bienvenue au salon"},
            },
            by=OPERATOR,
        )


def _seed_security(data: Path, url: str, token: str | None) -> None:
    """For the security pages: a door that sent events (check-ins, a refusal, alarms), a
    heartbeat with alarms (one acknowledged), and its self-test reports."""
    from central.settings import CentralSettings
    from central.store import CentralStore
    from central.testing import ChainBuilder, enroll_device

    _, gate = enroll_device(url, door="gate-a", device_id="pi-gate-a", token=token)
    now = int(time.time() * 1000)
    chain = ChainBuilder()
    minute = 60_000
    events: list[tuple[str, dict[str, Any], int]] = [
        ("agent.started", {"device": "pi-gate-a", "mode": "normal"}, -50),
        ("access.decision", {"granted": True, "kind": "qr", "holder": "Marie Dupont"}, -42),
        ("visitor.checked_in", {"visitor": "Marie Dupont", "by": "visitor"}, -41),
        ("access.decision", {"granted": False, "kind": "badge", "reason": "revoked"}, -30),
        ("access.decision", {"granted": True, "kind": "badge", "holder": "Léa Bernard"}, -25),
        ("alarm.raised", {"alarm": "held_open", "after_ms": 30000}, -20),
        ("sync.alarm", {"code": "backlog", "state": "raised", "detail": "140 waiting"}, -12),
        ("access.decision", {"granted": False, "kind": "qr", "reason": "expired",
                             "holder": "Tom Baker"}, -6),
        ("visitor.checked_in", {"visitor": "Hélène Rousseau", "by": "guard:g1"}, -2),
    ]  # fmt: skip
    batch = [chain.event(kind, payload, wall_ms=now + at * minute) for kind, payload, at in events]
    gate.post(f"{url}/v1/events", json={"events": batch}, timeout=10).raise_for_status()
    for ok in (True, False):  # an earlier report that passed, the latest that failed
        results = [
            {"component": "reader", "check": "present", "status": "pass", "detail": "PN532"},
            {"component": "relay", "check": "readback", "status": "pass" if ok else "fail",
             "detail": "relay reads back" if ok else "relay did not release",
             **({} if ok else {"hint": "check the relay's wiring"})},
            {"component": "camera", "check": "frame", "status": "skipped"},
        ]  # fmt: skip
        gate.post(
            f"{url}/v1/selftest", json={"ok": ok, "results": results}, timeout=10
        ).raise_for_status()
    heartbeat: dict[str, Any] = {
        "sent_at_ms": now,
        "backlog": {"pending": 140, "dead_letter": 0},
        "last_sync_ms": now - 3 * minute,
        "clock_offset_ms": -38,
        "versions": {"edge-agent": "0.9.1"},
        "alarms": [
            {"code": "backlog", "since_ms": now - 12 * minute, "detail": "140 waiting"},
            {"code": "door.held_open", "since_ms": now - 20 * minute, "detail": "active"},
        ],
    }
    gate.post(f"{url}/v1/heartbeat", json=heartbeat, timeout=10).raise_for_status()
    with CentralStore(CentralSettings(data_dir=data)) as store:
        store.acknowledge_alarm(
            "pi-gate-a", "backlog", now - 12 * minute, OPERATOR, "Network switch restarted"
        )


#: (name, what to do before the shot) for each page; each starts logged in.
def _shots(base: str) -> Iterator[tuple[str, Callable[[Any], None]]]:
    from selenium.webdriver.common.by import By

    def visitors_error(browser: Any) -> None:
        browser.get(f"{base}/console/visitors")
        browser.find_element(By.ID, "visitor").send_keys(" ")
        browser.execute_script("document.querySelector('form.grid').noValidate = true")
        follow(browser, browser.find_element(By.CSS_SELECTOR, "form.grid button[type=submit]"))

    def import_preview(browser: Any) -> None:
        browser.get(f"{base}/console/visitors/import")
        with tempfile.TemporaryDirectory() as where:
            path = Path(where) / "guests.csv"
            path.write_text(IMPORT_WITH_ERRORS, encoding="utf-8")
            browser.find_element(By.ID, "label").send_keys("Nobel gala")
            browser.find_element(By.ID, "file").send_keys(str(path))
            follow(browser, browser.find_element(By.CSS_SELECTOR, "form.grid button"))

    yield "home", lambda browser: browser.get(f"{base}/console/")
    yield "visitors", lambda browser: browser.get(f"{base}/console/visitors")
    yield "visitors-errors", visitors_error
    yield "visitors-recurring", lambda browser: browser.get(f"{base}/console/visitors/recurring")
    yield "visitors-group", lambda browser: browser.get(f"{base}/console/visitors/group")
    yield "visitors-import", import_preview

    def live(browser: Any) -> None:
        browser.get(f"{base}/console/live")
        time.sleep(3)  # the rows the stream adds fade from yellow in 2 s

    yield "live", live
    yield "alarms", lambda browser: browser.get(f"{base}/console/alarms")
    yield "devices", lambda browser: browser.get(f"{base}/console/devices")
    yield "device", lambda browser: browser.get(f"{base}/console/devices/pi-gate-a")
    yield "doors", lambda browser: browser.get(f"{base}/console/doors")
    yield "deny-list", lambda browser: browser.get(f"{base}/console/deny-list")
    yield "approvals", lambda browser: browser.get(f"{base}/console/approvals")
    yield "onsite", lambda browser: browser.get(f"{base}/console/onsite")
    yield "muster", lambda browser: browser.get(f"{base}/console/onsite/muster")
    yield "stats", lambda browser: browser.get(f"{base}/console/stats?days=30")

    def access_errors(browser: Any) -> None:
        browser.get(f"{base}/console/access")
        rules = browser.find_element(By.ID, "rules")
        rules.clear()
        rules.send_keys("mon-fri 08:00-18:00\nfunday 09:00-12:00\nsat 22:00-06:00")
        browser.find_element(By.ID, "schedule_id").send_keys("dock")
        follow(browser, browser.find_element(By.CSS_SELECTOR, "#schedule-form button"))

    yield "badges", lambda browser: browser.get(f"{base}/console/badges")
    yield "access", lambda browser: browser.get(f"{base}/console/access")
    yield "access-errors", access_errors
    yield (
        "rights",
        lambda browser: browser.get(f"{base}/console/rights?uid=04a1b2c3d4e5f6&door=gate-a"),
    )
    yield "operators", lambda browser: browser.get(f"{base}/console/operators")

    def operator_added(browser: Any) -> None:
        browser.get(f"{base}/console/operators")
        lang = browser.find_element(By.TAG_NAME, "html").get_attribute("lang")
        browser.find_element(By.ID, "name").send_keys(f"noah-{lang}")
        follow(browser, browser.find_element(By.CSS_SELECTOR, "form.grid button[type=submit]"))

    yield "operators-password", operator_added
    yield "eventpacks", lambda browser: browser.get(f"{base}/console/event-packs")


#: The seeded visitor whose printable invitation is pictured, per language.
_INVITED = {"en": "Kenji Sato", "fr": "Marie Dupont"}


def _invitation_picture(browser: Any, base: str, out: Path, lang: str) -> list[Path]:
    """``invitation-LANG.png``: the PDF the Visitors page's link downloads, drawn by poppler
    (as it prints), for a visitor invited in *lang*."""
    import subprocess

    import requests
    from selenium.webdriver.common.by import By

    if shutil.which("pdftoppm") is None:
        log.warning("no pdftoppm (poppler-utils): the invitation's picture is not made")
        return []
    browser.get(f"{base}/console/visitors")
    xpath = f"//tr[td[1][normalize-space()='{_INVITED[lang]}']]//a[contains(@href, '/pdf')]"
    href = browser.find_element(By.XPATH, xpath).get_attribute("href")
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    answer = requests.get(href, cookies=cookies, timeout=30)
    answer.raise_for_status()
    with tempfile.TemporaryDirectory(prefix="portier-invitation-") as where:
        pdf = Path(where) / "invitation.pdf"
        pdf.write_bytes(answer.content)
        stem = out / f"invitation-{lang}"
        subprocess.run(
            ["pdftoppm", "-png", "-r", "72", "-singlefile", str(pdf), str(stem)],
            check=True,
            timeout=60,
        )
    return [stem.with_suffix(".png")]


@contextmanager
def demo_central() -> Iterator[str]:
    """A seeded demo central (temporary data directory); yields its URL."""
    from central.testing import CentralProcess

    with tempfile.TemporaryDirectory(prefix="portier-console-") as where:
        data = Path(where) / "central"
        with CentralProcess(data) as central:
            _seed(data, central.url, central.token)
            yield central.url


def take(out: Path, base: str, width: int = 1280) -> list[Path]:
    """Log in to the console at *base* and save every page in each language into *out*."""
    from selenium.webdriver.common.by import By

    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    for lang in LANGUAGES:
        browser = chromium(width, lang=lang)
        try:
            set_language(browser, base, lang, "/console/login")
            save_page(browser, out / f"login-{lang}.png", width)
            saved.append(out / f"login-{lang}.png")
            log_in(browser, base, OPERATOR, PASSWORD)
            for name, go in _shots(base):
                go(browser)
                path = out / f"{name}-{lang}.png"
                save_page(browser, path, width)
                saved.append(path)
            saved.extend(_invitation_picture(browser, base, out, lang))
            # Another role: a wrong password first, then what an auditor sees.
            follow(browser, browser.find_element(By.CSS_SELECTOR, "form.logout button"))
            for name, password, page in (
                ("login-error", "not-the-password", None),
                ("home-auditor", PASSWORD, None),
                ("refused", None, "/console/visitors"),
            ):
                if password is not None:
                    log_in(browser, base, AUDITOR, password)
                if page is not None:
                    browser.get(base + page)
                path = out / f"{name}-{lang}.png"
                save_page(browser, path, width)
                saved.append(path)
        finally:
            browser.quit()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m central.console.screenshots")
    parser.add_argument("out", type=Path, help="where the NAME-LANG.png files go")
    parser.add_argument("--width", type=int, default=1280, help="window width (pixels)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with demo_central() as base:
        for path in take(args.out, base, args.width):
            print(path)  # noqa: T201 (the command's output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
