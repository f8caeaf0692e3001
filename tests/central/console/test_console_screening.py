"""The deny list, approvals and the invitation's PDF in the console, over plain HTTP as a
browser without JavaScript uses them: who may open what, the hold of a deny-listed name made
from the Visitors form, the four-eyes rule, the audit rows, and the PDF's code verifying."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from central.settings import CentralSettings
from central.store import CentralStore
from portier_common.tokens import Keyring, TrustedKey, verify
from tests.support.pdf_kit import pdf_to_image, qr_texts

from .conftest import PASSWORD, ConsoleClient

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def officers(console_central):  # type: ignore[no-untyped-def]
    """A second security officer (four eyes), added as ``operator add`` does."""
    with CentralStore(CentralSettings(data_dir=console_central.data_dir)) as store:
        if "sofia" not in {o["name"] for o in store.list_operators()}:
            store.add_operator("sofia", "security_officer", PASSWORD)
    return console_central


def _form(csrf: str, visitor: str, **more: str) -> dict[str, str]:
    return {
        "csrf": csrf,
        "visitor": visitor,
        "host": "Voltaire",
        "host_email": "",
        "visitor_email": "",
        "not_before": "2026-01-01T08:00",
        "expires": "2036-01-01T18:00",
        "doors": "lobby",
        "zones": "",
        "use": "multiple",
        "lang": "fr",
        **more,
    }


def _row(page: str, invitation_id: str) -> str:
    row = page[page.index(f'id="inv-{invitation_id}"') :]
    return row[: row.index("</tr>")]


def _journal(central, action: str) -> list[dict]:  # type: ignore[no-untyped-def]
    with central.admin() as admin:
        rows = admin.operator_journal()
    return [{**r, "detail": json.loads(r["detail"])} for r in rows if r["action"] == action]


def _pdf(client: ConsoleClient, path: str) -> tuple[int, str, bytes]:
    import urllib.error

    try:
        with client.opener.open(client.base + path, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_the_pass_office_sees_neither_the_list_nor_the_approvals(client: ConsoleClient):
    assert client.login("paul").status == 303
    home = client.request("/console/")
    assert 'href="/console/deny-list"' not in home.text
    assert 'href="/console/approvals"' not in home.text
    assert client.request("/console/deny-list").status == 403
    assert client.request("/console/approvals").status == 403
    csrf = client.cookie("portier_console_csrf") or ""
    add = client.request("/console/deny-list", {"csrf": csrf, "name": "X Y", "reason": "r"})
    assert add.status == 403
    decide = {"csrf": csrf, "decision": "approve", "reason": "mine"}
    assert client.request("/console/approvals/ianything", decide).status == 403


def test_a_deny_listed_visitor_waits_then_is_approved_by_another_officer(
    officers, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    central = officers
    olivia, paul, sofia = (ConsoleClient(central.url) for _ in range(3))
    assert olivia.login("olivia").status == 303
    assert paul.login("paul").status == 303
    assert sofia.login("sofia").status == 303
    o_csrf = olivia.cookie("portier_console_csrf") or ""
    p_csrf = paul.cookie("portier_console_csrf") or ""
    s_csrf = sofia.cookie("portier_console_csrf") or ""
    # The security officer puts a name on the list (a reason is required).
    assert (
        olivia.request("/console/deny-list", {"csrf": o_csrf, "name": "Emilie du Chatelet"}).status
        == 400
    )
    added = olivia.request(
        "/console/deny-list",
        {"csrf": o_csrf, "name": "Emilie du Chatelet", "reason": "trespass, March"},
    )
    assert added.status == 303
    listing = olivia.request(added.headers["Location"])
    assert "Emilie du Chatelet is on the deny list." in listing.text
    assert "trespass, March" in listing.text

    # The Pass Office pre-registers the same person, written otherwise: held.
    made = paul.request("/console/visitors", _form(p_csrf, "DU CHÂTELET Émilie"))
    assert made.status == 303 and "done=pending" in made.headers["Location"]
    page = paul.request(made.headers["Location"])
    assert "awaits a security officer" in page.text
    found = re.search(r'<tr id="inv-([^"]+)">\s*<td>DU CHÂTELET Émilie</td>', page.text)
    assert found is not None
    invitation_id = found.group(1)
    row = _row(page.text, invitation_id)
    assert "status-pending_approval" in row and "/pdf" not in row
    status, _, _ = _pdf(paul, f"/console/visitors/{invitation_id}/pdf")
    assert status == 409

    # The officer who made an invitation herself cannot approve it (four eyes).
    own = olivia.request("/console/visitors", _form(o_csrf, "Chatelet, Emilie du"))
    assert own.status == 303 and "done=pending" in own.headers["Location"]
    approvals = olivia.request("/console/approvals")
    own_row = approvals.text[approvals.text.index("Chatelet, Emilie du") :]
    assert "You created it" in own_row[: own_row.index("</tr>")]
    own_id_match = re.search(
        r'id="pending-([^"]+)"[^>]*>\s*<td>Chatelet, Emilie du', approvals.text
    )
    assert own_id_match is not None
    refused = olivia.request(
        f"/console/approvals/{own_id_match.group(1)}",
        {"csrf": o_csrf, "decision": "approve", "reason": "it is me who asks"},
    )
    assert refused.status == 403 and "another security officer decides" in refused.text

    # Paul's invitation: olivia approves it with a reason.
    assert f'id="pending-{invitation_id}"' in approvals.text
    no_reason = {"csrf": o_csrf, "decision": "approve", "reason": " "}
    assert olivia.request(f"/console/approvals/{invitation_id}", no_reason).status == 400
    approved = olivia.request(
        f"/console/approvals/{invitation_id}",
        {"csrf": o_csrf, "decision": "approve", "reason": "cleared by the director"},
    )
    assert approved.status == 303
    after = olivia.request(approved.headers["Location"])
    assert f'id="pending-{invitation_id}"' not in after.text
    # Sofia refuses olivia's own.
    assert (
        sofia.request(
            f"/console/approvals/{own_id_match.group(1)}",
            {"csrf": s_csrf, "decision": "refuse", "reason": "no reason to come"},
        ).status
        == 303
    )

    page = paul.request("/console/visitors")
    row = _row(page.text, invitation_id)
    assert "status-valid" in row and f"/console/visitors/{invitation_id}/pdf" in row
    assert "status-refused" in _row(page.text, own_id_match.group(1))
    status, content_type, pdf = _pdf(paul, f"/console/visitors/{invitation_id}/pdf")
    assert status == 200 and content_type == "application/pdf"
    (tmp_path / "invitation.pdf").write_bytes(pdf)
    [code] = qr_texts(pdf_to_image(tmp_path / "invitation.pdf", dpi=150))
    with central.admin() as admin:
        ring = Keyring(TrustedKey.from_dict(k) for k in admin.keys()["keys"])
    result = verify(code, ring, now=time.time(), site="hq", door="lobby")
    assert result.ok and result.claims.invitation_id == invitation_id

    decisions = _journal(central, "POST /admin/invitations/{invitation_id}/decision")
    summary = [
        (r["operator"], r["detail"]["id"], r["detail"]["decision"], r["detail"]["via"])
        for r in decisions
    ]
    assert ("olivia", invitation_id, "approve", "console") in summary
    assert ("sofia", own_id_match.group(1), "refuse", "console") in summary
    assert not any(
        r["operator"] == "olivia" and r["detail"]["id"] == own_id_match.group(1) for r in decisions
    )  # the refused attempt changed nothing, wrote nothing
    assert _journal(central, "POST /admin/deny-list")[-1]["detail"]["reason"] == "trespass, March"


def test_resend_from_the_visitors_page_is_audited(client: ConsoleClient, console_central):
    assert client.login("paul").status == 303
    csrf = client.cookie("portier_console_csrf") or ""
    made = client.request(
        "/console/visitors", _form(csrf, "Ada Lovelace", visitor_email="ada@example.com")
    )
    assert made.status == 303
    page = client.request(made.headers["Location"])
    found = re.search(r'<tr id="inv-([^"]+)">\s*<td>Ada Lovelace</td>', page.text)
    assert found is not None
    invitation_id = found.group(1)
    assert f'action="/console/visitors/{invitation_id}/resend"' in _row(page.text, invitation_id)
    resent = client.request(f"/console/visitors/{invitation_id}/resend", {"csrf": csrf})
    assert resent.status == 303
    assert "sent again to ada@example.com" in client.request(resent.headers["Location"]).text
    rows = _journal(console_central, "POST /admin/invitations/{invitation_id}/resend")
    assert [(r["operator"], r["detail"]["id"], r["detail"]["via"]) for r in rows][-1] == (
        "paul",
        invitation_id,
        "console",
    )
    # Without the form's CSRF token: refused, nothing queued.
    assert client.request(f"/console/visitors/{invitation_id}/resend", {"csrf": "x"}).status == 403
