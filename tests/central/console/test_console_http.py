"""The console over plain HTTP, as a browser without JavaScript uses it: login, the CSRF
token every form needs, the Origin check, pages hidden by role, changes in the audit log."""

from __future__ import annotations

import json
import re

import pytest

from central.settings import CentralSettings
from central.store import CentralStore

from .conftest import PASSWORD, ConsoleClient

pytestmark = pytest.mark.processes


def _visitor_form(csrf: str, **changes: str) -> dict[str, str]:
    form = {
        "csrf": csrf,
        "visitor": "Grace Hopper",
        "host": "Alan",
        "host_email": "alan@example.com",
        "not_before": "2026-01-01T08:00",
        "expires": "2036-01-01T18:00",
        "doors": "front, lab",
        "zones": "",
        "use": "multiple",
        "lang": "en",
    }
    return {**form, **changes}


def test_pages_need_a_login(client: ConsoleClient):
    answer = client.request("/console/visitors")
    assert answer.status == 303
    assert answer.headers["Location"] == "/console/login?next=/console/visitors"


def test_login_page_is_self_contained_and_strict(client: ConsoleClient):
    answer = client.request("/console/login")
    assert answer.status == 200
    csp = answer.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "http" not in re.sub(r'https?://127\.0\.0\.1[^"]*', "", answer.text)  # no CDN
    css = re.search(r'href="(/console/static/console\.css[^"]*)"', answer.text)
    assert css is not None
    assert client.request(css.group(1)).status == 200


def test_wrong_password_shows_an_error(client: ConsoleClient):
    answer = client.login("olivia", "not the password")
    assert answer.status == 401
    assert "Wrong name or password." in answer.text
    assert client.cookie("portier_console") is None


def test_login_without_its_form_token_is_refused(client: ConsoleClient):
    answer = client.request("/console/login", {"name": "olivia", "password": PASSWORD})
    assert answer.status == 403
    assert client.cookie("portier_console") is None


def test_a_post_without_the_csrf_token_is_refused(client: ConsoleClient, console_central):
    assert client.login("paul").status == 303
    answer = client.request("/console/visitors", _visitor_form(csrf=""))
    assert answer.status == 403
    assert "did not come from the console" in answer.text
    answer = client.request("/console/visitors", _visitor_form(csrf="forged"))
    assert answer.status == 403
    with console_central.admin() as admin:
        entries = admin.operator_journal()
    assert not any("Grace Hopper" in str(e) for e in entries)


def test_a_cross_site_post_is_refused(client: ConsoleClient):
    assert client.login("paul").status == 303
    csrf = client.cookie("portier_console_csrf") or ""
    answer = client.request(
        "/console/visitors", _visitor_form(csrf), headers={"Origin": "http://evil.example"}
    )
    assert answer.status == 403
    assert "Cross-site request refused." in answer.text


def test_pre_register_list_revoke_and_the_audit_log(client: ConsoleClient, console_central):
    assert client.login("paul").status == 303
    csrf = client.cookie("portier_console_csrf") or ""
    answer = client.request("/console/visitors", _visitor_form(csrf, visitor="Ada Byron"))
    assert answer.status == 303
    page = client.request(answer.headers["Location"])
    assert "Invitation created for Ada Byron." in page.text
    found = re.search(r'<tr id="inv-([^"]+)">\s*<td>Ada Byron</td>', page.text)
    assert found is not None
    invitation_id = found.group(1)
    # A revocation needs a reason.
    refused = client.request(f"/console/visitors/{invitation_id}/revoke", {"csrf": csrf})
    assert refused.status == 400
    answer = client.request(
        f"/console/visitors/{invitation_id}/revoke", {"csrf": csrf, "reason": "meeting moved"}
    )
    assert answer.status == 303
    page = client.request(answer.headers["Location"])
    row = page.text[page.text.index(f'id="inv-{invitation_id}"') :]
    assert "status-revoked" in row[: row.index("</tr>")]
    with console_central.admin() as admin:
        entries = admin.operator_journal()
    details = [(e, json.loads(e["detail"] or "{}")) for e in entries]
    actions = {
        (e["operator"], e["action"], detail.get("id"), detail.get("reason"))
        for e, detail in details
    }
    assert ("paul", "POST /admin/invitations", invitation_id, None) in actions
    assert (
        "paul",
        "POST /admin/invitations/{invitation_id}/revoke",
        invitation_id,
        "meeting moved",
    ) in actions


