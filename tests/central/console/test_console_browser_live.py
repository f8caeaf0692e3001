"""The live events page in a real browser (headless Chromium, as test_console_browser.py):
the page is open, a device uploads a check-in, and its row appears without a reload,
pushed by the central (Server-Sent Events, the page's own static script under the strict
CSP). Then the alarms page: acknowledge an alarm with a note."""

from __future__ import annotations

import time
from typing import Any

import pytest

from central.testing import ChainBuilder, enroll_device

from .conftest import NEEDS_CHROMIUM, PASSWORD

pytestmark = [
    pytest.mark.processes,
    NEEDS_CHROMIUM,
]


def _wait(predicate: Any, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_check_in_appears_live_and_an_alarm_is_acknowledged(
    fresh: Any,
    console_central,
):
    from selenium.webdriver.common.by import By

    from central.console.screenshots import follow, log_in

    base = console_central.url
    _enrolled, session = enroll_device(base, door="gate-b", device_id="live-gate-b")
    log_in(fresh, base, "olivia", PASSWORD)
    follow(fresh, fresh.find_element(By.LINK_TEXT, "Live events"))
    assert fresh.find_element(By.CSS_SELECTOR, "h1").text == "Live events"
    status = fresh.find_element(By.ID, "live-status")
    assert _wait(lambda: status.text.startswith("Live")), status.text  # the stream is open
    fresh.execute_script("window.notReloaded = true;")

    chain = ChainBuilder()
    now = int(time.time() * 1000)
    events = [
        chain.event("visitor.checked_in", {"invitation_id": "inv-t", "visitor": "Alan Turing"}),
        chain.event("alarm.raised", {"alarm": "held_open", "after_ms": 30000}),
    ]
    answer = session.post(f"{base}/v1/events", json={"events": events}, timeout=10)
    assert answer.status_code == 200, answer.text

    def rows() -> list[str]:  # read in one go: the script changes the rows meanwhile
        return list(
            fresh.execute_script(
                "return Array.from(document.querySelectorAll('#live-events tbody tr'))"
                ".map(function (row) { return row.innerText; });"
            )
        )

    assert _wait(lambda: any("Alan Turing checked in at gate-b" in r for r in rows())), rows()
    assert "Alarm at gate-b: Door held open" in rows()[0]  # newest first
    assert fresh.execute_script("return window.notReloaded === true;")  # no reload
    warn = fresh.find_element(By.CSS_SELECTOR, "#live-events tbody tr.warn")
    assert "Door held open" in warn.text

    # The device reports the alarm; the security officer acknowledges it with a note.
    heartbeat = {
        "sent_at_ms": now,
        "alarms": [{"code": "door.held_open", "since_ms": now - 5000, "detail": "active"}],
    }
    assert session.post(f"{base}/v1/heartbeat", json=heartbeat, timeout=10).ok
    follow(fresh, fresh.find_element(By.LINK_TEXT, "Alarms"))
    row = next(
        r
        for r in fresh.find_elements(By.CSS_SELECTOR, "#alarms tbody tr")
        if "live-gate-b" in r.text
    )
    assert "Door held open" in row.text
    row.find_element(By.NAME, "note").send_keys("Delivery door, closed by the guard")
    follow(fresh, row.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert fresh.find_element(By.CSS_SELECTOR, "p.done").text == "Alarm acknowledged."
    row = next(
        r
        for r in fresh.find_elements(By.CSS_SELECTOR, "#alarms tbody tr")
        if "live-gate-b" in r.text
    )
    assert "By olivia at" in row.text and "Delivery door, closed by the guard" in row.text
