"""The reference central over real HTTP: a server process on loopback, requests as the client,
and every answer checked against docs/central-api.yaml; on SQLite and on PostgreSQL (the
``central`` fixture; the tests that start their own central use SQLite)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from central.server import _is_loopback
from central.testing import CentralProcess, ChainBuilder, ContractChecker, enroll_device
from portier_common.reasons import Reason
from portier_common.tokens import Keyring, TrustedKey, verify

pytestmark = pytest.mark.processes

TIMEOUT = 10


@pytest.fixture(scope="module")
def contract() -> ContractChecker:
    return ContractChecker()


@pytest.fixture(scope="module")
def central(central_on_each_backend: CentralProcess) -> CentralProcess:
    """The central of these tests: each backend in turn (tests/conftest.py)."""
    return central_on_each_backend


def call(
    contract: ContractChecker,
    method: str,
    url: str,
    template: str,
    *,
    session: requests.Session | None = None,
    **kwargs: Any,
) -> requests.Response:
    """Make the request and check its status and body against the documented response.

    An admin call without a session of its own is made as the suite's operator."""
    if template.startswith("/admin") and session is None:
        token = os.environ["PORTIER_CENTRAL_TOKEN"]
        kwargs["headers"] = {"Authorization": f"Bearer {token}", **kwargs.get("headers", {})}
    response = (session or requests).request(method, url, timeout=TIMEOUT, **kwargs)
    if response.status_code != 204:
        contract.check_response(method, template, response.status_code, response.json())
    return response


_device_counter = iter(range(10_000))


def new_device(central: CentralProcess, door: str = "lobby") -> tuple[dict, requests.Session]:
    return enroll_device(central.url, door=door, device_id=f"api-{next(_device_counter)}")


def upload(contract, central, session, events) -> dict:
    response = call(
        contract,
        "POST",
        f"{central.url}/v1/events",
        "/v1/events",
        session=session,
        json={"events": events},
    )
    assert response.status_code == 200, response.text
    return response.json()


def summary(central: CentralProcess, device_id: str, verify_chain: bool = False) -> dict:
    with central.admin() as admin:
        view = admin.received(verify=verify_chain)
    return next(d for d in view["devices"] if d["device_id"] == device_id)


def test_contract_document_is_valid_openapi_31(contract: ContractChecker) -> None:
    from jsonschema import Draft202012Validator

    assert contract.doc["openapi"].startswith("3.1")
    for schema in contract.doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for method, path, status in contract.documented():
        response = contract.doc["paths"][path][method.lower()]["responses"][status]
        if status != "204" and "application/pdf" not in response.get("content", {}):
            contract.response_schema_pointer(method, path, int(status))
    # Every device endpoint documents what the device does on each error family.
    for path in ("/v1/events", "/v1/deltas", "/v1/heartbeat"):
        documented = set(contract.doc["paths"][path][method_of(contract, path)]["responses"])
        assert {"400", "401", "403", "429", "500", "503"} <= documented, path
    assert "413" in contract.doc["paths"]["/v1/events"]["post"]["responses"]
    assert "409" in contract.doc["paths"]["/v1/enroll"]["post"]["responses"]


def method_of(contract: ContractChecker, path: str) -> str:
    return next(iter(contract.doc["paths"][path]))


