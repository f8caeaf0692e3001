"""The console in a real browser: Debian's headless Chromium, driven by chromium-driver and
Selenium, against a real central. Log in, pre-register a visitor, see it listed, switch
to French and see French, revoke it; a wrong password shows an error.

Skipped (with the command to fix it) where chromium or chromium-driver is missing:
``tools/dev test`` installs them.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import NEEDS_CHROMIUM, PASSWORD, text

pytestmark = [
    pytest.mark.processes,
    NEEDS_CHROMIUM,
]


def test_wrong_password_shows_an_error(fresh: Any, console_central):
    from central.console.screenshots import log_in

    log_in(fresh, console_central.url, "paul", "not the password")
    assert text(fresh, "p.error") == "Wrong name or password."
    assert fresh.current_url.endswith("/console/login")


def test_pre_register_list_french_and_revoke(fresh: Any, console_central):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from central.console.screenshots import follow, log_in

    base = console_central.url
    log_in(fresh, base, "paul", PASSWORD)
    assert text(fresh, ".who .name") == "paul"
    assert text(fresh, ".who .role") == "Pass Office"
    follow(fresh, fresh.find_element(By.LINK_TEXT, "Visitors"))
    assert text(fresh, "h1") == "Visitors"

    form = fresh.find_element(By.CSS_SELECTOR, "form.grid")
    form.find_element(By.ID, "visitor").send_keys("Émilie du Châtelet")
    form.find_element(By.ID, "host").send_keys("Voltaire")
    form.find_element(By.ID, "host_email").send_keys("voltaire@example.com")
    form.find_element(By.ID, "doors").send_keys("front")
    Select(form.find_element(By.ID, "lang")).select_by_value("fr")
    form.find_element(By.CSS_SELECTOR, "input[name=use][value=single]").click()
    follow(fresh, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))

    assert text(fresh, "p.done") == "Invitation created for Émilie du Châtelet."
    row = fresh.find_element(By.XPATH, "//tr[td[1][normalize-space()='Émilie du Châtelet']]")
    assert "Voltaire" in row.text and "Single" in row.text
    assert row.find_element(By.CSS_SELECTOR, ".status").text == "Valid"
    row_id = row.get_attribute("id")

    follow(fresh, fresh.find_element(By.CSS_SELECTOR, "a[hreflang=fr]"))
    assert fresh.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
    assert text(fresh, "h1") == "Visiteurs"
    assert text(fresh, ".who .role") == "Bureau des badges"
    row = fresh.find_element(By.ID, row_id)
    assert row.find_element(By.CSS_SELECTOR, ".status").text == "Valide"

    row.find_element(By.NAME, "reason").send_keys("réunion annulée")
    follow(fresh, row.find_element(By.CSS_SELECTOR, "button.danger"))
    assert text(fresh, "p.done") == "Invitation révoquée."
    row = fresh.find_element(By.ID, row_id)
    assert row.find_element(By.CSS_SELECTOR, ".status").text == "Révoquée"
    assert not row.find_elements(By.NAME, "reason")  # nothing left to revoke

    follow(fresh, fresh.find_element(By.CSS_SELECTOR, "form.logout button"))
    assert fresh.current_url.endswith("/console/login")
    assert text(fresh, "h1") == "Se connecter"  # the language stays after logout
