"""Operators over HTTP and admin changes recorded with their audit row (issue #13).

On both backends (``central_on_each_backend``: SQLite and a real PostgreSQL). The attacks:
an audit append that fails must take the change with it; a pass-office operator cannot
create operators nor raise its own role; a disabled operator's sessions and tokens stop at
once; nobody can disable or demote the last security officer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from central.admin import CentralAdmin
from central.errors import Forbidden, LastAdministrator, NotFound, Unauthorized
from central.server import CSRF_HEADER, SESSION_COOKIE
from central.testing import CentralProcess

pytestmark = pytest.mark.processes

TIMEOUT = 10
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def central(central_on_each_backend: CentralProcess) -> CentralProcess:
    """The central of these tests: each backend in turn (tests/conftest.py)."""
    return central_on_each_backend


@contextmanager
def database(central: CentralProcess) -> Iterator[Any]:
    """A connection of our own to the central's database (autocommit): the database
    administrator's view, outside the central's rules."""
    if "--db" in central.extra_args:
        import psycopg

        url = central.extra_args[central.extra_args.index("--db") + 1]
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn
        return
    conn = sqlite3.connect(central.data_dir / "central.db", isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _scalar(central: CentralProcess, sql: str) -> Any:
    with database(central) as conn:
        return conn.execute(sql).fetchone()[0]


@contextmanager
def audit_appends_fail(central: CentralProcess) -> Iterator[None]:
    """Make every INSERT into the audit log fail (a full disk, a broken trigger, a
    crash at that moment), then put it right."""
    postgres = "--db" in central.extra_args
    with database(central) as conn:
        if postgres:
            conn.execute(
                "CREATE FUNCTION audit_fails() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$"
            )
            conn.execute(
                "CREATE TRIGGER audit_fails BEFORE INSERT ON operator_journal "
                "FOR EACH ROW EXECUTE FUNCTION audit_fails()"
            )
        else:
            conn.execute(
                "CREATE TRIGGER audit_fails BEFORE INSERT ON operator_journal "
                "BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END"
            )
    try:
        yield
    finally:
        with database(central) as conn:
            conn.execute("DROP TRIGGER audit_fails" + (" ON operator_journal" if postgres else ""))
            if postgres:
                conn.execute("DROP FUNCTION audit_fails()")


# -- task 1: an admin change and its audit row commit together ------------------------


def test_an_admin_change_does_not_happen_without_its_audit_row(
    central: CentralProcess, admin: CentralAdmin
) -> None:
    """Before: the change committed, then its audit row was written in a second
    transaction; when that failed (or the process died in between), the badge, the
    invitation, the door mode, the rotated key stayed, unrecorded."""
    kid = admin.keys()["active_kid"]
    changes = _scalar(central, "SELECT count(*) FROM changes")
    rows = _scalar(central, "SELECT count(*) FROM operator_journal")
    badge = {"uid": "04A7A7A7A7A7A7", "holder": "Eve", "doors": ["gate-a"], "kind": "uid"}
    with audit_appends_fail(central):
        attempts = [
            ("POST", "/admin/badges", badge),
            ("POST", "/admin/invitations", {"visitor": "Eve", "doors": ["gate-a"]}),
            ("PUT", "/admin/doors/gate-a/settings", {"settings": {"mode": "normal"}}),
            ("POST", "/admin/keys/rotate", {}),
            (
                "PUT",
                "/admin/schedules/nights",
                {"rules": [{"days": ["mon"], "start": "20:00", "end": "23:00"}]},
            ),
        ]
        for method, path, body in attempts:
            response = requests.request(
                method,
                central.url + path,
                json=body,
                headers={"Authorization": f"Bearer {central.token}"},
                timeout=TIMEOUT,
            )
            assert response.status_code == 500, (path, response.status_code, response.text)
    # Nothing of it happened: no badge, no invitation, no door mode, the same key.
    assert _scalar(central, "SELECT count(*) FROM changes") == changes
    assert _scalar(central, "SELECT count(*) FROM badges WHERE uid = '04a7a7a7a7a7a7'") == 0
    assert _scalar(central, "SELECT count(*) FROM operator_journal") == rows
    assert admin.keys()["active_kid"] == kid
    # With the audit log back, the same change is made and recorded, in one chain.
    admin.put_badge(**badge)
    last = admin.operator_journal(after=rows)[-1]
    assert last["action"] == "POST /admin/badges" and last["operator"] == "tests"
    assert last["status"] == 200 and '"uid":"04a7a7a7a7a7a7"' in last["detail"]
    assert admin.verify_audit()["ok"]


# -- task 2: operators over HTTP ------------------------------------------------------


def _login(central: CentralProcess, name: str, password: str) -> tuple[requests.Session, dict]:
    """A browser: log in, keep the cookie; return the session and the login answer."""
    browser = requests.Session()
    response = browser.post(
        central.url + "/admin/login", json={"name": name, "password": password}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert SESSION_COOKIE in browser.cookies
    return browser, response.json()


def _as(browser: requests.Session, method: str, url: str, csrf: str | None, **kw: Any):
    headers = {} if csrf is None else {CSRF_HEADER: csrf}
    return browser.request(method, url, headers=headers, timeout=TIMEOUT, **kw)


def _token_of(admin: CentralAdmin, central: CentralProcess, name: str) -> CentralAdmin:
    """An admin client acting as *name* (a token a security officer minted for them)."""
    minted = admin.create_token(operator=name, label="tests")
    assert minted["operator"] == name and minted["token"].startswith("pct_")
    return CentralAdmin(central.url, token=minted["token"], timeout=TIMEOUT)


def _ensure(admin: CentralAdmin, name: str, role: str) -> None:
    """*name* exists (whichever test of the module made it first)."""
    if name not in {o["name"] for o in admin.operators()}:
        admin.add_operator(name, role)


def _journal_since(admin: CentralAdmin, seq: int) -> list[dict[str, Any]]:
    return admin.operator_journal(after=seq)


def _head(admin: CentralAdmin) -> int:
    return int(admin.verify_audit()["head_seq"])


def test_a_security_officer_creates_an_operator_who_must_change_the_password(
    central: CentralProcess, admin: CentralAdmin
) -> None:
    head = _head(admin)
    created = admin.add_operator("pam", "pass_office", PASSWORD)
    assert created["role"] == "pass_office" and created["must_change_password"]
    assert "pam" in {o["name"] for o in admin.operators()}
    browser, answer = _login(central, "pam", PASSWORD)
    assert answer["must_change_password"] is True
    csrf = answer["csrf_token"]
    badge = {"uid": "04B0B0B0B0B0B0", "holder": "Bob", "doors": ["gate-a"], "kind": "uid"}
    # Until the password is changed, the session may only change it.
    refused = _as(browser, "POST", central.url + "/admin/badges", csrf, json=badge)
    assert refused.status_code == 403 and refused.json()["reason"] == "password_change"
    assert _as(browser, "GET", central.url + "/admin/whoami", None).json()["must_change_password"]
    # The change needs the current password, and the CSRF token like every change.
    body = {"current_password": PASSWORD, "new_password": PASSWORD + " 2"}
    no_csrf = _as(browser, "POST", central.url + "/admin/password", None, json=body)
    assert no_csrf.status_code == 403 and no_csrf.json()["reason"] == "csrf"
    wrong = {"current_password": "not the password", "new_password": PASSWORD + " 2"}
    bad = _as(browser, "POST", central.url + "/admin/password", csrf, json=wrong)
    assert bad.status_code == 401 and bad.json()["reason"] == "bad_password"
    changed = _as(browser, "POST", central.url + "/admin/password", csrf, json=body)
    assert changed.status_code == 200 and not changed.json()["must_change_password"]
    assert _as(browser, "POST", central.url + "/admin/badges", csrf, json=badge).status_code == 200
    # Each change in the audit log, by whom and from where, the chain whole.
    rows = _journal_since(admin, head)
    actions = [(r["operator"], r["action"]) for r in rows]
    assert ("tests", "operator.add") in actions
    assert ("pam", "operator.password_change") in actions
    assert ("pam", "POST /admin/badges") in actions
    added = next(r for r in rows if r["action"] == "operator.add")
    assert added["remote"] == "127.0.0.1" and '"role":"pass_office"' in added["detail"]
    assert admin.verify_audit()["ok"]


def test_a_pass_office_operator_cannot_create_operators_nor_raise_its_own_role(
    central: CentralProcess, admin: CentralAdmin
) -> None:
    _ensure(admin, "pia", "pass_office")
    head = _head(admin)
    with _token_of(admin, central, "pia") as pia:
        assert pia.whoami()["role"] == "pass_office"
        with pytest.raises(Forbidden) as refused:
            pia.add_operator("mallory", "security_officer")
        assert refused.value.extra["reason"] == "role"
        with pytest.raises(Forbidden):
            pia.set_operator_role("pia", "security_officer")
        with pytest.raises(Forbidden):
            pia.reset_password("tests")
        with pytest.raises(Forbidden):
            pia.disable_operator("tests")
        with pytest.raises(Forbidden):  # a token for a security officer: no
            pia.create_token(operator="tests")
        with pytest.raises(Forbidden):
            pia.tokens(operator="tests")
        with pytest.raises(Forbidden):
            pia.operators()
        # Its own tokens: yes; someone else's token id: not found (not even "not yours").
        own = pia.create_token(label="second")
        assert {t["token_id"] for t in pia.tokens()} >= {own["token_id"]}
        assert all(t["operator"] == "pia" for t in pia.tokens())
        others = [t for t in admin.tokens(operator="*") if t["operator"] != "pia"]
        with pytest.raises(NotFound):
            pia.revoke_token(others[0]["token_id"])
        pia.revoke_token(own["token_id"])
        assert pia.whoami()["role"] == "pass_office"
    assert "mallory" not in {o["name"] for o in admin.operators()}
    assert next(o for o in admin.operators() if o["name"] == "pia")["role"] == "pass_office"
    # The refusals are in the audit log too.
    refusals = [r for r in _journal_since(admin, head) if r["status"] == 403]
    assert {r["action"] for r in refusals} >= {
        "POST /admin/operators",
        "POST /admin/operators/{name}/role",
    }
    assert all(r["operator"] == "pia" for r in refusals)


def test_a_disabled_operators_sessions_and_tokens_stop_at_once(
    central: CentralProcess, admin: CentralAdmin
) -> None:
    admin.add_operator("dan", "installer", PASSWORD)
    browser, answer = _login(central, "dan", PASSWORD)
    csrf = answer["csrf_token"]
    body = {"current_password": PASSWORD, "new_password": PASSWORD + "!"}
    assert _as(browser, "POST", central.url + "/admin/password", csrf, json=body).ok
    with _token_of(admin, central, "dan") as dan:
        assert dan.whoami()["name"] == "dan"
        assert _as(browser, "GET", central.url + "/admin/whoami", None).ok
        [session] = admin.sessions(operator="dan")
        assert _as(browser, "GET", central.url + "/admin/sessions", None).json()["sessions"][0][
            "current"
        ]
        admin.disable_operator("dan")
        with pytest.raises(Unauthorized) as stopped:
            dan.whoami()
        assert stopped.value.extra["reason"] == "operator_disabled"
        gone = _as(browser, "GET", central.url + "/admin/whoami", None)
        assert gone.status_code == 401 and gone.json()["reason"] == "bad_session"
        assert admin.sessions(operator="dan") == []
        # Enabled again: the token works again; the session stays ended.
        admin.enable_operator("dan")
        assert dan.whoami()["name"] == "dan"
        assert _as(browser, "GET", central.url + "/admin/whoami", None).status_code == 401
        assert session["operator"] == "dan"


def test_sessions_are_listed_and_logged_out(central: CentralProcess, admin: CentralAdmin) -> None:
    admin.add_operator("sue", "auditor", PASSWORD)
    reset = admin.reset_password("sue")  # a random one, shown once
    assert len(reset["password"]) >= 16 and reset["must_change_password"]
    first, answer = _login(central, "sue", reset["password"])
    body = {"current_password": reset["password"], "new_password": PASSWORD}
    assert _as(first, "POST", central.url + "/admin/password", answer["csrf_token"], json=body).ok
    second, answer2 = _login(central, "sue", PASSWORD)
    mine = _as(second, "GET", central.url + "/admin/sessions", None).json()["sessions"]
    assert len(mine) == 2 and sum(s["current"] for s in mine) == 1
    # The auditor ends its other session, then cannot see or end anyone else's.
    other = next(s for s in mine if not s["current"])
    ended = _as(second, "DELETE", f"{central.url}/admin/sessions/{other['session_id']}",
                answer2["csrf_token"])  # fmt: skip
    assert ended.status_code == 204
    assert _as(first, "GET", central.url + "/admin/whoami", None).status_code == 401
    look = _as(second, "GET", central.url + "/admin/sessions?operator=tests", None)
    assert look.status_code == 403
    # A security officer logs every session of an operator out.
    assert admin.logout_operator("sue") == 1
    assert _as(second, "GET", central.url + "/admin/whoami", None).status_code == 401


def test_nobody_can_disable_or_demote_the_last_security_officer(
    central: CentralProcess, admin: CentralAdmin
) -> None:
    officers = [o for o in admin.operators() if o["role"] == "security_officer" and o["enabled"]]
    assert [o["name"] for o in officers] == ["tests"]
    for attempt in (
        lambda: admin.disable_operator("tests"),
        lambda: admin.set_operator_role("tests", "auditor"),
    ):
        with pytest.raises(LastAdministrator):
            attempt()
    assert admin.whoami()["role"] == "security_officer"
    # With a second one, either may go; then the other is the last again.
    admin.add_operator("sam", "security_officer")
    admin.set_operator_role("sam", "auditor")
    admin.set_operator_role("sam", "security_officer")
    admin.disable_operator("sam")
    with pytest.raises(LastAdministrator):
        admin.disable_operator("tests")
    # A pass-office operator reaching the route is refused before the rule is even asked.
    _ensure(admin, "pia", "pass_office")
    with _token_of(admin, central, "pia") as pia, pytest.raises(Forbidden):
        pia.disable_operator("tests")


# -- task 3: the signed head over HTTP ----------------------------------------------------


def test_an_auditor_fetches_a_signed_head_to_keep(
    central: CentralProcess, admin: CentralAdmin
) -> None:
    admin.add_operator("ann", "auditor")
    with _token_of(admin, central, "ann") as ann:
        head = ann.audit_head()
        verified = ann.verify_audit()
    assert head["site"] == "hq" and head["signature"]
    assert head["seq"] <= verified["head_seq"]
    kept = {e["seq"]: e["hash"] for e in admin.operator_journal(after=head["seq"] - 1, limit=1)}
    assert kept == {head["seq"]: head["hash"]}
    _ensure(admin, "pia", "pass_office")
    with _token_of(admin, central, "pia") as pia, pytest.raises(Forbidden):
        pia.audit_head()
