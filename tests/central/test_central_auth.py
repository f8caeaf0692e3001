"""Operators of the central: accounts, roles, API tokens, sessions, lock-out, and the admin
API refusing whatever is not an operator allowed to do it (issue #13, "Operators and
security").

The attack this closes: a web page in the operator's browser on the central's machine
POSTs a ``text/plain`` body to ``http://127.0.0.1:PORT/admin/badges`` (a "simple"
request: no CORS preflight) and, before operators existed, the badge was added.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from argon2 import PasswordHasher

from central.admin import CentralAdmin
from central.auth import ROUTE_ROLES, allowed, bootstrap_token
from central.errors import BadRequest, Forbidden, NotFound, Unauthorized
from central.server import CSRF_HEADER, SESSION_COOKIE, CentralServer
from central.settings import CentralSettings
from central.store import CentralStore
from central.store.operators import LOCKOUT_FAILURES, LOCKOUT_MS, ROLES
from central.testing import CentralProcess

TIMEOUT = 10
pytestmark = pytest.mark.processes  # the HTTP and CLI halves start a central

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
BADGE: dict[str, Any] = {
    "uid": "04C0FFEE0000AA",
    "holder": "Mallory",
    "doors": ["gate-a"],
    "kind": "uid",
}


# -- the role table ----------------------------------------------------------------------


def test_every_admin_route_is_in_the_role_table_and_nothing_else() -> None:
    server = object.__new__(CentralServer)  # the routes only: no store opened
    server.settings = CentralSettings(data_dir=Path("/nonexistent"))
    routes = {
        (route.method, route.resource.canonical)
        for route in server.make_app().router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/admin")
        and route.method != "HEAD"
    }
    assert routes - {("POST", "/admin/login")} == set(ROUTE_ROLES)


def test_the_role_table() -> None:
    # security_officer may do everything; each other role what its work needs.
    assert all("security_officer" in roles for roles in ROUTE_ROLES.values())
    assert allowed("pass_office", "POST", "/admin/badges")
    assert allowed("pass_office", "POST", "/admin/invitations")
    assert not allowed("pass_office", "POST", "/admin/keys/rotate")
    assert not allowed("pass_office", "PUT", "/admin/doors/{door}/settings")
    assert not allowed("auditor", "POST", "/admin/badges")
    assert not allowed("auditor", "POST", "/admin/invitations")
    assert allowed("auditor", "GET", "/admin/events")
    assert allowed("auditor", "GET", "/admin/operator-journal")
    assert allowed("auditor", "GET", "/admin/devices/{device_id}/events")
    assert allowed("installer", "POST", "/admin/enroll-tokens")
    assert allowed("installer", "POST", "/admin/devices/{device_id}/reset")
    assert not allowed("installer", "POST", "/admin/badges")
    assert not allowed("installer", "GET", "/admin/operator-journal")
    for route in ("/admin/audit", "/admin/audit/verify"):
        assert allowed("auditor", "GET", route) and allowed("security_officer", "GET", route)
        assert not allowed("pass_office", "GET", route)
        assert not allowed("installer", "GET", route)
    # Reads are for reading roles only; no role may call a route not in the table. Every
    # role may change only what is its own (its password, tokens, sessions; logout).
    writes = {k for k in ROUTE_ROLES if k[0] != "GET" and ROUTE_ROLES[k] != frozenset(ROLES)}
    assert {k[1] for k in ROUTE_ROLES if k[0] != "GET" and ROUTE_ROLES[k] == frozenset(ROLES)} == {
        "/admin/logout",
        "/admin/password",
        "/admin/tokens",
        "/admin/tokens/{token_id}",
        "/admin/sessions/{session_id}",
    }
    assert not any(allowed("auditor", method, route) for method, route in writes)
    assert not any(allowed(role, "POST", "/admin/nowhere") for role in ROLES)


# -- the store: accounts, tokens, lock-out ---------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[CentralStore]:
    with CentralStore(CentralSettings(data_dir=tmp_path / "data"), clock=clock) as opened:
        yield opened


def test_passwords_are_argon2id_hashes(store: CentralStore) -> None:
    store.add_operator("ada", "pass_office", PASSWORD)
    with store._tx() as conn:
        stored = conn.execute("SELECT password_hash FROM operators").fetchone()[0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)
    listed = store.list_operators()
    assert listed == [
        {
            "name": "ada",
            "role": "pass_office",
            "enabled": True,
            "has_password": True,
            "must_change_password": False,
            "created_at_ms": 1_800_000_000_000,
            "locked_until_ms": None,
        }
    ]


def test_bad_accounts_are_refused(store: CentralStore) -> None:
    with pytest.raises(BadRequest):
        store.add_operator("ada", "janitor")
    with pytest.raises(BadRequest):
        store.add_operator("Ada Lovelace", "auditor")
    with pytest.raises(BadRequest):
        store.add_operator("ada", "auditor", "short")
    store.add_operator("ada", "auditor")
    with pytest.raises(BadRequest):
        store.add_operator("ada", "auditor")
    with pytest.raises(NotFound):
        store.create_api_token("nobody")


def test_api_tokens_are_shown_once_stored_hashed_expire_and_revoke(
    store: CentralStore, clock: Clock
) -> None:
    store.add_operator("ada", "pass_office")
    minted = store.create_api_token("ada", ttl_s=3600, label="laptop")
    token = minted["token"]
    assert token.startswith("pct_") and len(token) > 40
    with store._tx() as conn:
        dump = "".join(str(tuple(row)) for row in conn.execute("SELECT * FROM api_tokens"))
    assert token not in dump
    assert store.authenticate_operator(token) == {
        "name": "ada",
        "role": "pass_office",
        "via": "token",
    }
    with pytest.raises(Unauthorized) as bad:
        store.authenticate_operator(token + "x")
    assert bad.value.extra["reason"] == "bad_token"
    clock.now += 3600 * 1000
    with pytest.raises(Unauthorized) as expired:
        store.authenticate_operator(token)
    assert expired.value.extra["reason"] == "token_expired"
    other = store.create_api_token("ada")
    store.revoke_api_token(other["token_id"])
    with pytest.raises(Unauthorized) as revoked:
        store.authenticate_operator(other["token"])
    assert revoked.value.extra["reason"] == "token_revoked"
    third = store.create_api_token("ada")
    store.disable_operator("ada")
    with pytest.raises(Unauthorized) as disabled:
        store.authenticate_operator(third["token"])
    assert disabled.value.extra["reason"] == "operator_disabled"
    with pytest.raises(BadRequest):
        store.create_api_token("ada", ttl_s=10)


def test_repeated_failures_lock_the_account_for_a_while_and_are_journaled(
    store: CentralStore, clock: Clock
) -> None:
    store.add_operator("ada", "security_officer", PASSWORD)
    token = store.create_api_token("ada")["token"]
    for _ in range(LOCKOUT_FAILURES):
        with pytest.raises(Unauthorized) as wrong:
            store.login("ada", "guess guess guess", remote="127.0.0.1")
        assert wrong.value.extra["reason"] == "bad_password"
    with pytest.raises(Unauthorized) as locked:
        store.login("ada", PASSWORD)  # the right password, too late
    assert locked.value.extra["reason"] == "locked_out"
    # Its API tokens keep working: guessing cannot lock the office out of the CLI.
    assert store.authenticate_operator(token)["name"] == "ada"
    clock.now += LOCKOUT_MS + 1
    session = store.login("ada", PASSWORD)
    assert session["role"] == "security_officer" and session["csrf_token"]
    actions = [(e["operator"], e["action"]) for e in store.operator_journal()]
    assert actions.count(("ada", "login.failed")) == LOCKOUT_FAILURES
    assert ("ada", "operator.locked") in actions and ("ada", "login.locked") in actions
    assert actions[-1] == ("ada", "login")


def test_failures_spread_over_more_than_the_window_do_not_lock(
    store: CentralStore, clock: Clock
) -> None:
    store.add_operator("ada", "auditor", PASSWORD)
    for _ in range(3 * LOCKOUT_FAILURES):
        with pytest.raises(Unauthorized):
            store.login("ada", "nope nope nope")
        clock.now += 5 * 60 * 1000  # 3 a quarter-hour
    assert store.login("ada", PASSWORD)["operator"] == "ada"


def test_an_unknown_name_fails_like_a_wrong_password(store: CentralStore) -> None:
    with pytest.raises(Unauthorized) as unknown:
        store.login("nobody", PASSWORD)
    assert unknown.value.extra["reason"] == "bad_password"
    assert store.operator_journal()[-1]["operator"] is None


def test_a_session_checks_its_csrf_token(store: CentralStore, clock: Clock) -> None:
    store.add_operator("ada", "pass_office", PASSWORD)
    session = store.login("ada", PASSWORD)
    assert store.session_operator(session["session"], session["csrf_token"])["csrf_ok"]
    assert not store.session_operator(session["session"], "forged")["csrf_ok"]
    assert not store.session_operator(session["session"], None)["csrf_ok"]
    store.logout(session["session"])
    with pytest.raises(Unauthorized):
        store.session_operator(session["session"], session["csrf_token"])


def test_bootstrap_registers_a_chosen_token_once(tmp_path: Path) -> None:
    settings = CentralSettings(data_dir=tmp_path / "data")
    chosen = "pct_" + "k" * 40
    assert bootstrap_token(settings, operator="demo", token=chosen) == chosen
    assert bootstrap_token(settings, operator="demo", token=chosen) == chosen  # again: kept
    fresh = bootstrap_token(settings, operator="demo")
    assert fresh != chosen
    with CentralStore(settings) as store:
        assert [o["name"] for o in store.list_operators()] == ["demo"]
        assert len(store.list_api_tokens()) == 2


# -- over HTTP -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralProcess]:
    data = tmp_path_factory.mktemp("central") / "data"
    process = CentralProcess(data)
    with CentralStore(CentralSettings(data_dir=data), clock=lambda: 1_000_000) as past:
        past.add_operator("old", "security_officer")
        process.expired = past.create_api_token("old", ttl_s=60)["token"]  # type: ignore[attr-defined]
    with CentralStore(CentralSettings(data_dir=data)) as store:
        for name, role in (("pat", "pass_office"), ("aud", "auditor"), ("ivy", "installer")):
            store.add_operator(name, role, PASSWORD)
        process.tokens = {  # type: ignore[attr-defined]
            role: store.create_api_token(name)["token"]
            for name, role in (("pat", "pass_office"), ("aud", "auditor"), ("ivy", "installer"))
        }
        revoked = store.create_api_token("pat")
        store.revoke_api_token(revoked["token_id"])
        process.revoked = revoked["token"]  # type: ignore[attr-defined]
        store.add_operator("locky", "security_officer", PASSWORD)
    with process:
        yield process


def _badge_known(central: CentralProcess, uid: str) -> bool:
    with central.admin() as admin:
        try:
            admin.revoke_badge(uid)
        except NotFound:
            return False
    return True


def test_the_cross_site_text_plain_post_no_longer_adds_a_badge(central: CentralProcess) -> None:
    """What a page on another site can make the browser send: no preflight, no token."""
    response = requests.post(
        f"{central.url}/admin/badges",
        data=json.dumps(BADGE),
        headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden" and response.json()["reason"] == "cross_site"
    # The same without an Origin (an older browser, a redirect): still refused.
    response = requests.post(
        f"{central.url}/admin/badges",
        data=json.dumps(BADGE),
        headers={"Content-Type": "text/plain"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 403 and response.json()["reason"] == "content_type"
    # A form post, the other simple content type.
    response = requests.post(f"{central.url}/admin/badges", data=BADGE, timeout=TIMEOUT)
    assert response.status_code == 403 and response.json()["reason"] == "content_type"
    assert not _badge_known(central, BADGE["uid"])


def test_no_credential_and_a_wrong_one_get_401_with_a_reason(central: CentralProcess) -> None:
    def reason(headers: dict[str, str]) -> tuple[int, str, str]:
        response = requests.post(
            f"{central.url}/admin/badges", json=BADGE, headers=headers, timeout=TIMEOUT
        )
        return response.status_code, response.json()["error"], response.json().get("reason")

    assert reason({}) == (401, "unauthorized", "no_credential")
    assert reason({"Authorization": "Bearer nope"}) == (401, "unauthorized", "bad_token")
    assert reason({"Authorization": "Basic YWRhOnB3"}) == (401, "unauthorized", "bad_scheme")
    expired = central.expired  # type: ignore[attr-defined]
    assert reason({"Authorization": f"Bearer {expired}"})[2] == "token_expired"
    revoked = central.revoked  # type: ignore[attr-defined]
    assert reason({"Authorization": f"Bearer {revoked}"})[2] == "token_revoked"
    response = requests.get(f"{central.url}/admin/info", timeout=TIMEOUT)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert not _badge_known(central, BADGE["uid"])


def test_roles_decide_what_a_token_may_do(central: CentralProcess) -> None:
    tokens = central.tokens  # type: ignore[attr-defined]
    with CentralAdmin(central.url, token=tokens["auditor"]) as auditor:
        with pytest.raises(Forbidden) as refused:
            auditor.put_badge(**BADGE)
        assert refused.value.extra["reason"] == "role"
        assert auditor.received()["totals"]["devices"] >= 0  # reading is its work
        assert auditor.whoami() == {
            "name": "aud",
            "role": "auditor",
            "via": "token",
            "must_change_password": False,
        }
        # The audit log: the auditor reads, verifies and exports it.
        verified = auditor.verify_audit()
        assert verified["ok"] and verified["rows"] >= 1
        exported = auditor.audit_export(since_ms=0)
        assert exported["head_hash"] == verified["head_hash"]
        assert exported["entries"][-1]["hash"] == exported["head_hash"]
    assert not _badge_known(central, BADGE["uid"])
    with CentralAdmin(central.url, token=tokens["installer"]) as installer:
        assert installer.create_enroll_token("gate-a")["enroll_token"]
        with pytest.raises(Forbidden):
            installer.put_badge(**BADGE)
    with CentralAdmin(central.url, token=tokens["pass_office"]) as office:
        stored = office.put_badge(**{**BADGE, "uid": "04C0FFEE0000BB"})
        assert stored["holder"] == "Mallory"
        with pytest.raises(Forbidden):
            office.rotate_key()
        with pytest.raises(Forbidden):
            office.operator_journal()
        with pytest.raises(Forbidden):
            office.audit_export()
        with pytest.raises(Forbidden):
            office.verify_audit()


def test_every_change_is_journaled_with_its_operator(central: CentralProcess) -> None:
    tokens = central.tokens  # type: ignore[attr-defined]
    with CentralAdmin(central.url, token=tokens["pass_office"]) as office:
        office.put_badge(**{**BADGE, "uid": "04C0FFEE0000CC"})
    with CentralAdmin(central.url, token=tokens["auditor"]) as auditor:
        entries = auditor.operator_journal()
    added = [e for e in entries if json.loads(e["detail"]).get("uid") == "04c0ffee0000cc"]
    assert [e["operator"] for e in added] == ["pat"]  # the uid, from the answer
    mine = [e for e in entries if e["operator"] == "pat" and e["action"] == "POST /admin/badges"]
    assert mine and mine[-1]["status"] == 200 and mine[-1]["remote"] == "127.0.0.1"
    # A change beyond one's role is refused, and on the record (an attempt to escalate).
    refused = [e for e in entries if e["operator"] == "aud" and e["status"] == 403]
    assert refused and all(e["action"] == "POST /admin/badges" for e in refused)


def test_a_browser_session_needs_its_csrf_token_and_the_same_origin(
    central: CentralProcess,
) -> None:
    browser = requests.Session()
    login = browser.post(
        f"{central.url}/admin/login", json={"name": "pat", "password": PASSWORD}, timeout=TIMEOUT
    )
    assert login.status_code == 200, login.text
    body = login.json()
    assert set(body) == {
        "csrf_token",
        "operator",
        "role",
        "expires_at_ms",
        "must_change_password",
    }
    cookie = login.headers["Set-Cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    url = f"{central.url}/admin/badges"
    badge = {**BADGE, "uid": "04C0FFEE0000DD"}
    assert browser.get(f"{central.url}/admin/whoami", timeout=TIMEOUT).json()["via"] == "session"
    no_csrf = browser.post(url, json=badge, timeout=TIMEOUT)
    assert no_csrf.status_code == 403 and no_csrf.json()["reason"] == "csrf"
    csrf = {CSRF_HEADER: body["csrf_token"]}
    other_site = browser.post(
        url, json=badge, headers={**csrf, "Origin": "http://evil.example"}, timeout=TIMEOUT
    )
    assert other_site.status_code == 403 and other_site.json()["reason"] == "cross_site"
    fetch_meta = browser.post(
        url, json=badge, headers={**csrf, "Sec-Fetch-Site": "cross-site"}, timeout=TIMEOUT
    )
    assert fetch_meta.status_code == 403
    same_origin = browser.post(
        url, json=badge, headers={**csrf, "Origin": central.url}, timeout=TIMEOUT
    )
    assert same_origin.status_code == 200, same_origin.text
    assert browser.post(f"{central.url}/admin/logout", headers=csrf, timeout=TIMEOUT).ok
    after = requests.get(
        f"{central.url}/admin/whoami",
        cookies={SESSION_COOKIE: str(login.cookies[SESSION_COOKIE])},
        timeout=TIMEOUT,
    )
    assert after.status_code == 401 and after.json()["reason"] == "bad_session"


def test_a_locked_out_account_cannot_log_in(central: CentralProcess) -> None:
    url = f"{central.url}/admin/login"
    for _ in range(LOCKOUT_FAILURES):
        wrong = requests.post(url, json={"name": "locky", "password": "x" * 12}, timeout=TIMEOUT)
        assert wrong.status_code == 401 and wrong.json()["reason"] == "bad_password"
    right = requests.post(url, json={"name": "locky", "password": PASSWORD}, timeout=TIMEOUT)
    assert right.status_code == 401 and right.json()["reason"] == "locked_out"
    assert right.json()["retry_after_s"] > 0


def test_devices_keep_their_bearer_credentials(central: CentralProcess) -> None:
    from central.testing import enroll_device

    enrolled, session = enroll_device(central.url, door="gate-a", device_id="auth-device")
    assert session.get(f"{central.url}/v1/deltas", timeout=TIMEOUT).status_code == 200
    # A device credential is not an operator's.
    refused = session.get(f"{central.url}/admin/info", timeout=TIMEOUT)
    assert refused.status_code == 401 and refused.json()["reason"] == "bad_token"
    assert enrolled["device_id"] == "auth-device"


# -- the CLI -------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    return subprocess.run(
        [sys.executable, "-m", "central", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=60,
    )


def test_cli_bootstraps_an_operator_and_a_token_locally(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = _cli("operator", "add", "--data", str(data), "--name", "ada", "--role",
                 "security_officer", "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = _cli("operator", "list", "--data", str(data), "--json")
    assert json.loads(listed.stdout)[0]["name"] == "ada"
    made = _cli("token", "create", "--data", str(data), "--operator", "ada", "--ttl-days", "1")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("pct_") and "\n" not in token
    tokens = json.loads(_cli("token", "list", "--data", str(data), "--json").stdout)
    assert tokens[0]["operator"] == "ada" and token not in json.dumps(tokens)
    with CentralProcess(data, token=token) as process:
        env = {"PORTIER_CENTRAL_TOKEN": ""}
        no_token = _cli("keys", "list", "--url", process.url, env=env)
        assert no_token.returncode == 2 and "--token" in no_token.stderr
        by_option = _cli("keys", "list", "--url", process.url, "--token", token, env=env)
        assert by_option.returncode == 0, by_option.stderr
        by_env = _cli("keys", "list", "--url", process.url, env={"PORTIER_CENTRAL_TOKEN": token})
        assert by_env.returncode == 0, by_env.stderr
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o644)
        loose = _cli("keys", "list", "--url", process.url, "--token-file", str(token_file), env=env)
        assert loose.returncode == 2 and "0600" in loose.stderr
        token_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
        by_file = _cli(
            "keys", "list", "--url", process.url, "--token-file", str(token_file), env=env
        )
        assert by_file.returncode == 0, by_file.stderr
        wrong = _cli("keys", "list", "--url", process.url, "--token", "pct_wrong", env=env)
        assert wrong.returncode == 1 and "unauthorized" in wrong.stderr
    disabled = _cli("operator", "disable", "--data", str(data), "--name", "ada")
    assert disabled.returncode == 0, disabled.stderr
    with CentralStore(CentralSettings(data_dir=data)) as store, pytest.raises(Unauthorized):
        store.authenticate_operator(token)
