"""The console's Doors page (issue #14): door and zone modes set by a security officer with a
reason, in the audit log, hidden from other roles; and end to end, a real central and a real
``edge-agent run``: lockdown from the console, the door refuses a valid invitation with the
reason ``lockdown`` within its poll interval, back to normal, it grants again."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.support.sync_rig import journal_events, make_config, running_agent, wait_until

from .conftest import ConsoleClient

pytestmark = pytest.mark.processes

DOOR = "gate-a"


def _mode_form(client: ConsoleClient, **changes: str) -> dict[str, str]:
    form = {
        "csrf": client.cookie("portier_console_csrf") or "",
        "scope": "door",
        "name": DOOR,
        "mode": "lockdown",
        "reason": "intruder reported at the gate",
    }
    return {**form, **changes}


def _set_mode(client: ConsoleClient, **changes: str) -> None:
    answer = client.request("/console/doors/mode", _mode_form(client, **changes))
    assert answer.status == 303, answer.text
    assert answer.headers["Location"].startswith("/console/doors?done=mode")


def test_only_a_security_officer_sees_and_sets_door_modes(client: ConsoleClient, console_central):
    for name in ("paul", "ada"):  # the Pass Office, an auditor
        other = ConsoleClient(client.base)
        assert other.login(name).status == 303
        assert 'href="/console/doors"' not in other.request("/console/").text
        assert other.request("/console/doors").status == 403
        answer = other.request("/console/doors/mode", _mode_form(other, name="vault-p"))
        assert answer.status == 403
    assert client.login("olivia").status == 303
    assert 'href="/console/doors"' in client.request("/console/").text
    # No CSRF token, a forged one, a cross-site post: refused, nothing set.
    assert client.request("/console/doors/mode", _mode_form(client, csrf="")).status == 403
    assert client.request("/console/doors/mode", _mode_form(client, csrf="x")).status == 403
    cross = client.request(
        "/console/doors/mode", _mode_form(client), headers={"Origin": "http://evil.example"}
    )
    assert cross.status == 403
    with console_central.admin() as admin:
        assert "vault-p" not in {d["door"] for d in admin.door_modes()["doors"]}
        assert DOOR not in {d["door"] for d in admin.door_modes()["doors"]}


def test_set_a_mode_with_a_reason_and_see_it_in_the_audit_log(
    client: ConsoleClient, console_central
):
    assert client.login("olivia").status == 303
    answer = client.request("/console/doors/mode", _mode_form(client, reason="   "))
    assert answer.status == 400 and "Give a reason for the mode." in answer.text
    bad = client.request("/console/doors/mode", _mode_form(client, mode="emergency"))
    assert bad.status == 400
    missing = client.request(
        "/console/doors/mode", _mode_form(client, scope="zone", name="nowhere")
    )
    assert missing.status == 404 and "No enrolled door is in zone nowhere." in missing.text
    _set_mode(client, name="vault")
    page = client.request("/console/doors?done=mode&mode=lockdown&name=vault")
    assert "vault is in lockdown: the doors get it at their next sync." in page.text
    row = re.search(r'<tr id="door-vault">.*?</tr>', page.text, re.S)
    assert row is not None and "Lockdown" in row.group(0)
    assert "Set by olivia on" in row.group(0) and "intruder reported at the gate" in row.group(0)
    client.request("/console/lang/fr?next=/console/doors")
    french = client.request("/console/doors")
    assert '<html lang="fr">' in french.text and "Confinement" in french.text
    assert "Défini par olivia le" in french.text
    with console_central.admin() as admin:
        entries = admin.operator_journal()
    mine = [e for e in entries if e["action"] == "PUT /admin/doors/{door}/mode"]
    detail = json.loads(mine[-1]["detail"])
    assert mine[-1]["operator"] == "olivia" and mine[-1]["status"] == 200
    assert detail["via"] == "console" and detail["door"] == "vault"
    assert (detail["mode"], detail["reason"]) == ("lockdown", "intruder reported at the gate")
    client.request("/console/lang/en?next=/console/doors")
    _set_mode(client, name="vault", mode="normal", reason="all clear")


def test_lockdown_from_the_console_is_obeyed_by_a_real_agent(
    client: ConsoleClient, console_central, tmp_path: Path
):
    """Done means: put a door in lockdown and see the agent obey (then lift it)."""
    with console_central.admin() as admin:
        config = make_config(tmp_path / "agent", console_central.url, device="doors-e2e")
        token = admin.create_enroll_token(DOOR, zones=["north"])["enroll_token"]
        from edge_agent.enroll import enroll

        enroll(config, token)
        invitation = admin.create_invitation(
            visitor="Vera Visitor",
            doors=[DOOR],
            not_before=int(time.time()) - 60,
            expires=int(time.time()) + 3600,
        )["token"]
    poll_s = config.central.sync_interval_s
    assert client.login("olivia").status == 303
    with running_agent(config) as agent:
        wait_until(lambda: agent.client.present_qr(invitation)["granted"], what="first grant")
        # Lockdown of the door's zone, from the console.
        _set_mode(client, scope="zone", name="north", reason="intruder reported at the gate")
        started = time.monotonic()
        wait_until(
            lambda: agent.client.present_qr(invitation)["reason"] == "lockdown",
            timeout_s=10 * poll_s + 5,
            what="lockdown obeyed",
        )
        print(f"lockdown obeyed after {time.monotonic() - started:.2f} s (poll {poll_s} s)")
        status = agent.status()
        assert status["door"]["mode"] == "lockdown"
        shown = status["mode_set"]
        assert shown["by"] == "central:olivia"
        assert shown["central"]["reason"] == "intruder reported at the gate"
        assert (shown["central"]["scope"], shown["central"]["name"]) == ("zone", "north")
        # The heartbeat carries the door's mode: the console shows what the door reports.
        wait_until(lambda: "Lockdown" in _door_row(client, "reported"), what="reported by the door")
        # Back to normal, for the door itself this time: it grants again.
        _set_mode(client, mode="normal", reason="police left")
        wait_until(
            lambda: agent.client.present_qr(invitation)["granted"],
            timeout_s=10 * poll_s + 5,
            what="normal again",
        )
    changes = [
        (e.payload["mode"], e.payload["by"], e.payload["why"])
        for e in journal_events(config)
        if e.type == "mode.changed"
    ]
    assert changes == [
        ("lockdown", "central:olivia", "intruder reported at the gate"),
        ("normal", "central:olivia", "police left"),
    ]


def _door_row(client: ConsoleClient, _: str) -> str:
    page = client.request("/console/doors").text
    row = re.search(rf'<tr id="door-{DOOR}">.*?</tr>', page, re.S)
    if row is None:
        return ""
    cells = re.findall(r"<td>(.*?)</td>", row.group(0), re.S)
    return cells[3] if len(cells) > 3 else ""


@pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="needs chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_in_chromium_lockdown_then_normal_and_the_agent_obeys(console_central, tmp_path: Path):
    """The same in a real browser (headless Chromium driven by chromium-driver): the Doors
    page's form for the door, then the agent's answer to a valid invitation."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from central.console.screenshots import chromium, follow, log_in
    from edge_agent.enroll import enroll

    from .conftest import PASSWORD

    door = "gate-b"
    with console_central.admin() as admin:
        config = make_config(
            tmp_path / "agent", console_central.url, device="doors-chromium", door=door
        )
        enroll(config, admin.create_enroll_token(door)["enroll_token"])
        invitation = admin.create_invitation(
            visitor="Vera Visitor",
            doors=[door],
            not_before=int(time.time()) - 60,
            expires=int(time.time()) + 3600,
        )["token"]
    poll_s = config.central.sync_interval_s
    browser = chromium()
    browser.implicitly_wait(5)
    try:
        with running_agent(config) as agent:
            wait_until(lambda: agent.client.present_qr(invitation)["granted"], what="grant")
            log_in(browser, console_central.url, "olivia", PASSWORD)
            follow(browser, browser.find_element(By.LINK_TEXT, "Doors"))

            def set_mode(mode: str, reason: str) -> None:
                row = browser.find_element(By.ID, f"door-{door}")
                Select(row.find_element(By.NAME, "mode")).select_by_value(mode)
                row.find_element(By.NAME, "reason").send_keys(reason)
                follow(browser, row.find_element(By.CSS_SELECTOR, "button[type=submit]"))
                done = browser.find_element(By.CSS_SELECTOR, "p.done").text
                assert done.startswith(f"{door} is ")

            set_mode("lockdown", "suspicious parcel")
            row = browser.find_element(By.ID, f"door-{door}")
            assert "Lockdown" in row.text and "suspicious parcel" in row.text
            wait_until(
                lambda: agent.client.present_qr(invitation)["reason"] == "lockdown",
                timeout_s=10 * poll_s + 5,
                what="lockdown obeyed",
            )
            assert agent.status()["mode_set"]["central"]["reason"] == "suspicious parcel"
            set_mode("normal", "parcel was a lunch box")
            wait_until(
                lambda: agent.client.present_qr(invitation)["granted"],
                timeout_s=10 * poll_s + 5,
                what="normal again",
            )
    finally:
        browser.quit()