def test_enroll_then_token_is_spent(central: CentralProcess, contract: ContractChecker) -> None:
    with central.admin() as admin:
        created = admin.create_enroll_token("lobby")
    contract.validate(created, "EnrollToken")
    url = f"{central.url}/v1/enroll"
    body = {
        "enroll_token": created["enroll_token"],
        "device_id": "api-enroll",
        "site": "hq",
        "door": "lobby",
        "hardware": {"model": "Raspberry Pi 4"},
        "versions": {"agent": "0.1.0"},
    }
    first = call(contract, "POST", url, "/v1/enroll", json=body)
    assert first.status_code == 201
    assert first.json()["device_id"] == "api-enroll"
    second = call(contract, "POST", url, "/v1/enroll", json={**body, "device_id": "api-other"})
    assert second.status_code == 409 and second.json()["error"] == "token_used"
    unknown = call(contract, "POST", url, "/v1/enroll", json={"enroll_token": "pe1_unknown"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "token_invalid"
    with central.admin() as admin:
        other = admin.create_enroll_token("garage")["enroll_token"]
    scope = call(contract, "POST", url, "/v1/enroll", json={"enroll_token": other, "door": "lobby"})
    assert scope.status_code == 403 and scope.json()["error"] == "token_scope"
    bad = call(
        contract,
        "POST",
        url,
        "/v1/enroll",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"


def test_device_credential_is_required(central: CentralProcess, contract: ContractChecker) -> None:
    for method, path in (("POST", "/v1/events"), ("GET", "/v1/deltas"), ("POST", "/v1/heartbeat")):
        kwargs = {"json": {"events": []}} if method == "POST" else {}
        for headers in ({}, {"Authorization": "Bearer pd1_forged"}, {"Authorization": "Basic x"}):
            response = call(contract, method, central.url + path, path, headers=headers, **kwargs)
            assert response.status_code == 401, (path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_disabled_device_gets_403(central: CentralProcess, contract: ContractChecker) -> None:
    enrolled, session = new_device(central)
    with central.admin() as admin:
        contract.validate(admin.disable_device(enrolled["device_id"]), "DeviceSummary")
    response = call(contract, "GET", f"{central.url}/v1/deltas", "/v1/deltas", session=session)
    assert response.status_code == 403 and response.json()["error"] == "device_disabled"


def test_idempotent_upload_over_http(central: CentralProcess, contract: ContractChecker) -> None:
    enrolled, session = new_device(central)
    batch = ChainBuilder().events(50)
    first = upload(contract, central, session, batch)
    assert {ack["status"] for ack in first["acks"]} == {"accepted"}
    second = upload(contract, central, session, batch)
    assert {ack["status"] for ack in second["acks"]} == {"duplicate"}
    assert [ack["id"] for ack in second["acks"]] == [event["id"] for event in batch]
    seen = summary(central, enrolled["device_id"], verify_chain=True)
    assert seen["unique_events"] == 50 and seen["duplicates_seen"] == 50
    assert seen["chain_ok"] and seen["chain_verified"]
    with central.admin() as admin:
        stored = admin.all_device_events(enrolled["device_id"], page=7)
    assert [event["id"] for event in stored] == [event["id"] for event in batch]
    contract.validate(admin_page(central, enrolled["device_id"]), "StoredEventsPage")


def admin_page(central: CentralProcess, device_id: str) -> dict:
    with central.admin() as admin:
        return admin.device_events(device_id, limit=3)


def test_gap_and_out_of_order_over_http(central: CentralProcess, contract: ContractChecker) -> None:
    enrolled, session = new_device(central)
    batch = ChainBuilder().events(10)
    result = upload(contract, central, session, batch[5:] + batch[:3])
    assert [ack["status"] for ack in result["acks"]] == ["retry_later"] * 5 + ["accepted"] * 3
    assert result["next_seq"] == 4
    result = upload(contract, central, session, batch[result["next_seq"] - 1 :])
    assert [ack["status"] for ack in result["acks"]] == ["accepted"] * 7
    seen = summary(central, enrolled["device_id"], verify_chain=True)
    assert seen["unique_events"] == 10 and seen["chain_verified"]


def test_chain_break_is_reported(central: CentralProcess, contract: ContractChecker) -> None:
    enrolled, session = new_device(central)
    batch = ChainBuilder().events(4)
    batch[2]["payload_json"] = '{"granted":true,"n":999}'
    result = upload(contract, central, session, batch)
    assert result["chain_ok"] is False
    seen = summary(central, enrolled["device_id"], verify_chain=True)
    assert seen["chain_broken_at"] == 3 and seen["chain_verified"] is False
    with central.admin() as admin:
        view = admin.received()
    contract.check_response("GET", "/admin/events", 200, view)
    assert view["totals"]["chain_ok"] is False


def test_rejected_event_ack_over_http(central: CentralProcess, contract: ContractChecker) -> None:
    _, session = new_device(central)
    event = ChainBuilder().event()
    event["payload_json"] = '{"ratio":0.5}'
    result = upload(contract, central, session, [event])
    assert result["acks"][0]["status"] == "rejected"
    assert result["acks"][0]["reason"] == "invalid"


def test_batch_limits(central: CentralProcess, contract: ContractChecker) -> None:
    _, session = new_device(central)
    url = f"{central.url}/v1/events"
    chain = ChainBuilder()
    too_many = [chain.event() for _ in range(1001)]
    response = call(contract, "POST", url, "/v1/events", session=session, json={"events": too_many})
    assert response.status_code == 413
    assert response.json()["max_events"] == 1000
    big = {"events": [{"payload_json": "x" * (5 * 1024 * 1024)}]}
    response = call(contract, "POST", url, "/v1/events", session=session, json=big)
    assert response.status_code == 413 and response.json()["error"] == "batch_too_large"
    for body in ({"events": []}, {"events": "nope"}, {"batch": []}):
        response = call(contract, "POST", url, "/v1/events", session=session, json=body)
        assert response.status_code == 400


def test_deltas_over_http(central: CentralProcess, contract: ContractChecker) -> None:
    _, session = new_device(central)
    url = f"{central.url}/v1/deltas"
    full = call(contract, "GET", url, "/v1/deltas", session=session).json()
    assert full["reset"] is True and full["signing_keys"]
    with central.admin() as admin:
        badge = admin.put_badge(uid="04a1b2c3d4e5f6", holder="Bob", doors=["lobby"], kind="uid")
        contract.validate(badge, "Badge")
        schedule = admin.put_schedule(
            "lobby",
            rules=[{"days": ["mon"], "start": "08:00", "end": "12:00"}],
        )
        contract.validate(schedule, "Schedule")
        door = admin.put_door_settings("lobby", {"mode": "normal", "unlock_s": 2.5})
        contract.validate(door, "DoorSettings")
        contract.validate(admin.revoke_badge("04a1b2c3d4e5f6"), "Revocation")
    page = call(
        contract,
        "GET",
        url,
        "/v1/deltas",
        session=session,
        params={"cursor": full["cursor"], "limit": 2},
    ).json()
    assert page["more"] is True and page["from_cursor"] == full["cursor"]
    cursor, badges, schedules, settings, revocations = page["cursor"], [], [], [], []
    while True:
        badges += page["badges"]
        schedules += page["schedules"]
        settings += page["door_settings"]
        revocations += page["revocations"]
        if not page["more"]:
            break
        page = call(
            contract, "GET", url, "/v1/deltas", session=session, params={"cursor": cursor}
        ).json()
        cursor = page["cursor"]
    assert badges[-1]["uid"] == "04a1b2c3d4e5f6" and badges[-1]["enabled"] is False
    assert schedules == [schedule] and settings[-1] == door
    assert revocations[-1]["id"] == "04a1b2c3d4e5f6"
    for params, status in (
        ({"cursor": "x"}, 400),
        ({"limit": "many"}, 400),
        ({"cursor": "99999999"}, 410),
    ):
        response = call(contract, "GET", url, "/v1/deltas", session=session, params=params)
        assert response.status_code == status, params


def test_heartbeat_gives_the_server_clock(
    central: CentralProcess, contract: ContractChecker
) -> None:
    enrolled, session = new_device(central)
    body = {
        "sent_at_ms": time.time_ns() // 1_000_000 - 3_600_000,  # an hour slow
        "backlog": {"pending": 12, "dead_letter": 1, "oldest_wall_ms": 1},
        "last_sync_ms": None,
        "clock_offset_ms": None,
        "disk": {"free_bytes": 1, "total_bytes": 2, "db_bytes": 1, "media_bytes": 0},
        "versions": {"agent": "0.1.0"},
        "alarms": [{"code": "backlog_growing", "since_ms": 1}],
        "doors": [{"door": "lobby", "mode": "normal", "state": "closed"}],
        "uptime_s": 5,
    }
    contract.validate(body, "HeartbeatRequest")
    t0 = body["sent_at_ms"]
    answer = call(
        contract,
        "POST",
        f"{central.url}/v1/heartbeat",
        "/v1/heartbeat",
        session=session,
        json=body,
    ).json()
    t3 = t0 + 10  # the device's slow clock when the answer came back
    offset = ((answer["received_at_ms"] - t0) + (answer["server_time_ms"] - t3)) / 2
    assert 3_500_000 < offset < 3_700_000
    seen = summary(central, enrolled["device_id"])
    assert seen["last_heartbeat"]["backlog"]["pending"] == 12
    bad = call(
        contract,
        "POST",
        f"{central.url}/v1/heartbeat",
        "/v1/heartbeat",
        session=session,
        json={"sent_at_ms": "later"},
    )
    assert bad.status_code == 400


def test_invitation_verifies_with_keys_from_deltas_and_single_use_is_shared(
    central: CentralProcess, contract: ContractChecker
) -> None:
    _door_a, session_a = new_device(central, "lobby")
    _door_b, session_b = new_device(central, "garage")
    url = f"{central.url}/v1/deltas"
    cursor_b = call(contract, "GET", url, "/v1/deltas", session=session_b).json()
    with central.admin() as admin:
        minted = admin.create_invitation(
            visitor="Ada Lovelace", doors=["lobby", "garage"], single_use=True
        )
    contract.validate(minted, "InvitationCreated")
    keys = [TrustedKey.from_dict(key) for key in cursor_b["signing_keys"]]
    result = verify(minted["token"], Keyring(keys), now=time.time(), site="hq", door="lobby")
    assert result.ok and result.single_use
    # Door A lets the visitor in and journals the use; door B learns it at its next sync.
    used = ChainBuilder().event(
        "invitation.used",
        {"invitation_id": result.invitation_id, "door": "lobby", "expires": result.expires},
    )
    assert upload(contract, central, session_a, [used])["acks"][0]["status"] == "accepted"
    page = call(
        contract,
        "GET",
        url,
        "/v1/deltas",
        session=session_b,
        params={"cursor": cursor_b["cursor"]},
    ).json()
    assert result.invitation_id in [item["id"] for item in page["used_invitations"]]
    assert result.invitation_id in [item["id"] for item in page["invitations"]]


def test_key_rotation_over_http(central: CentralProcess, contract: ContractChecker) -> None:
    _, session = new_device(central)
    with central.admin() as admin:
        before = admin.create_invitation(visitor="Old", doors=["lobby"])
        rotated = admin.rotate_key()
        contract.check_response("POST", "/admin/keys/rotate", 200, rotated)
        after = admin.create_invitation(visitor="New", doors=["lobby"])
        listed = admin.keys()
    contract.check_response("GET", "/admin/keys", 200, listed)
    assert listed["active_kid"] == rotated["active"]["kid"] == after["invitation"]["kid"]
    keys: dict[str, dict] = {}
    cursor = None
    while True:
        page = requests.get(
            f"{central.url}/v1/deltas",
            params={"cursor": cursor} if cursor else {},
            headers=session.headers,
            timeout=TIMEOUT,
        ).json()
        keys.update({key["kid"]: key for key in page["signing_keys"]})
        cursor = page["cursor"]
        if not page["more"]:
            break
    keyring = Keyring(TrustedKey.from_dict(key) for key in keys.values())
    for minted in (before, after):
        assert verify(minted["token"], keyring, now=time.time(), site="hq", door="lobby").ok
    revoked_kid = before["invitation"]["kid"]
    with central.admin() as admin:
        admin.rotate_key(retire_now=True)  # as if the key that signed `after` leaked
        listed = admin.keys()
    ended = {key["kid"]: key["not_after"] for key in listed["keys"]}
    assert ended[revoked_kid] is not None and ended[rotated["active"]["kid"]] is not None
    keyring = Keyring(TrustedKey.from_dict(key) for key in listed["keys"])
    past_skew = time.time() + 300
    denied = verify(after["token"], keyring, now=past_skew, site="hq", door="lobby")
    assert denied.reason == Reason.UNKNOWN_KEY


def test_admin_error_answers(central: CentralProcess, contract: ContractChecker) -> None:
    base = central.url
    cases = [
        (
            "POST",
            "/admin/invitations/nope/revoke",
            "/admin/invitations/{invitation_id}/revoke",
            None,
            404,
        ),
        ("POST", "/admin/badges/01020304/revoke", "/admin/badges/{uid}/revoke", None, 404),
        ("DELETE", "/admin/schedules/nope", "/admin/schedules/{schedule_id}", None, 404),
        ("POST", "/admin/devices/nope/disable", "/admin/devices/{device_id}/disable", None, 404),
        ("GET", "/admin/devices/nope/events", "/admin/devices/{device_id}/events", None, 404),
        ("POST", "/admin/invitations", "/admin/invitations", {"visitor": "X"}, 400),
        ("POST", "/admin/badges", "/admin/badges", {"uid": "zz", "holder": "X"}, 400),
        ("POST", "/admin/enroll-tokens", "/admin/enroll-tokens", {"door": "a b"}, 400),
        ("POST", "/admin/faults", "/admin/faults", {"name": "gremlins"}, 400),
        (
            "PUT",
            "/admin/doors/lobby/settings",
            "/admin/doors/{door}/settings",
            {"settings": {"mode": "party"}},
            400,
        ),
    ]
    for method, path, template, body, status in cases:
        response = call(contract, method, base + path, template, json=body)
        assert response.status_code == status, (path, response.text)


def test_admin_answers_loopback_only() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("::ffff:127.0.0.1")
    for remote in ("10.0.0.7", "192.168.1.2", "2001:db8::1", None, "", "not-an-ip"):
        assert not _is_loopback(remote)


def test_audit_log_over_http(central: CentralProcess, contract: ContractChecker) -> None:
    base = central.url
    verified = call(contract, "GET", f"{base}/admin/audit/verify", "/admin/audit/verify").json()
    assert verified["ok"] and verified["rows"] >= 1
    exported = call(contract, "GET", f"{base}/admin/audit?since=0", "/admin/audit").json()
    assert exported["entries"][0]["seq"] == 1
    assert exported["head_seq"] >= verified["head_seq"]
    bad = call(contract, "GET", f"{base}/admin/audit?since=x", "/admin/audit")
    assert bad.status_code == 400
    journal = call(
        contract, "GET", f"{base}/admin/operator-journal", "/admin/operator-journal"
    ).json()
    assert journal["entries"][0]["hash"] == exported["entries"][0]["hash"]


def test_info(central: CentralProcess, contract: ContractChecker) -> None:
    with central.admin() as admin:
        info = admin.info()
    contract.check_response("GET", "/admin/info", 200, info)
    assert info["site"] == "hq"


def test_restart_keeps_everything_and_sigterm_exits_cleanly(tmp_path: Path) -> None:
    process = CentralProcess(tmp_path / "data")
    process.start()
    try:
        _enrolled, session = enroll_device(process.url, device_id="restart-1")
        chain = ChainBuilder()
        session.post(f"{process.url}/v1/events", json={"events": chain.events(3)}, timeout=TIMEOUT)
    finally:
        assert process.stop() == 0
    process.start()
    try:
        again = session.post(
            f"{process.url}/v1/events", json={"events": chain.events(2)}, timeout=TIMEOUT
        ).json()
        assert [ack["status"] for ack in again["acks"]] == ["accepted", "accepted"]
        with process.admin() as admin:
            seen = admin.received(verify=True)["devices"][0]
        assert seen["unique_events"] == 5 and seen["chain_verified"]
    finally:
        assert process.stop() == 0


def test_sigint_stops_the_server(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "central", "serve", "--port", "0", "--data", str(tmp_path / "d")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        ready = child.stdout.readline()
        assert '"ready": true' in ready
        child.send_signal(signal.SIGINT)
        assert child.wait(15) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()


def test_access_levels_over_http(central: CentralProcess, contract: ContractChecker) -> None:
    """Badges listed (never a PIN hash), holidays set and removed, a badge's rights at a door:
    each answer against the contract, on each backend."""
    from portier_common.pins import hash_pin

    base = central.url
    _, session = enroll_device(central.url, door="api-vault", zones=["api-secure"])
    session.close()
    with central.admin() as admin:
        admin.put_schedule(
            "api-secure",
            timezone="UTC",
            rules=[{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00",
                    "end": "24:00"}],
        )  # fmt: skip
        admin.put_badge(
            uid="04A0A0A0A0A0A0",
            holder="Api Guard",
            zones=["api-secure"],
            schedule="api-secure",
            role="guard",
            pin_hash=hash_pin("246813", n=2**14),
        )
    listed = call(contract, "GET", f"{base}/admin/badges", "/admin/badges", params={"q": "api g"})
    [badge] = listed.json()["badges"]
    assert badge["has_pin"] and badge["schedule"] == "api-secure" and "pin_hash" not in badge
    today = time.strftime("%Y-%m-%d", time.gmtime())
    put = call(
        contract,
        "PUT",
        f"{base}/admin/holidays/{today}",
        "/admin/holidays/{date}",
        json={"name": "Api closure"},
    )
    assert put.status_code == 200 and put.json()["schedules"] >= 1
    assert {"date": today, "name": "Api closure"} in call(
        contract, "GET", f"{base}/admin/holidays", "/admin/holidays"
    ).json()["holidays"]
    params = {"uid": "04a0a0a0a0a0a0", "door": "api-vault"}
    rights = call(contract, "GET", f"{base}/admin/rights", "/admin/rights", params=params).json()
    assert rights["now"]["granted"] is False and rights["now"]["reason"] == "holiday"
    assert rights["via"] == {"door": False, "zones": ["api-secure"]}
    deleted = call(contract, "DELETE", f"{base}/admin/holidays/{today}", "/admin/holidays/{date}")
    assert deleted.status_code == 204
    rights = call(contract, "GET", f"{base}/admin/rights", "/admin/rights", params=params).json()
    assert rights["now"]["granted"] is True
    assert sum(span["end"] - span["start"] for span in rights["week"]) == 7 * 86400
    # Refusals: a bad date, no holiday, an unknown badge, a malformed one.
    bad = call(
        contract, "PUT", f"{base}/admin/holidays/25-12-2026", "/admin/holidays/{date}",
        json={"name": "x"},
    )  # fmt: skip
    assert bad.status_code == 400
    gone = call(contract, "DELETE", f"{base}/admin/holidays/{today}", "/admin/holidays/{date}")
    assert gone.status_code == 404
    unknown = {"uid": "04FFFFFFFFFFFF", "door": "api-vault"}
    assert (
        call(contract, "GET", f"{base}/admin/rights", "/admin/rights", params=unknown).status_code
        == 404
    )
    malformed = {"uid": "zz", "door": "api-vault"}
    assert (
        call(contract, "GET", f"{base}/admin/rights", "/admin/rights", params=malformed).status_code
        == 400
    )
    schedules = call(contract, "GET", f"{base}/admin/schedules", "/admin/schedules").json()
    assert "api-secure" in {s["id"] for s in schedules["schedules"]}
