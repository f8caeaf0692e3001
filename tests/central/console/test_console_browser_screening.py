"""The deny list and approvals in a real browser (Debian's headless Chromium through Selenium):
a security officer puts a name on the list, the Pass Office pre-registers that person written
otherwise and sees the invitation wait, a second security officer approves it on the
Approvals page (in French), and the Pass Office then has its PDF link and Resend button."""

from __future__ import annotations

from typing import Any

import pytest

from central.settings import CentralSettings
from central.store import CentralStore

from .conftest import NEEDS_CHROMIUM, PASSWORD, text

pytestmark = [
    pytest.mark.processes,
    NEEDS_CHROMIUM,
]


def _as(browser: Any, base: str, name: str) -> None:
    from central.console.screenshots import log_in

    browser.delete_all_cookies()
    log_in(browser, base, name, PASSWORD)


def test_deny_list_hold_and_approval_in_the_browser(browser: Any, console_central: Any) -> None:
    from selenium.webdriver.common.by import By

    from central.console.screenshots import follow

    base = console_central.url
    with CentralStore(CentralSettings(data_dir=console_central.data_dir)) as store:
        if "sofia" not in {o["name"] for o in store.list_operators()}:
            store.add_operator("sofia", "security_officer", PASSWORD)

    _as(browser, base, "olivia")
    follow(browser, browser.find_element(By.LINK_TEXT, "Deny list"))
    browser.find_element(By.ID, "name").send_keys("Voltaire François-Marie Arouet")
    browser.find_element(By.ID, "reason").send_keys("Banned from the site")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.grid button[type=submit]"))
    assert text(browser, "p.done") == "Voltaire François-Marie Arouet is on the deny list."
    assert "Banned from the site" in text(browser, "#deny-list")

    _as(browser, base, "paul")
    assert not browser.find_elements(By.LINK_TEXT, "Deny list")
    follow(browser, browser.find_element(By.LINK_TEXT, "Visitors"))
    form = browser.find_element(By.CSS_SELECTOR, "form.grid")
    form.find_element(By.ID, "visitor").send_keys("AROUET francois marie VOLTAIRE")
    form.find_element(By.ID, "visitor_email").send_keys("voltaire@example.com")
    form.find_element(By.ID, "doors").send_keys("front")
    follow(browser, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "awaits a security officer's approval" in text(browser, "p.done")
    xpath = "//tr[td[1][normalize-space()='AROUET francois marie VOLTAIRE']]"
    row = browser.find_element(By.XPATH, xpath)
    assert row.find_element(By.CSS_SELECTOR, ".status").text == "Awaiting approval"
    assert not row.find_elements(By.PARTIAL_LINK_TEXT, "PDF")
    row_id = row.get_attribute("id")

    _as(browser, base, "sofia")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "a[hreflang=fr]"))
    follow(browser, browser.find_element(By.LINK_TEXT, "Approbations"))
    pending = browser.find_element(By.ID, "pending-" + row_id.removeprefix("inv-"))
    assert "Voltaire François-Marie Arouet" in pending.text and "paul" in pending.text
    pending.find_element(By.NAME, "reason").send_keys("Invité par la direction")
    follow(browser, pending.find_element(By.CSS_SELECTOR, "button[value=approve]"))
    assert "est approuvée" in text(browser, "p.done")
    assert text(browser, "#approvals tbody") == "Aucune invitation n'attend d'approbation."

    _as(browser, base, "paul")
    browser.get(f"{base}/console/lang/en?next=/console/visitors")
    row = browser.find_element(By.ID, row_id)
    assert row.find_element(By.CSS_SELECTOR, ".status").text == "Valid"
    assert row.find_element(By.PARTIAL_LINK_TEXT, "PDF").get_attribute("href").endswith("/pdf")
    follow(browser, row.find_element(By.CSS_SELECTOR, "form.resend button"))
    assert text(browser, "p.done") == "The invitation is sent again to voltaire@example.com."
