"""The invitation reaches the visitor, and the deny list holds what it should: against a real
central process on loopback, a real SMTP server (aiosmtpd) and poppler reading the PDF back.

- the e-mail to ``visitor_email`` carries the PDF; the PDF drawn to an image gives back a QR
  code whose text verifies, as a door verifies it, as the invitation's token; the inline QR
  image too;
- the PDF download and the resend (audited) of the admin API; a revoked invitation has no PDF
  and no e-mail;
- a name on the deny list, however it is written, makes the invitation wait: no token, no
  delta to the doors, no e-mail, no PDF, until a security officer other than its creator
  approves it (audited with the reason); the Pass Office cannot decide.
"""

from __future__ import annotations

import email.policy
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from PIL import Image

from central.admin import CentralAdmin
from central.errors import Forbidden, NotIssued
from central.testing import CentralProcess, ContractChecker, enroll_device, wait_for
from portier_common.tokens import Keyring, TrustedKey, verify
from tests.central.test_central_notify import free_port
from tests.support.pdf_kit import pdf_to_image, qr_texts

pytestmark = pytest.mark.processes


class Inbox:
    """aiosmtpd handler: keeps every message (parsed with the modern policy)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture(scope="module")
def central(
    smtp: tuple[Inbox, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CentralProcess]:
    _, port = smtp
    process = CentralProcess(
        tmp_path_factory.mktemp("central") / "data",
        extra_args=["--smtp-host", "127.0.0.1", "--smtp-port", str(port),
                    "--smtp-from", "portier@example.com", "--time-zone", "Europe/Brussels",
                    "--notify-retry", "0.2"],
    )  # fmt: skip
    with process:
        yield process


def operator(central: CentralProcess, name: str, role: str) -> CentralAdmin:
    """A client with an API token of a new operator *name* in *role*."""
    with central.admin() as admin:
        admin.add_operator(name, role)
        token = admin.create_token(operator=name, label="tests")["token"]
    return CentralAdmin(central.url, token=token)


def journal(central: CentralProcess, action: str) -> list[dict[str, Any]]:
    """The audit rows of *action*, their detail read."""
    with central.admin() as admin:
        rows = admin.operator_journal()
    return [{**r, "detail": json.loads(r["detail"])} for r in rows if r["action"] == action]


def keyring(admin: CentralAdmin) -> Keyring:
    return Keyring(TrustedKey.from_dict(key) for key in admin.keys()["keys"])


def to(inbox: Inbox, address: str) -> list[Any]:
    return [m for m in inbox.messages if m["To"] == address]


def pdf_of(message: Any) -> bytes:
    parts = [p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert len(parts) == 1
    return bytes(parts[0].get_content())


def codes_in_pdf(pdf: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / f"invitation-{time.monotonic_ns()}.pdf"
    path.write_bytes(pdf)
    return qr_texts(pdf_to_image(path, dpi=150))


def at_door(token: str, ring: Keyring, door: str = "lobby") -> Any:
    return verify(token, ring, now=time.time(), site="hq", door=door)


def test_the_visitor_gets_the_pdf_by_mail_and_its_qr_verifies_at_the_door(
    central: CentralProcess, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    inbox, _ = smtp
    with central.admin() as admin:
        made = admin.create_invitation(
            visitor="Marie Curie",
            host="Pierre Curie",
            visitor_email="marie@example.fr",
            lang="fr",
            doors=["lobby"],
        )
        ring = keyring(admin)
    assert made["invitation"]["visitor_email"] == "marie@example.fr"
    assert wait_for(lambda: to(inbox, "marie@example.fr"), 20)
    message = to(inbox, "marie@example.fr")[0]
    assert message["From"] == "portier@example.com"
    assert str(make_header(decode_header(message["Subject"]))).startswith("Votre invitation à hq")
    text = message.get_body(("plain",)).get_content()
    assert "Bonjour Marie Curie," in text and "caméra de la borne" in text
    # The PDF, printed to an image: its QR code is the token, and it opens the lobby.
    codes = codes_in_pdf(pdf_of(message), tmp_path)
    assert codes == [made["token"]]
    result = at_door(codes[0], ring)
    assert result.ok and result.claims.invitation_id == made["invitation"]["id"]
    assert not at_door(codes[0], ring, door="garage").ok  # only the doors it names
    # The HTML part shows the same code inline (cid:, no remote image).
    html = message.get_body(("html",))
    assert "cid:" in html.get_content() and "http" not in html.get_content().split("cid:")[0]
    images = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 1 and images[0]["Content-ID"].strip("<>") in html.get_content()
    with Image.open(io.BytesIO(images[0].get_content())) as inline:
        assert qr_texts(inline.convert("RGB")) == [made["token"]]


def test_pdf_download_resend_audited_and_revoked_has_none(
    central: CentralProcess, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    inbox, _ = smtp
    desk = operator(central, "paula", "pass_office")
    with desk:
        made = desk.create_invitation(
            visitor="Ada Lovelace", visitor_email="ada@example.com", doors=["lobby"]
        )
        invitation_id = made["invitation"]["id"]
        pdf = desk.invitation_pdf(invitation_id)
        assert pdf.startswith(b"%PDF-")
        assert codes_in_pdf(pdf, tmp_path) == [made["token"]]
        assert wait_for(lambda: len(to(inbox, "ada@example.com")) == 1, 20)
        assert desk.resend_invitation(invitation_id) == {
            "id": invitation_id,
            "visitor_email": "ada@example.com",
        }
        assert wait_for(lambda: len(to(inbox, "ada@example.com")) == 2, 20)
        first, second = to(inbox, "ada@example.com")
        assert first["Message-ID"] != second["Message-ID"]  # a resend is another message
        desk.revoke_invitation(invitation_id)
        with pytest.raises(NotIssued, match="revoked"):
            desk.invitation_pdf(invitation_id)
        with pytest.raises(NotIssued):
            desk.resend_invitation(invitation_id)
    rows = journal(central, "POST /admin/invitations/{invitation_id}/resend")
    # The resend, and the refused one after the revocation, each with who and the outcome.
    assert [(r["operator"], r["detail"]["invitation_id"], r["status"]) for r in rows] == [
        ("paula", invitation_id, 202),
        ("paula", invitation_id, 409),
    ]
    # Without a session or token: nothing.
    answer = requests.get(f"{central.url}/admin/invitations/{invitation_id}/pdf", timeout=10)
    assert answer.status_code == 401


def test_a_deny_listed_name_waits_for_another_security_officer(
    central: CentralProcess, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    inbox, _ = smtp
    _, door = enroll_device(central.url, door="lobby", token=central.token)
    start = door.get(f"{central.url}/v1/deltas", timeout=10).json()["cursor"]
    with central.admin() as admin:
        entry = admin.add_deny_entry("Emilie du Chatelet", "trespass, 2026-03")
        ring = keyring(admin)
    desk = operator(central, "pauline", "pass_office")
    officer = operator(central, "sam", "security_officer")
    with desk, officer:
        held = desk.create_invitation(
            visitor="DU CHÂTELET   Émilie",
            visitor_email="emilie@example.fr",
            doors=["lobby"],
            lang="fr",
        )
        invitation_id = held["invitation"]["id"]
        contract = ContractChecker()
        contract.validate(held, "InvitationCreated")
        contract.validate(entry, "DenyEntry")
        # No token exists: nothing the visitor or the desk could show at a door.
        assert held["token"] is None and held["invitation"]["approval"] == "pending"
        with pytest.raises(NotIssued, match="awaits approval"):
            desk.invitation_pdf(invitation_id)
        with pytest.raises(NotIssued):
            desk.resend_invitation(invitation_id)
        # The Pass Office can neither see the list nor decide.
        with pytest.raises(Forbidden):
            desk.decide_invitation(invitation_id, "approve", "I know her")
        with pytest.raises(Forbidden):
            desk.deny_list()
        pending = officer.approvals()
        contract.check_response("GET", "/admin/approvals", 200, {"invitations": pending})
        assert [(p["id"], p["entry_name"], p["requested_by"]) for p in pending] == [
            (invitation_id, "Emilie du Chatelet", "pauline")
        ]
        delta = door.get(f"{central.url}/v1/deltas", params={"since": start}, timeout=10).json()
        assert invitation_id not in {i["id"] for i in delta["invitations"]}
        assert not wait_for(lambda: to(inbox, "emilie@example.fr"), 1.5)

        answer = officer.decide_invitation(invitation_id, "approve", "cleared by the director")
        assert answer["decision"] == "approve"
    assert officer.approvals() == []
    delta = door.get(f"{central.url}/v1/deltas", params={"since": start}, timeout=10).json()
    assert invitation_id in {i["id"] for i in delta["invitations"]}
    assert wait_for(lambda: to(inbox, "emilie@example.fr"), 20)
    codes = codes_in_pdf(pdf_of(to(inbox, "emilie@example.fr")[0]), tmp_path)
    assert at_door(codes[0], ring).ok
    # The command line says so too: exit 4, no token printed.
    held_cli = subprocess.run(
        [sys.executable, "-m", "central", "invite", "create", "--url", central.url,
         "--token", central.token or "", "--visitor", "Émilie du CHÂTELET", "--door", "lobby"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert held_cli.returncode == 4 and held_cli.stdout == ""
    assert "awaits a security officer's approval" in held_cli.stderr
    with central.admin() as admin:
        removed = admin.remove_deny_entry(entry["id"], "order lifted")
        assert admin.deny_list() == []
    rows = journal(central, "POST /admin/invitations/{invitation_id}/decision")
    added = journal(central, "POST /admin/deny-list")
    removal = journal(central, "POST /admin/deny-list/{entry_id}/remove")
    decided = [r for r in rows if r["status"] == 200]
    assert [(r["operator"], r["detail"]["decision"], r["detail"]["reason"]) for r in decided] == [
        ("sam", "approve", "cleared by the director")
    ]
    # The Pass Office's attempt is journaled too, refused.
    assert [(r["operator"], r["status"]) for r in rows if r["status"] != 200] == [("pauline", 403)]
    assert added[0]["detail"]["name"] == "Emilie du Chatelet"
    assert removed["reason"] == "order lifted"
    assert removal[0]["detail"]["reason"] == "order lifted"
