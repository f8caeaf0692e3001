"""The security pages over plain HTTP: live events in plain words (and their event
stream), alarms acknowledged with a note (CSRF, role, audit log), the devices page and the
technical log's CSV export."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import time
import urllib.parse

import pytest

from central.testing import ChainBuilder, enroll_device

from .conftest import ConsoleClient

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def gate(console_central):
    """A device at gate-a that sent events, a heartbeat with two alarms and a self-test."""
    enrolled, session = enroll_device(console_central.url, door="gate-a", device_id="sec-gate-a")
    chain = ChainBuilder()
    now = int(time.time() * 1000)
    events = [
        chain.event(
            "access.decision",
            {"granted": True, "kind": "qr", "holder": "Ada Lovelace", "reason": "granted"},
        ),
        chain.event(
            "access.decision",
            {"granted": False, "kind": "badge", "credential_id": "b1", "reason": "revoked"},
        ),
        chain.event("visitor.checked_in", {"invitation_id": "inv-x", "visitor": "Grace Hopper"}),
        chain.event("alarm.raised", {"alarm": "forced_open"}),
        chain.event("sync.alarm", {"code": "backlog", "state": "raised", "detail": "120 waiting"}),
        chain.event(
            "sync.alarm", {"code": "tls", "state": "raised", "detail": "=cmd|' /C calc'!A0"}
        ),
    ]
    answer = session.post(f"{console_central.url}/v1/events", json={"events": events}, timeout=10)
    assert answer.status_code == 200, answer.text
    heartbeat = {
        "sent_at_ms": now,
        "backlog": {"pending": 120, "dead_letter": 0},
        "last_sync_ms": now - 90_000,
        "clock_offset_ms": -42,
        "versions": {"edge-agent": "0.9.1"},
        "alarms": [
            {"code": "backlog", "since_ms": now - 60_000, "detail": "120 waiting"},
            {"code": "door.forced_open", "since_ms": now - 30_000, "detail": "active"},
        ],
    }
    assert session.post(f"{console_central.url}/v1/heartbeat", json=heartbeat, timeout=10).ok
    report = {
        "ok": False,
        "results": [
            {"component": "reader", "check": "present", "status": "pass"},
            {"component": "relay", "check": "readback", "status": "fail", "detail": "stuck"},
        ],
    }
    assert session.post(f"{console_central.url}/v1/selftest", json=report, timeout=10).ok
    return {"device_id": enrolled["device_id"], "session": session, "chain": chain, "now": now}


def _logged_in(client: ConsoleClient, name: str) -> ConsoleClient:
    assert client.login(name).status == 303
    return client


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found is not None
    return found.group(1)


def test_live_page_tells_events_in_plain_words(client: ConsoleClient, gate):
    answer = _logged_in(client, "olivia").request("/console/live")
    assert answer.status == 200
    text = answer.text
    assert "Ada Lovelace entered at gate-a" in text
    assert "Badge refused at gate-a: revoked" in text
    assert "Grace Hopper checked in at gate-a" in text
    assert "Alarm at gate-a: Door forced open" in text
    assert re.search(r'<script src="/console/static/live\.js\?v=[^"]+"></script>', text)
    assert "<script>" not in text  # no inline script (the CSP forbids it)
    assert client.request("/console/lang/fr?next=/console/live").status == 303
    french = client.request("/console/live")
    assert "Ada Lovelace est entré·e par gate-a" in french.text
    assert "Badge refusé à gate-a : révoqué" in french.text


def test_pages_are_hidden_by_role(client: ConsoleClient, gate):
    home = _logged_in(client, "paul").request("/console/")  # Pass Office
    for path in ("/console/live", "/console/alarms", "/console/devices"):
        assert f'href="{path}"' not in home.text
        assert client.request(path).status == 403
    assert client.request("/console/live/stream").status == 403
    auditor = _logged_in(ConsoleClient(client.base), "ada")
    home = auditor.request("/console/")
    for path in ("/console/live", "/console/alarms", "/console/devices"):
        assert f'href="{path}"' in home.text
    alarms = auditor.request("/console/alarms")
    assert alarms.status == 200 and "Door forced open" in alarms.text
    assert "/console/alarms/acknowledge" not in alarms.text  # reads only
    refused = auditor.request(
        "/console/alarms/acknowledge",
        {
            "csrf": _csrf(alarms.text),
            "device_id": gate["device_id"],
            "code": "backlog",
            "since_ms": str(gate["now"] - 60_000),
            "note": "auditors may not",
        },
    )
    assert refused.status == 403


def test_the_stream_needs_a_session(client: ConsoleClient):
    assert client.request("/console/live/stream").status == 401


def test_acknowledge_needs_csrf_and_a_note_and_is_journaled(
    client: ConsoleClient, gate, console_central
):
    page = _logged_in(client, "olivia").request("/console/alarms")
    assert page.status == 200
    assert "Upload backlog" in page.text and "Door forced open" in page.text
    form = {
        "device_id": gate["device_id"],
        "code": "backlog",
        "since_ms": str(gate["now"] - 60_000),
        "note": "Network switch restarted",
    }
    assert client.request("/console/alarms/acknowledge", form).status == 403  # no CSRF
    csrf = _csrf(page.text)
    no_note = client.request("/console/alarms/acknowledge", {**form, "csrf": csrf, "note": " "})
    assert no_note.status == 400 and "Say in a note" in no_note.text
    unknown = client.request("/console/alarms/acknowledge", {**form, "csrf": csrf, "since_ms": "1"})
    assert unknown.status == 404
    done = client.request("/console/alarms/acknowledge", {**form, "csrf": csrf})
    assert done.status == 303 and done.headers["Location"] == "/console/alarms?done=acknowledged"
    again = client.request("/console/alarms/acknowledge", {**form, "csrf": csrf})
    assert again.status == 400
    page = client.request("/console/alarms?done=acknowledged")
    assert "Alarm acknowledged." in page.text
    assert "By olivia at" in page.text and "Network switch restarted" in page.text
    with console_central.admin() as admin:
        entries = admin.operator_journal()
    rows = [e for e in entries if e["action"] == "POST /admin/alarms/acknowledge"]
    assert len(rows) == 1
    assert rows[0]["operator"] == "olivia"
    detail = json.loads(rows[0]["detail"])
    assert detail["note"] == "Network switch restarted" and detail["via"] == "console"
    assert detail["code"] == "backlog" and detail["device_id"] == gate["device_id"]


def test_devices_page_and_the_self_test_report(client: ConsoleClient, gate):
    page = _logged_in(client, "olivia").request("/console/devices")
    assert page.status == 200
    row = page.text[page.text.index(gate["device_id"]) :]
    assert "online" in row[:2000]
    assert "120 waiting" in row[:2000]
    assert "-42 ms" in row[:2000]
    assert "edge-agent 0.9.1" in row[:2000]
    assert f'href="/console/devices/{gate["device_id"]}#selftest">failed' in page.text
    detail = client.request(f"/console/devices/{gate['device_id']}")
    assert detail.status == 200
    assert "relay readback" in detail.text and "stuck" in detail.text
    assert "Self-test failed" in detail.text
    assert client.request("/console/devices/nope").status == 404


def test_technical_log_csv(client: ConsoleClient, gate):
    _logged_in(client, "olivia")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    query = urllib.parse.urlencode(
        {"device": gate["device_id"], "from": "2020-01-01", "to": "2099-01-01"}
    )
    answer = client.request(f"/console/devices/log.csv?{query}")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert (
        f"technical-log-{gate['device_id']}-2020-01-01-2099-01-01.csv"
        in answer.headers["Content-Disposition"]
    )
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    kinds = [row["kind"] for row in rows]
    assert "alarm.raised" in kinds and "sync.alarm" in kinds and "selftest" in kinds
    assert "access.decision" not in kinds  # the technical log, not the access log
    test = next(row for row in rows if row["kind"] == "selftest")
    assert test["code"] == "failed" and test["detail"] == "relay/readback"
    assert json.loads(test["payload"])["ok"] is False
    assert all(row["device_id"] == gate["device_id"] for row in rows)
    formula = next(row for row in rows if row["code"] == "tls raised")
    assert formula["detail"] == "'=cmd|' /C calc'!A0"  # not a formula in a spreadsheet
    empty = client.request("/console/devices/log.csv?from=2000-01-01&to=2000-01-02")
    assert empty.status == 200 and len(empty.text.strip().splitlines()) == 1
    assert client.request("/console/devices/log.csv?from=x").status == 400
    assert client.request(f"/console/devices/log.csv?from={today}&to=2000-01-01").status == 400


def test_live_page_filters_by_door_and_group(client: ConsoleClient, gate):
    _logged_in(client, "olivia")
    alarms = client.request("/console/live?group=alarms").text
    assert "Alarm at gate-a: Door forced open" in alarms
    assert "Ada Lovelace entered at gate-a" not in alarms
    assert 'data-stream="/console/live/stream?group=alarms"' in alarms
    assert '<option value="alarms" selected>' in alarms
    other = client.request("/console/live?door=gate-z").text
    assert "Ada Lovelace" not in other and "No event yet." in other
    both = client.request("/console/live?door=gate-a&group=access").text
    assert "Ada Lovelace entered at gate-a" in both and "Door forced open" not in both
    assert client.request("/console/live?group=everything").status == 400
    assert client.request("/console/live/stream?group=everything").status == 400


def _read_stream(
    base: str, cookie: str, until: str, timeout_s: float = 15.0, query: str = ""
) -> str:
    """Open the event stream with *cookie* and read until *until* appears."""
    host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(
            (
                f"GET /console/live/stream{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Cookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        seen = b""
        deadline = time.monotonic() + timeout_s
        while until.encode() not in seen and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            seen += chunk
        return seen.decode("utf-8", "replace")


def test_the_stream_pushes_new_events(client: ConsoleClient, gate, console_central):
    import threading

    _logged_in(client, "olivia")
    cookie = "; ".join(f"{c.name}={c.value}" for c in client.jar) + "; portier_lang=fr"
    result: dict[str, str] = {}
    reader = threading.Thread(
        target=lambda: result.update(text=_read_stream(client.base, cookie, "Alan Turing"))
    )
    reader.start()
    time.sleep(1.0)
    event = gate["chain"].event(
        "access.decision", {"granted": True, "kind": "qr", "holder": "Alan Turing"}
    )
    answer = gate["session"].post(
        f"{console_central.url}/v1/events", json={"events": [event]}, timeout=10
    )
    assert answer.status_code == 200
    reader.join(20)
    text = result.get("text", "")
    assert "text/event-stream" in text
    assert "event: live" in text
    assert "Alan Turing est entré·e par gate-a" in text


def test_the_stream_keeps_to_its_filter(client: ConsoleClient, gate, console_central):
    """A stream opened for alarms skips an entry pushed before the alarm that follows it."""
    import threading

    _logged_in(client, "olivia")
    cookie = "; ".join(f"{c.name}={c.value}" for c in client.jar)
    result: dict[str, str] = {}
    reader = threading.Thread(
        target=lambda: result.update(
            text=_read_stream(client.base, cookie, "Door held open", query="?group=alarms")
        )
    )
    reader.start()
    time.sleep(1.0)
    events = [
        gate["chain"].event(
            "access.decision", {"granted": True, "kind": "qr", "holder": "Kurt Gödel"}
        ),
        gate["chain"].event("alarm.raised", {"alarm": "held_open"}),
    ]
    answer = gate["session"].post(
        f"{console_central.url}/v1/events", json={"events": events}, timeout=10
    )
    assert answer.status_code == 200
    reader.join(20)
    text = result.get("text", "")
    assert "Alarm at gate-a: Door held open" in text
    assert "Kurt Gödel" not in text
