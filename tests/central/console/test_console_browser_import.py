"""The CSV import in a real browser (Debian's headless Chromium through Selenium) against
a real central: upload a guest list with errors, read them line by line in the preview,
upload the corrected file, confirm, and find the invitations listed as one group.

Skipped (with the command to fix it) where chromium or chromium-driver is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from central.settings import CentralSettings
from central.store import CentralStore
from central.testing import enroll_device

from .conftest import NEEDS_CHROMIUM, PASSWORD

pytestmark = [
    pytest.mark.processes,
    NEEDS_CHROMIUM,
]

#: Written as Excel in French writes a "CSV UTF-8" file: a byte-order mark, ";".
WITH_ERRORS = (
    "\ufeffNom;Début;Fin;Portes;Usage\n"
    "Marie Curie;05/12/2036 08:00;05/12/2036 18:00;hall-door;unique\n"
    ";05/12/2036 08:00;05/12/2036 18:00;hall-door;\n"
    "Pierre Curie;05/12/2036 08:00;05/12/2036 18:00;cellar;\n"
)
CORRECTED = (
    "\ufeffNom;Début;Fin;Portes;Usage\n"
    "Marie Curie;05/12/2036 08:00;05/12/2036 18:00;hall-door;unique\n"
    "Irène Joliot-Curie;05/12/2036 08:00;05/12/2036 18:00;hall-door;\n"
    "Pierre Curie;05/12/2036 08:00;05/12/2036 18:00;hall-door;\n"
)


def _upload(browser: Any, path: Path, label: str) -> None:
    from selenium.webdriver.common.by import By

    from central.console.screenshots import follow

    form = browser.find_element(By.CSS_SELECTOR, "form[enctype='multipart/form-data']")
    field = form.find_element(By.ID, "label")
    field.clear()
    field.send_keys(label)
    form.find_element(By.ID, "file").send_keys(str(path))
    follow(browser, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))


def test_import_preview_then_confirm(browser: Any, console_central, tmp_path: Path):
    from selenium.webdriver.common.by import By

    from central.console.screenshots import follow, log_in

    enroll_device(console_central.url, door="hall-door", device_id="import-hall")
    bad, good = tmp_path / "gala-draft.csv", tmp_path / "gala.csv"
    bad.write_text(WITH_ERRORS, encoding="utf-8")
    good.write_text(CORRECTED, encoding="utf-8")

    log_in(browser, console_central.url, "paul", PASSWORD)
    follow(browser, browser.find_element(By.LINK_TEXT, "Visitors"))
    follow(browser, browser.find_element(By.LINK_TEXT, "Import a guest list (CSV)"))
    _upload(browser, bad, "Nobel gala")

    summary = browser.find_element(By.ID, "line-errors-summary").text
    assert summary.startswith("2 of 3 lines have errors")
    assert "Ready" in browser.find_element(By.ID, "line-2").text
    assert "The visitor's name is missing." in browser.find_element(By.ID, "line-3").text
    assert "Unknown door “cellar”." in browser.find_element(By.ID, "line-4").text
    assert not browser.find_elements(By.ID, "confirm")

    _upload(browser, good, "Nobel gala")
    assert "3 invitations are ready." in browser.find_element(By.CSS_SELECTOR, "p.done").text
    assert "2036-12-05 08:00" in browser.find_element(By.ID, "line-3").text
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#confirm button"))

    assert browser.current_url.split("?")[0].endswith("/console/visitors")
    done = browser.find_element(By.CSS_SELECTOR, "p.done").text
    assert done == "3 invitations imported: Nobel gala."
    head = browser.find_element(By.CSS_SELECTOR, "tr.group-head").text
    assert head.startswith("CSV import: Nobel gala")
    with CentralStore(CentralSettings(data_dir=console_central.data_dir)) as store:
        made = [
            i["visitor"]
            for i in store.list_invitations()
            if i["group"] and i["group"]["label"] == "Nobel gala"
        ]
    assert sorted(made) == ["Irène Joliot-Curie", "Marie Curie", "Pierre Curie"]
