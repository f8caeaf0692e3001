"""Issue #14's "Done means", end to end in a real browser: Debian's headless Chromium (driven
by chromium-driver through Selenium), a real central (``portier-central serve``) and a real
``edge-agent run`` on simulated hardware at door gate-a.

Log in; pre-register a visitor in the console; the invitation verifies at the door (the
agent's local API, ``present_qr``, as the kiosk's scanner does) and the visitor checks in;
the check-in appears on the Live events page, open meanwhile, without a reload, and on the
On site page; the door is put in lockdown from the Doors page and the agent refuses the
same invitation with ``lockdown``; a statistic is exported as CSV by its link and its
content checked (the check-in on today's row, the lockdown refusal counted).
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.sync_rig import make_config, running_agent, wait_until

from .conftest import NEEDS_CHROMIUM, PASSWORD

pytestmark = [
    pytest.mark.processes,
    NEEDS_CHROMIUM,
]

DOOR = "gate-a"
VISITOR = "Hedy Lamarr"


def _invitation_qr(data_dir: Path, invitation_id: str) -> str:
    """The invitation's QR text, as its printable invitation and its e-mail carry it
    (``store.invitation_token``: the stored claims signed again with the same key)."""
    from central.settings import CentralSettings
    from central.store import CentralStore

    with CentralStore(CentralSettings(data_dir=data_dir)) as store:
        return str(store.invitation_token(invitation_id)["token"])


def _live_rows(browser: Any) -> list[str]:
    return list(
        browser.execute_script(
            "return Array.from(document.querySelectorAll('#live-events tbody tr'))"
            ".map(function (row) { return row.innerText; });"
        )
    )


def test_done_means_end_to_end(console_central, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from central.console.screenshots import chromium, follow, log_in
    from edge_agent.enroll import enroll

    base = console_central.url
    config = make_config(tmp_path / "agent", base, device="done-gate-a", door=DOOR)
    with console_central.admin() as admin:
        enroll(config, admin.create_enroll_token(DOOR, zones=["north"])["enroll_token"])
    poll_s = config.central.sync_interval_s
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = chromium()
    browser.implicitly_wait(5)
    try:
        with running_agent(config) as agent:
            # Log in and pre-register a visitor for the door.
            log_in(browser, base, "olivia", PASSWORD)
            follow(browser, browser.find_element(By.LINK_TEXT, "Visitors"))
            form = browser.find_element(By.CSS_SELECTOR, "form.grid")
            form.find_element(By.ID, "visitor").send_keys(VISITOR)
            form.find_element(By.ID, "host").send_keys("George Antheil")
            form.find_element(By.ID, "doors").send_keys(DOOR)
            follow(browser, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
            assert browser.find_element(By.CSS_SELECTOR, "p.done").text == (
                f"Invitation created for {VISITOR}."
            )
            row = browser.find_element(By.XPATH, f"//tr[td[1][normalize-space()='{VISITOR}']]")
            invitation_id = str(row.get_attribute("id")).removeprefix("inv-")
            qr = _invitation_qr(console_central.data_dir, invitation_id)

            # The Live events page is open while the visitor arrives.
            follow(browser, browser.find_element(By.LINK_TEXT, "Live events"))
            status = browser.find_element(By.ID, "live-status")
            wait_until(lambda: status.text.startswith("Live"), what="the live stream open")
            browser.execute_script("window.notReloaded = true;")

            # The invitation verifies at the door (once the door has it: its next sync).
            decision = wait_until(
                lambda: (d := agent.client.present_qr(qr))["granted"] and d,
                timeout_s=10 * poll_s + 10,
                what="the invitation granted at the door",
            )
            assert decision["credential_id"] == invitation_id
            checked = agent.client.checkin(invitation_id, consent=False)
            assert checked["checked_in"] is True

            # The check-in appears live, pushed, without a reload.
            wait_until(
                lambda: any(f"{VISITOR} checked in at {DOOR}" in r for r in _live_rows(browser)),
                timeout_s=10 * poll_s + 15,
                what="the check-in on the live page",
            )
            assert any(f"{VISITOR} entered at {DOOR}" in r for r in _live_rows(browser))
            assert browser.execute_script("return window.notReloaded === true;")

            # On site now: at gate-a, with the host and the time of entry.
            follow(browser, browser.find_element(By.LINK_TEXT, "On site"))
            door = browser.find_element(By.XPATH, f"//section[h2[@id='door-{DOOR}']]")
            assert VISITOR in door.text and "George Antheil" in door.text
            # The same list as the door's own muster screen.
            [here] = agent.client.muster()["visitors"]
            assert (here["visitor"], here["host"]) == (VISITOR, "George Antheil")
            entered = time.strftime("%Y-%m-%d %H:%M", time.gmtime(here["entered_at"]))
            assert entered in door.text

            # Lockdown from the console; the agent obeys.
            follow(browser, browser.find_element(By.LINK_TEXT, "Doors"))
            row = browser.find_element(By.ID, f"door-{DOOR}")
            Select(row.find_element(By.NAME, "mode")).select_by_value("lockdown")
            row.find_element(By.NAME, "reason").send_keys("drill: intruder at the gate")
            follow(browser, row.find_element(By.CSS_SELECTOR, "button[type=submit]"))
            assert browser.find_element(By.CSS_SELECTOR, "p.done").text.startswith(
                f"{DOOR} is in lockdown"
            )
            wait_until(
                lambda: agent.client.present_qr(qr)["reason"] == "lockdown",
                timeout_s=10 * poll_s + 10,
                what="lockdown obeyed",
            )
            status_now = agent.status()
            assert status_now["door"]["mode"] == "lockdown"
            assert status_now["mode_set"]["central"]["reason"] == "drill: intruder at the gate"

            # Export statistics: the refusal counted once the door has uploaded it.
            follow(browser, browser.find_element(By.LINK_TEXT, "Statistics"))
            browser.execute_cdp_cmd(
                "Browser.setDownloadBehavior",
                {"behavior": "allow", "downloadPath": str(downloads)},
            )

            def download(name: str) -> list[list[str]]:
                for old in downloads.iterdir():
                    old.unlink()
                link = browser.find_element(
                    By.CSS_SELECTOR, f"a[href^='/console/stats/{name}.csv']"
                )
                link.click()
                files = wait_until(
                    lambda: [p for p in downloads.iterdir() if p.suffix == ".csv"],
                    what=f"{name}.csv downloaded",
                )
                return list(csv.reader(io.StringIO(files[0].read_text(encoding="utf-8"))))

            def denies() -> list[list[str]]:
                browser.refresh()
                return download("denies")

            refused = wait_until(
                lambda: (
                    (rows := denies()) and ["lockdown", "door in lockdown", "1"] in rows and rows
                ),
                timeout_s=10 * poll_s + 15,
                what="the lockdown refusal in the CSV",
            )
            assert refused[0] == ["reason_code", "reason", "count"]
            per_day = download("visits-per-day")
            assert per_day[0] == ["date", "check_ins"]
            today = time.strftime("%Y-%m-%d", time.gmtime())  # the central's site zone is UTC
            assert per_day[-1] == [today, "1"]
            assert sum(int(r[1]) for r in per_day[1:]) == 1

            # Back to normal for the next test's sake; the door grants again.
            follow(browser, browser.find_element(By.LINK_TEXT, "Doors"))
            row = browser.find_element(By.ID, f"door-{DOOR}")
            Select(row.find_element(By.NAME, "mode")).select_by_value("normal")
            row.find_element(By.NAME, "reason").send_keys("drill over")
            follow(browser, row.find_element(By.CSS_SELECTOR, "button[type=submit]"))
            wait_until(
                lambda: agent.client.present_qr(qr)["granted"],
                timeout_s=10 * poll_s + 10,
                what="normal again",
            )
    finally:
        browser.quit()


def test_the_muster_list_prints_on_a4(console_central, tmp_path: Path):
    """The muster list printed by Chromium (its print engine, the page's print stylesheet):
    A4 pages, the visitors listed, none of the console's navigation."""
    import base64
    import re
    import subprocess

    from central.console.screenshots import chromium, log_in
    from central.testing import ChainBuilder, enroll_device

    base = console_central.url
    _, session = enroll_device(base, door="gate-p", device_id="print-gate-p")
    chain = ChainBuilder()
    names = [f"Visitor {n:02d} Émile" for n in range(60)]  # more than one page
    long_ago = int(time.time() * 1000) - 100 * 86_400_000  # out of the statistics' periods
    events = [
        chain.event(
            "visitor.checked_in",
            {"invitation_id": f"print-{n}", "visitor": name, "host": "Host", "door": "gate-p"},
            wall_ms=long_ago,
        )
        for n, name in enumerate(names)
    ]
    assert session.post(f"{base}/v1/events", json={"events": events}, timeout=10).ok
    browser = chromium()
    try:
        log_in(browser, base, "olivia", PASSWORD)
        browser.get(f"{base}/console/onsite/muster")
        pdf = base64.b64decode(
            browser.execute_cdp_cmd(
                "Page.printToPDF", {"preferCSSPageSize": True, "printBackground": True}
            )["data"]
        )
    finally:
        browser.quit()
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert len(boxes) >= 2  # a page per ~30 rows, the header again on each
    for width, height in boxes:  # A4: 210 x 297 mm = 595.3 x 841.9 pt
        assert abs(float(width) - 595.3) < 2 and abs(float(height) - 841.9) < 2, (width, height)
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is needed to read the printed text")
    path = tmp_path / "muster.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    for name in names:
        assert name in text
    assert "Live events" not in text and "Log out" not in text and "Print" not in text
    pages = [page for page in text.split("\f") if page.strip()]
    listing = [page for page in pages if "Émile" in page]
    assert len(listing) >= 2 and all("ENTERED" in page for page in listing)  # the header on each