def test_form_errors_are_shown_in_the_page_language(client: ConsoleClient):
    assert client.login("paul").status == 303
    client.request("/console/lang/fr?next=/console/visitors")
    csrf = client.cookie("portier_console_csrf") or ""
    answer = client.request(
        "/console/visitors", _visitor_form(csrf, visitor="", doors="", expires="2020-01-01T00:00")
    )
    assert answer.status == 400
    assert '<html lang="fr">' in answer.text
    assert "Indiquez le nom du visiteur." in answer.text
    assert "La fin de la validité doit venir après son début." in answer.text
    assert "Indiquez au moins une porte ou une zone." in answer.text


def test_pages_are_hidden_by_role(client: ConsoleClient):
    assert client.login("ada").status == 303  # an auditor: no invitations
    home = client.request("/console/")
    assert home.status == 200
    assert "Auditor" in home.text and 'href="/console/visitors"' not in home.text
    assert client.request("/console/visitors").status == 403
    csrf = client.cookie("portier_console_csrf") or ""
    assert client.request("/console/visitors", _visitor_form(csrf)).status == 403


def test_logout_ends_the_session(client: ConsoleClient):
    assert client.login("olivia").status == 303
    session = client.cookie("portier_console")
    csrf = client.cookie("portier_console_csrf") or ""
    assert client.request("/console/logout", {"csrf": csrf}).status == 303
    assert client.cookie("portier_console") is None
    assert session
    probe = ConsoleClient(client.base)
    probe.opener.addheaders = [("Cookie", f"portier_console={session}")]
    assert probe.request("/console/").status == 303  # the old session no longer works


def test_repeated_failures_lock_the_account_and_say_so(client: ConsoleClient):
    for _ in range(5):
        assert client.login("lou", "wrong password!").status == 401
    answer = client.login("lou")  # the right password, too late
    assert answer.status == 401
    assert "this account is locked for a while" in answer.text


def test_the_language_switch_stays_on_the_console(client: ConsoleClient):
    answer = client.request("/console/lang/fr?next=https://evil.example/")
    assert answer.status == 303 and answer.headers["Location"] == "/console/"
    assert client.cookie("portier_lang") == "fr"
    answer = client.request("/console/lang/fr?next=//evil.example/console/")
    assert answer.headers["Location"] == "/console/"
    page = client.request("/console/login")
    assert '<html lang="fr">' in page.text and "Se connecter" in page.text


def test_a_password_set_by_an_officer_must_be_changed_before_anything_else(
    client: ConsoleClient, console_central
):
    # The admin API refuses such an operator everything but the password change
    # (password_change); the console must not be a way around it.
    with console_central.admin() as admin:
        admin.add_operator("nina", "pass_office", PASSWORD)
    assert client.login("nina").status == 303
    csrf = client.cookie("portier_console_csrf") or ""
    for path in ("/console/", "/console/visitors"):
        answer = client.request(path)
        assert answer.status == 303 and answer.headers["Location"] == "/console/password"
    answer = client.request("/console/visitors", _visitor_form(csrf, visitor="Not Yet"))
    assert answer.status == 303 and answer.headers["Location"] == "/console/password"
    page = client.request("/console/password")
    assert page.status == 200 and "choose your own before going on" in page.text
    new = "a passphrase of my own"
    mismatch = {"csrf": csrf, "current": PASSWORD, "new": new, "confirm": new + "!"}
    assert client.request("/console/password", mismatch).status == 400
    wrong = {"csrf": csrf, "current": "not my password", "new": new, "confirm": new}
    assert "The current password is wrong." in client.request("/console/password", wrong).text
    no_csrf = {"current": PASSWORD, "new": new, "confirm": new}
    assert client.request("/console/password", no_csrf).status == 403
    good = {"csrf": csrf, "current": PASSWORD, "new": new, "confirm": new}
    answer = client.request("/console/password", good)
    assert answer.status == 303 and answer.headers["Location"] == "/console/?done=password"
    assert "Your password is changed." in client.request(answer.headers["Location"]).text
    assert client.request("/console/visitors").status == 200
    with console_central.admin() as admin:
        actions = [e["action"] for e in admin.operator_journal() if e["operator"] == "nina"]
    assert "operator.password_change" in actions
    with CentralStore(CentralSettings(data_dir=console_central.data_dir)) as store:
        assert all(i["visitor"] != "Not Yet" for i in store.list_invitations())


def test_a_console_change_does_not_happen_without_its_audit_row(
    client: ConsoleClient, console_central
):
    from tests.central.test_central_operators import audit_appends_fail

    assert client.login("paul").status == 303
    csrf = client.cookie("portier_console_csrf") or ""
    with audit_appends_fail(console_central):
        answer = client.request("/console/visitors", _visitor_form(csrf, visitor="Eve Unrecorded"))
    assert answer.status == 500
    with CentralStore(CentralSettings(data_dir=console_central.data_dir)) as store:
        assert all(i["visitor"] != "Eve Unrecorded" for i in store.list_invitations())
