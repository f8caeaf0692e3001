"""The console's Event packs page (issue #14), over plain HTTP against a real central: the
Pass Office makes a pack for an enrolled kiosk (downloaded, audited, installable by that
kiosk), form errors in English and French, roles, and a journal carried back merged once
(a changed one refused)."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge_agent.enroll import enroll
from edge_agent.eventpack import export_journal, install_pack
from tests.support.sync_rig import make_config

from .conftest import Answer, ConsoleClient

pytestmark = pytest.mark.processes


def _form(client: ConsoleClient, **changes: str) -> dict[str, str]:
    start = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() + 3600))
    end = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() + 6 * 3600))
    form = {
        "csrf": client.cookie("portier_console_csrf") or "",
        "device_id": "kiosk-console",
        "name": "Open day",
        "starts": start,
        "ends": end,
        "invitations": "",
        "language": "fr",
        "welcome": "Bienvenue",
    }
    return {**form, **changes}


def _upload(client: ConsoleClient, data: bytes) -> Answer:
    """POST the merge form as a browser does (multipart/form-data, the file and the token)."""
    boundary = "----portier" + secrets.token_hex(8)
    csrf = client.cookie("portier_console_csrf") or ""
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="journal"; '
            f'filename="journal.json"\r\nContent-Type: application/json\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        client.base + "/console/event-packs/merge",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with client.opener.open(request, timeout=10) as response:
            return Answer(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read().decode())


@pytest.fixture(scope="module")
def kiosk(console_central, tmp_path_factory):  # type: ignore[no-untyped-def]
    """An agent configuration enrolled at the module's central (it sent its pack key)."""
    config = make_config(
        tmp_path_factory.mktemp("kiosk"), console_central.url, device="kiosk-console"
    )
    with console_central.admin() as admin:
        enroll(config, admin.create_enroll_token("gate-a")["enroll_token"])
        now = int(time.time())
        admin.create_invitation(
            visitor="Vera Visitor", doors=["gate-a"], not_before=now, expires=now + 5 * 3600
        )
    return config


def test_the_pass_office_makes_a_pack_the_kiosk_installs(
    client: ConsoleClient, console_central, kiosk
) -> None:
    for name in ("ada",):  # an auditor: no page, no pack
        other = ConsoleClient(client.base)
        assert other.login(name).status == 303
        assert 'href="/console/event-packs"' not in other.request("/console/").text
        assert other.request("/console/event-packs").status == 403
        assert other.request("/console/event-packs", _form(other)).status == 403
    assert client.login("paul").status == 303
    page = client.request("/console/event-packs")
    assert page.status == 200 and "kiosk-console (gate-a)" in page.text
    # No CSRF token: refused, nothing made.
    assert client.request("/console/event-packs", _form(client, csrf="")).status == 403
    answer = client.request("/console/event-packs", _form(client))
    assert answer.status == 200, answer.text
    disposition = answer.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="ep-[0-9a-f]{12}\.portier-pack"', disposition)
    assert "Vera Visitor" not in answer.text  # encrypted: the guest list is not readable
    summary = install_pack(kiosk, answer.text.encode())
    assert (summary["name"], summary["guests"], summary["kiosk"]["language"]) == (
        "Open day",
        1,
        "fr",
    )
    listed = client.request("/console/event-packs").text
    assert "Open day" in listed and "by paul" in listed
    with console_central.admin() as admin:
        rows = [e for e in admin.operator_journal() if e["action"] == "POST /admin/event-packs"]
    detail = json.loads(rows[-1]["detail"])
    assert rows[-1]["operator"] == "paul" and detail["via"] == "console"
    assert detail["device_id"] == "kiosk-console" and detail["guests"] == 1
    assert "file" not in detail


def test_form_errors_in_english_and_french(client: ConsoleClient, console_central, kiosk) -> None:
    assert client.login("paul").status == 303
    missing = client.request("/console/event-packs", _form(client, name=" ", starts="x"))
    assert missing.status == 400
    assert "Give the event's name." in missing.text
    assert "Give the event's start and end." in missing.text
    unknown = client.request("/console/event-packs", _form(client, invitations="nobody-1"))
    assert unknown.status == 400 and "nobody-1" in unknown.text
    client.request("/console/lang/fr?next=/console/event-packs")
    past = client.request(
        "/console/event-packs", _form(client, starts="2020-01-01T09:00", ends="2020-01-01T18:00")
    )
    assert past.status == 400 and "Vérifiez les dates de l’événement" in past.text
    assert "Paquets d’événement" in client.request("/console/event-packs").text
    client.request("/console/lang/en?next=/console/event-packs")


def test_a_journal_carried_back_is_merged_once_from_the_page(
    client: ConsoleClient, console_central, kiosk, tmp_path: Path
) -> None:
    assert client.login("paul").status == 303
    with console_central.admin() as admin:  # the kiosk's journal holds the pack's loading
        now = int(time.time())
        made = admin.create_event_pack("kiosk-console", name="Fair", starts=now, ends=now + 600)
    install_pack(kiosk, made["file"].encode())
    export = export_journal(kiosk)
    data = json.dumps(export).encode()
    count = len(export["events"])
    assert count >= 1
    first = _upload(client, data)
    assert first.status == 200, first.text
    assert f"{count} events, {count} new, 0 already at the central" in first.text
    assert "The chain of its events is intact." in first.text
    second = _upload(client, data)
    assert f"{count} events, 0 new, {count} already at the central" in second.text
    export["events"][0]["wall_ms"] += 1
    changed = _upload(client, json.dumps(export).encode())
    assert changed.status == 403 and "nothing was merged" in changed.text
    assert _upload(client, b"not json").status == 400
    with console_central.admin() as admin:
        assert len(admin.all_device_events("kiosk-console")) == count
        rows = [e for e in admin.operator_journal() if "merge" in e["action"]]
    assert [json.loads(r["detail"]).get("accepted") for r in rows[-2:]] == [count, 0]
