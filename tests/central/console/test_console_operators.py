"""The console's operators page (issue #14), over plain HTTP against a real central of its
own (the last-administrator test disables the harness's own operator for a moment): add with
a password shown once, change a role, disable and enable, reset a password, end sessions, and
the last security officer kept, said in words."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from central.settings import CentralSettings
from central.store import CentralStore

from .conftest import ConsoleClient

pytestmark = pytest.mark.processes


@pytest.fixture
def store(console_central) -> Iterator[CentralStore]:
    with CentralStore(CentralSettings(data_dir=console_central.data_dir)) as opened:
        yield opened


def _post(client: ConsoleClient, path: str, **fields: str) -> Any:
    return client.request(path, {"csrf": client.cookie("portier_console_csrf") or "", **fields})


def _row(page: str, name: str) -> str:
    found = re.search(rf'<tr id="op-{re.escape(name)}">.*?</tr>', page, re.S)
    assert found is not None, name
    return found.group(0)


def test_only_a_security_officer_manages_operators(client: ConsoleClient) -> None:
    for name in ("paul", "ada"):
        other = ConsoleClient(client.base)
        assert other.login(name).status == 303
        assert other.request("/console/operators").status == 403
        assert (
            _post(other, "/console/operators", name="mallory", role="security_officer").status
            == 403
        )
        assert _post(other, "/console/operators/paul/role", role="security_officer").status == 403
    assert client.login("olivia").status == 303
    assert client.request("/console/operators", {"name": "x", "role": "auditor"}).status == 403


def test_add_an_operator_whose_password_is_shown_once(
    client: ConsoleClient, store: CentralStore
) -> None:
    assert client.login("olivia").status == 303
    answer = _post(client, "/console/operators", name="nina", role="auditor")
    assert answer.status == 200 and "nina can log in now." in answer.text
    password = re.search(r'id="new-password">.*?<code>([^<]+)</code>', answer.text, re.S)
    assert password is not None and len(password.group(1)) >= 20
    # Shown once: the list does not show it again.
    assert password.group(1) not in client.request("/console/operators").text
    # She logs in with it and must choose her own first.
    nina = ConsoleClient(client.base)
    assert nina.login("nina", password.group(1)).status == 303
    assert nina.request("/console/").headers["Location"] == "/console/password"
    entry = [e for e in store.operator_journal() if e["action"] == "operator.add"][-1]
    assert entry["operator"] == "olivia" and json.loads(entry["detail"]) == {
        "name": "nina",
        "role": "auditor",
    }
    # Refusals in words: taken, malformed, empty.
    taken = _post(client, "/console/operators", name="nina", role="auditor")
    assert taken.status == 400 and "An operator named nina exists already." in taken.text
    bad = _post(client, "/console/operators", name="Nina Smith", role="auditor")
    assert bad.status == 400 and "A name is 1 to 64 characters" in bad.text
    assert "Give the new operator&#39;s name." not in bad.text
    empty = _post(client, "/console/operators", name="", role="auditor")
    assert empty.status == 400 and "Give the new operator's name." in empty.text
    role = _post(client, "/console/operators", name="norbert", role="king")
    assert role.status == 400 and "Choose one of the roles." in role.text


def test_role_disable_enable_reset_and_sessions(client: ConsoleClient, store: CentralStore) -> None:
    assert client.login("olivia").status == 303
    paul = ConsoleClient(client.base)
    assert paul.login("paul").status == 303
    assert re.search(
        r"<td>[1-9][0-9]*</td>", _row(client.request("/console/operators").text, "paul")
    )
    # A new role applies at once.
    answer = _post(client, "/console/operators/paul/role", role="auditor")
    assert answer.status == 303 and "done=role" in answer.headers["Location"]
    assert paul.request("/console/visitors").status == 403
    _post(client, "/console/operators/paul/role", role="pass_office")
    assert paul.request("/console/visitors").status == 200
    # Ending his sessions logs him out.
    assert _post(client, "/console/operators/paul/logout").status == 303
    assert paul.request("/console/visitors").status == 303  # to the login page
    # Disabled: he cannot log in; enabled again: he can.
    assert _post(client, "/console/operators/paul/disable").status == 303
    assert "disabled" in _row(client.request("/console/operators").text, "paul")
    assert paul.login("paul").status == 401
    assert _post(client, "/console/operators/paul/enable").status == 303
    assert paul.login("paul").status == 303
    # A reset: a new password shown once, his sessions end, he must change it.
    reset = _post(client, "/console/operators/paul/password")
    assert reset.status == 200 and "paul has a new password: their sessions ended." in reset.text
    new = re.search(r"<code>([^<]+)</code>", reset.text)
    assert new is not None
    assert paul.request("/console/visitors").status == 303
    assert paul.login("paul", new.group(1)).status == 303
    assert paul.request("/console/").headers["Location"] == "/console/password"
    actions = [e["action"] for e in store.operator_journal() if e["operator"] == "olivia"]
    for action in (
        "operator.role",
        "operator.logout",
        "operator.disable",
        "operator.enable",
        "operator.password_reset",
    ):
        assert action in actions, action
    assert "scrypt" not in reset.text and "argon2" not in reset.text
    assert _post(client, "/console/operators/nobody/disable").status == 404
    assert _post(client, "/console/operators/paul/fly").status == 404


def test_the_last_security_officer_is_kept_and_the_page_says_why(
    client: ConsoleClient, console_central
) -> None:
    assert client.login("olivia").status == 303
    # The harness's own operator ("tests") is a security officer too: disable it for now.
    assert _post(client, "/console/operators/tests/disable").status == 303
    try:
        for path, fields in (
            ("/console/operators/olivia/disable", {}),
            ("/console/operators/olivia/role", {"role": "auditor"}),
        ):
            answer = _post(client, path, **fields)
            assert answer.status == 409
            assert (
                "olivia is the last enabled security officer: nobody could manage the "
                "operators any more. Make another security officer first." in answer.text
            )
        client.request("/console/lang/fr?next=/console/operators")
        french = _post(client, "/console/operators/olivia/disable")
        assert french.status == 409 and "olivia est le dernier" in french.text
        client.request("/console/lang/en?next=/console/operators")
        assert "enabled" in _row(client.request("/console/operators").text, "olivia")
    finally:
        assert _post(client, "/console/operators/tests/enable").status == 303
