"""The rights explanation in a real browser (Debian's headless Chromium through Selenium),
against a real central: a security officer sets a schedule and a holiday, gives a badge that
schedule, and asks whether it opens a door: the page says no today (the holiday, by name),
yes on the other days within the hours, and why; after the holiday is removed, yes now.

Skipped (with the command to fix it) where chromium or chromium-driver is missing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from central.testing import enroll_device

from .conftest import NEEDS_CHROMIUM, PASSWORD

pytestmark = [
    pytest.mark.processes,
    NEEDS_CHROMIUM,
]


def test_a_holiday_explained_by_the_doors_decision(browser: Any, console_central) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from central.console.screenshots import follow, log_in

    base = console_central.url
    _, session = enroll_device(base, door="vault", zones=["secure"], token=console_central.token)
    session.close()
    # The site's day, in the schedule's zone (the central here keeps UTC).
    today = dt.datetime.now(ZoneInfo("UTC")).date()
    log_in(browser, base, "olivia", PASSWORD)

    # A schedule for zone "secure": every day, all day; today a holiday.
    follow(browser, browser.find_element(By.LINK_TEXT, "Access levels"))
    form = browser.find_element(By.ID, "schedule-form")
    form.find_element(By.ID, "schedule_id").send_keys("secure")
    timezone = form.find_element(By.ID, "timezone")
    timezone.clear()
    timezone.send_keys("UTC")
    rules = form.find_element(By.ID, "rules")
    rules.clear()
    rules.send_keys("mon-sun 00:00-24:00")
    follow(browser, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "Schedule of secure saved" in browser.find_element(By.CSS_SELECTOR, "p.done").text
    holiday = browser.find_element(By.ID, "holiday-form")
    # A date field is typed in the browser's own format (MM/DD/YYYY here): set its value
    # as the date picker does.
    browser.execute_script(
        "arguments[0].value = arguments[1]", holiday.find_element(By.ID, "date"), today.isoformat()
    )
    holiday.find_element(By.ID, "holiday_name").send_keys("Vault inventory")
    follow(browser, holiday.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert (
        f"Holiday of {today.isoformat()} saved"
        in browser.find_element(By.CSS_SELECTOR, "p.done").text
    )

    # A badge on that schedule.
    follow(browser, browser.find_element(By.LINK_TEXT, "Badges"))
    form = browser.find_element(By.ID, "badge-form")
    form.find_element(By.ID, "uid").send_keys("04BEEFBEEFBE01")
    form.find_element(By.ID, "holder").send_keys("Véra Vault")
    form.find_element(By.ID, "zones").send_keys("secure")
    Select(form.find_element(By.ID, "schedule")).select_by_value("secure")
    follow(browser, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "Badge of Véra Vault saved" in browser.find_element(By.CSS_SELECTOR, "p.done").text

    # Its rights at the vault, from the badge's row.
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#badge-04beefbeefbe01 a[href*=rights]"))
    Select(browser.find_element(By.ID, "door")).select_by_value("vault")
    follow(browser, browser.find_element(By.ID, "explain"))
    verdict = browser.find_element(By.ID, "verdict")
    assert verdict.text == "Véra Vault may not enter at vault now."
    assert verdict.get_attribute("data-reason") == "holiday"
    assert browser.find_element(By.ID, "reason").text == (
        "The schedule is closed for a holiday: Vault inventory."
    )
    why = browser.find_element(By.ID, "why").text
    assert "The badge names zone secure, and vault is in it." in why
    assert f"Holiday this week: {today.isoformat()}, Vault inventory." in why
    week = browser.find_elements(By.CSS_SELECTOR, "#week tbody tr")
    assert len(week) == 7
    for row in week:
        cells = row.text
        if today.isoformat() in cells:
            assert "No: closed for a holiday" in cells
        else:
            assert "00:00–24:00" in cells

    # In French, the same explanation.
    follow(browser, browser.find_element(By.CSS_SELECTOR, "a[hreflang=fr]"))
    assert browser.find_element(By.ID, "verdict").text == (
        "Véra Vault ne peut pas entrer à vault maintenant."
    )
    follow(browser, browser.find_element(By.CSS_SELECTOR, "a[hreflang=en]"))

    # The holiday removed: the door would open now.
    follow(browser, browser.find_element(By.LINK_TEXT, "Access levels"))
    follow(
        browser,
        browser.find_element(By.CSS_SELECTOR, f"#holiday-{today.isoformat()} button"),
    )
    browser.get(f"{base}/console/rights?uid=04beefbeefbe01&door=vault")
    assert browser.find_element(By.ID, "verdict").text == "Véra Vault may enter at vault now."
