"""Save a screenshot of every console page, in English and French, with headless Chromium.

Usage::

    python -m central.console.screenshots docs/console [--width 1280]

It starts a demo central of its own (a temporary data directory, loopback, a free port),
adds operators with passwords (a security officer, an auditor), two enrolled doors of one
zone (one heard from, reporting lockdown; modes set for the zone and a door), a third that
sent events, alarms and self-tests (:func:`_seed_security`) and a few invitations (valid, not
valid yet, single use, revoked), logs in through the login page as a person would, and saves
``NAME-LANG.png`` for each page (the whole page, not only the window): the login page, the
security officer's pages (:func:`_shots`: home, visitors, live events, alarms, devices, one
device, doors, event packs), a wrong password, and what an auditor sees (the home page
without Visitors, the refusal of that page).
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
            {"visitor": "Marie Dupont", "host": "Jean Martin", "doors": ["front"]},
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
    _seed_eventpacks(data, url, token)


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

    yield "home", lambda browser: browser.get(f"{base}/console/")
    yield "visitors", lambda browser: browser.get(f"{base}/console/visitors")
    yield "visitors-errors", visitors_error
    yield "live", lambda browser: browser.get(f"{base}/console/live")
    yield "alarms", lambda browser: browser.get(f"{base}/console/alarms")
    yield "devices", lambda browser: browser.get(f"{base}/console/devices")
    yield "device", lambda browser: browser.get(f"{base}/console/devices/pi-gate-a")
    yield "doors", lambda browser: browser.get(f"{base}/console/doors")
    yield "eventpacks", lambda browser: browser.get(f"{base}/console/event-packs")


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
