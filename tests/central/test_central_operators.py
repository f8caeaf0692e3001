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
