"""``portier-central`` (run as ``python -m central``) against a running reference central."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import zxingcpp
from PIL import Image
from pyzbar import pyzbar

from central.cli import UsageError, parse_rule, parse_time
from central.testing import CentralProcess, ChainBuilder, enroll_device
from portier_common.tokens import Keyring, TrustedKey, verify

pytestmark = pytest.mark.processes

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 10


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central", "--log-level", "warning", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


def ok(*args: str, **kwargs) -> str:
    result = cli(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def device(central: CentralProcess) -> tuple[dict, requests.Session]:
    return enroll_device(central.url, device_id="cli-door")


def keyring(central: CentralProcess, session: requests.Session) -> Keyring:
    keys: dict[str, dict] = {}
    cursor = None
    while True:
        params = {"cursor": cursor} if cursor else {}
        page = session.get(f"{central.url}/v1/deltas", params=params, timeout=TIMEOUT).json()
        keys.update({key["kid"]: key for key in page["signing_keys"]})
        cursor = page["cursor"]
        if not page["more"]:
            return Keyring(TrustedKey.from_dict(key) for key in keys.values())


def deltas_after(central: CentralProcess, session: requests.Session, cursor: str) -> dict:
    return session.get(
        f"{central.url}/v1/deltas", params={"cursor": cursor}, timeout=TIMEOUT
    ).json()


def head(central: CentralProcess) -> str:
    with central.admin() as admin:
        return admin.info()["deltas_cursor"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_on_a_given_port_prints_one_ready_line(tmp_path: Path) -> None:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "central", "serve", "--port", str(port), "--data", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        ready = json.loads(child.stdout.readline())
        assert ready["port"] == port and ready["url"] == f"http://127.0.0.1:{port}"
        assert ready["pid"] == child.pid and ready["ready"] is True
        # It answers; its admin API wants an operator (none was created in this data dir).
        assert requests.get(f"{ready['url']}/admin/info", timeout=TIMEOUT).status_code == 401
        child.terminate()
        assert child.wait(15) == 0
        assert child.stdout.read() == ""  # one line only
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    assert (tmp_path / "central.db").exists()


def test_invite_create_prints_a_token_that_verifies(
    central: CentralProcess, device: tuple[dict, requests.Session], tmp_path: Path
) -> None:
    png = tmp_path / "invite.png"
    out = ok(
        "invite",
        "create",
        "--url",
        central.url,
        "--visitor",
        "Ada Lovelace",
        "--door",
        "lobby",
        "--single-use",
        "--host",
        "Charles Babbage",
        "--png",
        str(png),
    )
    token = out.strip()
    assert out.count("\n") == 1 and token.startswith("PT1:")
    result = verify(token, keyring(central, device[1]), now=time.time(), site="hq", door="lobby")
    assert result.ok, result
    assert result.claims.visitor == "Ada Lovelace" and result.claims.host == "Charles Babbage"
    assert result.single_use is True
    assert result.expires - result.claims.not_before == 8 * 3600
    # The QR decodes to the very token, with both decoders the kiosk may use.
    image = Image.open(png)
    assert [code.text for code in zxingcpp.read_barcodes(image)] == [token]
    assert [code.data.decode() for code in pyzbar.decode(image.convert("L"))] == [token]


def test_invite_validity_window_and_json(
    central: CentralProcess, device: tuple[dict, requests.Session]
) -> None:
    out = ok(
        "invite",
        "create",
        "--url",
        central.url,
        "--visitor",
        "Bob",
        "--door",
        "lobby",
        "--door",
        "garage",
        "--valid-from",
        "2030-01-02T09:00:00",
        "--valid-until",
        "2030-01-02T17:30:00+01:00",
        "--json",
    )
    answer = json.loads(out)
    invitation = answer["invitation"]
    assert invitation["not_before"] == int(datetime(2030, 1, 2, 9, tzinfo=UTC).timestamp())
    assert invitation["expires"] == int(datetime(2030, 1, 2, 16, 30, tzinfo=UTC).timestamp())
    assert invitation["doors"] == ["lobby", "garage"] and invitation["single_use"] is False
    ring = keyring(central, device[1])
    early = verify(answer["token"], ring, now=time.time(), site="hq", door="garage")
    assert early.reason == "not_yet_valid"
    during = verify(
        answer["token"], ring, now=invitation["not_before"] + 60, site="hq", door="garage"
    )
    assert during.ok


def test_invite_revoke(central: CentralProcess, device: tuple[dict, requests.Session]) -> None:
    invitation = json.loads(
        ok(
            "invite",
            "create",
            "--url",
            central.url,
            "--visitor",
            "Eve",
            "--door",
            "lobby",
            "--json",
        )
    )["invitation"]
    cursor = head(central)
    revoked = json.loads(ok("invite", "revoke", "--url", central.url, "--id", invitation["id"]))
    assert revoked["kind"] == "invitation" and revoked["id"] == invitation["id"]
    assert deltas_after(central, device[1], cursor)["revocations"] == [revoked]


def test_badge_add_revoke_delete(
    central: CentralProcess, device: tuple[dict, requests.Session]
) -> None:
    cursor = head(central)
    out = ok(
        "badge",
        "add",
        "--url",
        central.url,
        "--uid",
        "04:A1:B2:C3:D4:E5:F6",
        "--holder",
        "Grace Hopper",
        "--door",
        "lobby",
        "--zone",
        "ground",
        "--kind",
        "uid",
    )
    assert "04a1b2c3d4e5f6" in out
    page = deltas_after(central, device[1], cursor)
    badge = page["badges"][0]
    assert (badge["uid"], badge["holder"], badge["kind"]) == (
        "04a1b2c3d4e5f6",
        "Grace Hopper",
        "uid",
    )
    assert badge["doors"] == ["lobby"] and badge["zones"] == ["ground"] and badge["enabled"]
    cursor = page["cursor"]
    ok("badge", "revoke", "--url", central.url, "--uid", "04a1b2c3d4e5f6")
    page = deltas_after(central, device[1], cursor)
    assert page["badges"][0]["enabled"] is False
    assert page["revocations"][0]["id"] == "04a1b2c3d4e5f6"
    ok("badge", "delete", "--url", central.url, "--uid", "04a1b2c3d4e5f6")
    assert deltas_after(central, device[1], page["cursor"])["removed"]["badges"] == [
        "04a1b2c3d4e5f6"
    ]


def test_badge_add_with_a_pin_for_card_and_pin(
    central: CentralProcess, device: tuple[dict, requests.Session]
) -> None:
    """`badge add --pin` without --role: an ordinary badge with a PIN (card + PIN doors); only
    its hash leaves the CLI, and it reaches a door without a guard console."""
    from portier_common.pins import verify_pin

    cursor = head(central)
    base = ("badge", "add", "--url", central.url, "--uid", "04A1B2C3D4E5F8", "--holder", "Pat")
    out = ok(*base, "--door", "lobby", "--kind", "uid", "--pin", "135790")
    assert "135790" not in out and "scrypt" not in out
    badge = deltas_after(central, device[1], cursor)["badges"][0]
    assert badge.get("role") is None and verify_pin("135790", badge["pin_hash"])
    short = cli(*base, "--door", "lobby", "--pin", "1234")
    assert short.returncode == 2 and "6 to 12 digits" in short.stderr
    no_role = cli(*base, "--door", "lobby", "--guard-id", "pat")
    assert no_role.returncode == 2 and "--guard-id needs --role guard" in no_role.stderr


def test_enroll_token_create(central: CentralProcess) -> None:
    token = ok("enroll-token", "create", "--url", central.url, "--door", "garage").strip()
    response = requests.post(
        f"{central.url}/v1/enroll", json={"enroll_token": token, "door": "garage"}, timeout=10
    )
    assert response.status_code == 201 and response.json()["door"] == "garage"
    answer = json.loads(
        ok(
            "enroll-token",
            "create",
            "--url",
            central.url,
            "--door",
            "gate",
            "--site",
            "annex",
            "--ttl",
            "3600",
            "--json",
        )
    )
    assert answer["site"] == "annex" and answer["door"] == "gate"
    assert answer["expires_at"] - time.time() == pytest.approx(3600, abs=120)


def test_events_view(central: CentralProcess, tmp_path: Path) -> None:
    _enrolled, session = enroll_device(central.url, device_id="cli-events")
    batch = ChainBuilder().events(7)
    for _ in range(2):
        session.post(f"{central.url}/v1/events", json={"events": batch}, timeout=TIMEOUT)
    view = json.loads(ok("events", "--url", central.url, "--json"))
    mine = next(d for d in view["devices"] if d["device_id"] == "cli-events")
    assert mine["unique_events"] == 7 and mine["duplicates_seen"] == 7
    assert mine["chain_ok"] is True and mine["chain_verified"] is True
    assert view["totals"]["unique_events"] >= 7
    listed = json.loads(ok("events", "--url", central.url, "--json", "--device", "cli-events"))
    mine = next(d for d in listed["devices"] if d["device_id"] == "cli-events")
    assert [e["id"] for e in mine["events"]] == [e["id"] for e in batch]
    text = ok("events", "--url", central.url)
    assert "cli-events (hq/lobby): 7 events, 7 duplicates, 0 rejected" in text
    assert "chain ok, re-verified" in text
    quick = json.loads(ok("events", "--url", central.url, "--json", "--no-verify"))
    assert {d["chain_verified"] for d in quick["devices"]} == {None}


def test_faults_on_list_off(central: CentralProcess) -> None:
    _, session = enroll_device(central.url, device_id="cli-faults")
    out = ok(
        "faults",
        "--url",
        central.url,
        "on",
        "throttle",
        "--endpoint",
        "deltas",
        "--retry-after",
        "5",
        "--every",
        "1",
    )
    assert "throttle on deltas" in out
    response = session.get(f"{central.url}/v1/deltas", timeout=TIMEOUT)
    assert response.status_code == 429 and response.headers["Retry-After"] == "5"
    listed = json.loads(ok("faults", "list", "--url", central.url, "--json"))["faults"]
    assert listed == [
        {
            "name": "throttle",
            "endpoint": "deltas",
            "retry_after_s": 5,
            "every": 1,
            "matched": 1,
            "fired": 1,
        }
    ]
    ok("faults", "on", "error", "--status", "503", "--count", "1", "--url", central.url)
    assert "no faults" not in ok("faults", "--url", central.url)
    ok("faults", "--url", central.url, "off", "throttle")
    assert session.get(f"{central.url}/v1/deltas", timeout=TIMEOUT).status_code == 503
    ok("faults", "--url", central.url, "off")
    assert ok("faults", "--url", central.url).strip() == "no faults"
    assert session.get(f"{central.url}/v1/deltas", timeout=TIMEOUT).status_code == 200


def test_keys_rotate(central: CentralProcess) -> None:
    before = json.loads(ok("keys", "list", "--url", central.url))
    rotated = json.loads(ok("keys", "rotate", "--url", central.url))
    assert rotated["previous"]["kid"] == before["active_kid"]
    assert rotated["previous"]["not_after"] is not None
    after = json.loads(ok("keys", "list", "--url", central.url))
    assert after["active_kid"] == rotated["active"]["kid"] != before["active_kid"]


def test_schedule_door_settings_and_device_disable(
    central: CentralProcess, device: tuple[dict, requests.Session]
) -> None:
    cursor = head(central)
    schedule = json.loads(
        ok(
            "schedule",
            "set",
            "--url",
            central.url,
            "--door",
            "lobby",
            "--timezone",
            "Europe/Paris",
            "--rule",
            "mon-fri 08:00-18:00",
            "--rule",
            "sat 09:00-12:00",
        )
    )
    assert schedule["rules"][0]["days"] == ["mon", "tue", "wed", "thu", "fri"]
    settings = json.loads(
        ok(
            "door-settings",
            "set",
            "--url",
            central.url,
            "--door",
            "lobby",
            "--settings",
            '{"mode": "lockdown", "max_offline_staleness_s": 3600}',
        )
    )
    page = deltas_after(central, device[1], cursor)
    assert page["schedules"] == [schedule] and page["door_settings"] == [settings]
    ok("schedule", "delete", "--url", central.url, "--door", "lobby")
    assert deltas_after(central, device[1], page["cursor"])["removed"]["schedules"] == ["lobby"]
    _, session = enroll_device(central.url, device_id="cli-disabled")
    ok("device", "disable", "--url", central.url, "--device", "cli-disabled")
    assert session.get(f"{central.url}/v1/deltas", timeout=TIMEOUT).status_code == 403


def test_serve_on_a_busy_port_fails_cleanly(central: CentralProcess, tmp_path: Path) -> None:
    result = cli("serve", "--port", str(central.info["port"]), "--data", str(tmp_path))
    assert result.returncode == 1
    assert "address" in result.stderr.lower() and "Traceback" not in result.stderr


def test_serve_db_sqlite_url_puts_the_database_there(tmp_path: Path) -> None:
    database = tmp_path / "elsewhere" / "site.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "central", "serve", "--port", "0", "--data", str(tmp_path / "d"),
         "--db", f"sqlite://{database}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    try:
        ready = json.loads(child.stdout.readline())
        assert (
            requests.get(f"{ready['url']}/admin/info", timeout=TIMEOUT).status_code == 401
        )  # it answers (no operator yet)
        child.terminate()
        assert child.wait(15) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    assert database.exists() and not (tmp_path / "d" / "central.db").exists()


@pytest.mark.parametrize(
    "url",
    ["bogus", "sqlite://", "sqlite:///dir/", "mysql://host/db", "postgresql://u:pw@h:99999/db"],
)
def test_serve_with_a_bad_db_url_is_a_one_line_usage_error(tmp_path: Path, url: str) -> None:
    result = cli("serve", "--port", "0", "--data", str(tmp_path), "--db", url)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("portier-central: db: ") and result.stderr.count("\n") == 1
    assert "sqlite:///PATH or postgresql://" in result.stderr and "pw" not in result.stderr


def test_serve_without_a_postgresql_server_fails_cleanly(tmp_path: Path) -> None:
    url = f"postgresql://portier:secret@/central?host={tmp_path}"
    result = cli("serve", "--port", "0", "--data", str(tmp_path), "--db", url)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert "secret" not in result.stderr and result.stderr.count("\n") == 1


def test_url_from_the_environment(central: CentralProcess) -> None:
    out = ok("keys", "list", env={"PORTIER_CENTRAL_URL": central.url})
    assert "active_kid" in out


def test_exit_statuses(central: CentralProcess) -> None:
    refused = cli("events", "--url", f"http://127.0.0.1:{free_port()}")
    assert refused.returncode == 3 and "unreachable" in refused.stderr
    bad = cli("badge", "add", "--url", central.url, "--uid", "xyz", "--holder", "A", "--door", "d")
    assert bad.returncode == 1 and "bad_request" in bad.stderr and "uid" in bad.stderr
    missing = cli("badge", "revoke", "--url", central.url, "--uid", "01020304")
    assert missing.returncode == 1 and "not_found" in missing.stderr
    no_url = cli("events", env={"PORTIER_CENTRAL_URL": ""})
    assert no_url.returncode == 2 and "--url" in no_url.stderr
    usage = cli("invite", "create", "--url", central.url, "--visitor", "X")
    assert usage.returncode == 2 and "--door" in usage.stderr
    bad_time = cli(
        "invite",
        "create",
        "--url",
        central.url,
        "--visitor",
        "X",
        "--door",
        "d",
        "--valid-from",
        "tomorrow",
    )
    assert bad_time.returncode == 2 and "ISO 8601" in bad_time.stderr
    assert cli("faults", "--url", central.url, "on", "gremlins").returncode == 2


def test_parse_time() -> None:
    assert parse_time("2030-01-02T09:00:00") == int(datetime(2030, 1, 2, 9, tzinfo=UTC).timestamp())
    assert parse_time("2030-01-02T09:00:00Z") == parse_time("2030-01-02T10:00:00+01:00")
    assert parse_time("1700000000") == 1_700_000_000
    assert abs(parse_time("now") - time.time()) < 5
    with pytest.raises(UsageError):
        parse_time("next tuesday")


def test_parse_rule() -> None:
    assert parse_rule("mon-wed,sat 07:30-19:00") == {
        "days": ["mon", "tue", "wed", "sat"],
        "start": "07:30",
        "end": "19:00",
    }
    for bad in ("weekdays 08:00-18:00", "mon 8-18", "mon-xyz 08:00-09:00"):
        with pytest.raises(UsageError):
            parse_rule(bad)
