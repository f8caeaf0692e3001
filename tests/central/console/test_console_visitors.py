"""The Visitors page's recurring visitors, groups, extensions and CSV import over plain
HTTP (a real central): what is made, the audit rows, the preview's line errors, and the
import draft's binding to its session (replayed, another session's, tampered)."""

from __future__ import annotations

import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request

import pytest

from central.errors import BadRequest
from central.settings import CentralSettings
from central.store import CentralStore
from central.testing import ContractChecker, enroll_device

from .conftest import Answer, ConsoleClient

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module", autouse=True)
def _doors(console_central) -> None:  # type: ignore[no-untyped-def]
    """The site's doors: front (zone hall) and lab, enrolled devices."""
    enroll_device(console_central.url, door="front", device_id="vis-front", zones=["hall"])
    enroll_device(console_central.url, door="lab", device_id="vis-lab")


def _post(client: ConsoleClient, path: str, fields: list[tuple[str, str]]) -> Answer:
    """A form with repeated fields (the week's days)."""
    data = urllib.parse.urlencode(fields).encode()
    return _send(client, urllib.request.Request(client.base + path, data=data))


def _upload(
    client: ConsoleClient, csrf: str, label: str, content: bytes, name: str = "guests.csv"
) -> Answer:
    boundary = "----portier" + secrets.token_hex(8)
    parts = []
    for key, value in (("csrf", csrf), ("label", label)):
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        client.base + "/console/visitors/import",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    return _send(client, request)


def _send(client: ConsoleClient, request: urllib.request.Request) -> Answer:
    try:
        with client.opener.open(request, timeout=20) as response:
            return Answer(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read().decode())


def _logged_in(client: ConsoleClient, name: str = "paul") -> str:
    assert client.login(name).status == 303
    return client.cookie("portier_console_csrf") or ""


def _store(central) -> CentralStore:  # type: ignore[no-untyped-def]
    return CentralStore(CentralSettings(data_dir=central.data_dir))


def _journal(central, action: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """The audit rows of *action*, their detail read."""
    with central.admin() as admin:
        entries = admin.operator_journal()
    return [
        {**e, "detail": json.loads(e["detail"] or "{}")} for e in entries if e["action"] == action
    ]


def test_a_recurring_visitor(client: ConsoleClient, console_central):
    csrf = _logged_in(client)
    form = [
        ("csrf", csrf),
        ("visitor", "Carl Contractor"),
        ("label", "Boiler works"),
        ("host", "Facilities"),
        ("first_day", "2036-03-03"),  # a Monday
        ("last_day", "2036-03-21"),
        *[("days", d) for d in ("mon", "tue", "wed", "thu", "fri")],
        ("start", "08:00"),
        ("end", "17:00"),
        ("zones", "hall"),
        ("use", "multiple"),
        ("lang", "en"),
    ]
    answer = _post(client, "/console/visitors/recurring", form)
    assert answer.status == 303, answer.text
    assert "done=group" in answer.headers["Location"]
    page = client.request(answer.headers["Location"])
    assert "15 invitations created: Boiler works." in page.text
    assert "Recurring: Boiler works" in page.text
    with _store(console_central) as store:
        made = [i for i in store.list_invitations() if i["visitor"] == "Carl Contractor"]
    assert len(made) == 15 and {i["group"]["kind"] for i in made} == {"recurring"}
    [entry] = _journal(console_central, "POST /admin/invitations/recurring")
    assert entry["detail"]["via"] == "console" and entry["operator"] == "paul"
    assert sorted(entry["detail"]["invitations"]) == sorted(i["id"] for i in made)

    # Refusals, shown on the form with what was typed, in the operator's language.
    no_day = [(k, v) for k, v in form if k != "days"]
    answer = _post(client, "/console/visitors/recurring", no_day)
    assert answer.status == 400
    assert "None of the days chosen falls between the first and last." in answer.text
    assert 'value="Carl Contractor"' in answer.text
    late = [(k, "07:00" if k == "end" else v) for k, v in form]
    client.request("/console/lang/fr?next=/console/")
    answer = _post(client, "/console/visitors/recurring", late)
    assert answer.status == 400
    assert "Les heures doivent finir après leur début, le même jour." in answer.text
    long = [(k, "2036-12-31" if k == "last_day" else v) for k, v in form]
    answer = _post(client, "/console/visitors/recurring", long)
    assert answer.status == 400 and "92" in answer.text


def test_a_group_of_visitors(client: ConsoleClient, console_central):
    csrf = _logged_in(client)
    form = {
        "csrf": csrf,
        "label": "Auditors from Lyon",
        "names": "Ada Lovelace\n  Bob  Marley \n\nCy Young\n",
        "not_before": "2036-05-04T09:00",
        "expires": "2036-05-04T18:00",
        "host": "Finance",
        "doors": "front",
        "use": "single",
        "lang": "fr",
    }
    answer = client.request("/console/visitors/group", form)
    assert answer.status == 303, answer.text
    page = client.request(answer.headers["Location"])
    assert "3 invitations created: Auditors from Lyon." in page.text
    assert "Group: Auditors from Lyon" in page.text
    with _store(console_central) as store:
        made = [
            i
            for i in store.list_invitations()
            if i["group"] and i["group"]["label"] == "Auditors from Lyon"
        ]
    assert sorted(i["visitor"] for i in made) == ["Ada Lovelace", "Bob Marley", "Cy Young"]
    assert {(i["single_use"], i["lang"], tuple(i["doors"])) for i in made} == {
        (True, "fr", ("front",))
    }
    [entry] = _journal(console_central, "POST /admin/invitations/batch")
    assert entry["detail"]["kind"] == "group" and len(entry["detail"]["invitations"]) == 3

    answer = client.request("/console/visitors/group", {**form, "names": "  \n", "label": ""})
    assert answer.status == 400
    assert "Give the group a name." in answer.text
    assert "Give the visitors' names, one a line." in answer.text
    # A name the store refuses: nothing of the group is made.
    answer = client.request(
        "/console/visitors/group", {**form, "label": "Bad", "names": "Ok Name\n" + "x" * 300}
    )
    assert answer.status == 400
    assert "Line 2: Check the visitor's name: it must be 1 to 128 characters." in answer.text
    with _store(console_central) as store:
        assert not [i for i in store.list_invitations() if i["visitor"] == "Ok Name"]


def test_extending_an_invitation(client: ConsoleClient, console_central):
    csrf = _logged_in(client)
    with _store(console_central) as store:
        old = store.create_invitation(
            {
                "visitor": "Dora Extended",
                "doors": ["lab"],
                "not_before": store.now_ms() // 1000 - 60,
                "expires": store.now_ms() // 1000 + 3600,
            }
        )["invitation"]
    page = client.request("/console/visitors")
    assert f'action="/console/visitors/{old["id"]}/extend"' in page.text
    answer = client.request(
        f"/console/visitors/{old['id']}/extend", {"csrf": "", "expires": "2036-01-01T18:00"}
    )
    assert answer.status == 403
    answer = client.request(
        f"/console/visitors/{old['id']}/extend", {"csrf": csrf, "expires": "2036-01-01T18:00"}
    )
    assert answer.status == 303
    page = client.request(answer.headers["Location"])
    assert "The invitation of Dora Extended now ends 2036-01-01 18:00" in page.text
    with _store(console_central) as store:
        rows = {i["id"]: i for i in store.list_invitations() if i["visitor"] == "Dora Extended"}
    assert rows[old["id"]]["status"] == "replaced"
    new_id = rows[old["id"]]["replaced_by"]
    assert rows[new_id]["status"] == "valid"
    row = re.search(rf'<tr id="inv-{old["id"]}".*?</tr>', page.text, re.S)
    assert row is not None and "Replaced (extended)" in row.group(0)
    assert "/extend" not in row.group(0)  # a replaced invitation is not extended again
    [entry] = _journal(console_central, "POST /admin/invitations/{invitation_id}/extend")
    assert entry["detail"] == {
        **entry["detail"],
        "invitation_id": old["id"],
        "id": new_id,
        "replaced": old["id"],
        "via": "console",
    }
    answer = client.request(
        f"/console/visitors/{new_id}/extend", {"csrf": csrf, "expires": "2030-01-01T18:00"}
    )
    assert answer.status == 400 and "after the current end" in answer.text
    answer = client.request(
        f"/console/visitors/{new_id}/extend", {"csrf": csrf, "expires": "tomorrow"}
    )
    assert answer.status == 400 and "Give the new end as a date and a time." in answer.text
    answer = client.request(
        "/console/visitors/i-nobody/extend", {"csrf": csrf, "expires": "2037-01-01T18:00"}
    )
    assert answer.status == 404


GOOD = (
    "\ufeffVisiteur;Hôte;Début;Fin;Portes;Zones;Usage\n"
    "Émile Zola;Hélène;05/12/2036 08:00;05/12/2036 18:00;front;;unique\n"
    "George Sand;Hélène;2036-12-05 09:00;2036-12-05 12:00;front lab;;\n"
    "Victor Hugo;;05/12/2036 08:00;06/12/2036 08:00;;hall;multiple\n"
)
BAD = (
    "visitor,from,until,doors\n"
    "Ada,2036-12-05 08:00,2036-12-05 18:00,front\n"
    ",2036-12-05 08:00,2036-12-05 18:00,front\n"
    "Bob,32/12/2036 08:00,2036-12-05 18:00,front\n"
    "Cy,2036-12-05 08:00,2036-12-05 18:00,garage\n"
)


def test_csv_import_preview_shows_line_errors_and_makes_nothing(
    client: ConsoleClient, console_central
):
    csrf = _logged_in(client)
    answer = _upload(client, csrf, "Open day", BAD.encode())
    assert answer.status == 400
    text = answer.text
    assert "3 of 4 lines have errors" in text
    assert re.search(r'id="line-3".*?The visitor.s name is missing', text, re.S)
    assert re.search(r'id="line-4".*?“32/12/2036 08:00” in “from” is not a date', text, re.S)
    assert re.search(r'id="line-5".*?Unknown door “garage”\.', text, re.S)
    line2 = re.search(r'<tr id="line-2".*?</tr>', text, re.S)
    assert line2 is not None and "Ready" in line2.group(0)
    assert 'id="confirm"' not in text  # nothing to confirm while a line is wrong
    with _store(console_central) as store:
        assert not [i for i in store.list_invitations() if i["visitor"] == "Ada"]
        assert store._conn.execute("SELECT COUNT(*) FROM import_drafts").fetchone()[0] == 0

    # The file's own errors: not UTF-8, a column missing, an unknown one, too big.
    answer = _upload(client, csrf, "Open day", GOOD.replace("\ufeff", "").encode("latin-1"))
    assert answer.status == 400 and "The file is not UTF-8 text" in answer.text
    answer = _upload(client, csrf, "Open day", b"visitor;doors;colour\nAda;front;red\n")
    assert answer.status == 400
    assert "Column “from” is missing." in answer.text
    assert "Unknown column “colour”." in answer.text
    answer = _upload(client, csrf, "Open day", b"visitor;from\n" + b"x" * 300_000)
    assert answer.status == 400 and "larger than 256 KB" in answer.text
    answer = _upload(client, csrf, "", GOOD.encode())
    assert answer.status == 400 and "Give the event's name." in answer.text
    # In French.
    client.request("/console/lang/fr?next=/console/")
    answer = _upload(client, csrf, "Portes ouvertes", BAD.encode())
    assert "Porte inconnue « garage »." in answer.text


def test_csv_import_confirm_makes_all_in_one_transaction(client: ConsoleClient, console_central):
    csrf = _logged_in(client)
    answer = _upload(client, csrf, "Gala", GOOD.encode())
    assert answer.status == 200, answer.text
    assert "3 invitations are ready." in answer.text
    assert "2036-12-05 08:00" in answer.text  # as it will be made, site time
    draft = re.search(r'name="draft" value="([^"]+)"', answer.text)
    digest = re.search(r'name="sha256" value="([0-9a-f]{64})"', answer.text)
    assert draft is not None and digest is not None
    form = {"csrf": csrf, "draft": draft.group(1), "sha256": digest.group(1)}

    # The draft is this session's: another operator's session cannot confirm it.
    other = ConsoleClient(client.base)
    other_csrf = _logged_in(other, "olivia")
    answer = other.request("/console/visitors/import/confirm", {**form, "csrf": other_csrf})
    assert answer.status == 400 and "no longer waiting" in answer.text
    # Not another digest than the one previewed, nor without the CSRF token.
    answer = client.request("/console/visitors/import/confirm", {**form, "sha256": "0" * 64})
    assert answer.status == 400
    assert client.request("/console/visitors/import/confirm", {**form, "csrf": ""}).status == 403
    with _store(console_central) as store:
        assert not [i for i in store.list_invitations() if i["visitor"] == "Émile Zola"]

    answer = client.request("/console/visitors/import/confirm", form)
    assert answer.status == 303, answer.text
    page = client.request(answer.headers["Location"])
    assert "3 invitations imported: Gala." in page.text
    assert "CSV import: Gala" in page.text
    with _store(console_central) as store:
        made = {
            i["visitor"]: i
            for i in store.list_invitations()
            if i["group"] and i["group"]["label"] == "Gala"
        }
        assert store._conn.execute("SELECT COUNT(*) FROM import_drafts").fetchone()[0] == 0
    assert set(made) == {"Émile Zola", "George Sand", "Victor Hugo"}
    assert made["Émile Zola"]["single_use"] and not made["Victor Hugo"]["single_use"]
    assert made["George Sand"]["doors"] == ["front", "lab"]
    assert made["Victor Hugo"]["zones"] == ["hall"]
    entries = [
        e
        for e in _journal(console_central, "POST /admin/invitations/batch")
        if e["detail"].get("source") == "csv"
    ]
    [entry] = entries
    assert entry["detail"]["sha256"] == digest.group(1) and entry["operator"] == "paul"
    assert sorted(entry["detail"]["invitations"]) == sorted(i["id"] for i in made.values())
    # Replayed: the draft went with the import.
    answer = client.request("/console/visitors/import/confirm", form)
    assert answer.status == 400 and "no longer waiting" in answer.text


def test_an_import_without_its_audit_row_makes_nothing(client: ConsoleClient, console_central):
    from tests.central.test_central_operators import audit_appends_fail

    csrf = _logged_in(client)
    content = GOOD.replace("Émile Zola", "Unrecorded One").encode()
    answer = _upload(client, csrf, "Unrecorded", content)
    draft = re.search(r'name="draft" value="([^"]+)"', answer.text)
    digest = re.search(r'name="sha256" value="([0-9a-f]{64})"', answer.text)
    assert draft is not None and digest is not None
    form = {"csrf": csrf, "draft": draft.group(1), "sha256": digest.group(1)}
    with audit_appends_fail(console_central):
        assert client.request("/console/visitors/import/confirm", form).status == 500
    with _store(console_central) as store:
        assert not [i for i in store.list_invitations() if i["visitor"] == "Unrecorded One"]
    # The draft is still there: the import can be confirmed once the log works again.
    assert client.request("/console/visitors/import/confirm", form).status == 303


def test_an_auditor_may_not_invite(client: ConsoleClient):
    csrf = _logged_in(client, "ada")
    for page in ("recurring", "group", "import"):
        path = f"/console/visitors/{page}"
        assert client.request(path).status == 403
    answer = client.request("/console/visitors/import/confirm", {"csrf": csrf, "draft": "x"})
    assert answer.status == 403


def test_the_admin_routes(console_central):
    with console_central.admin() as admin:
        made = admin.create_invitation_group(
            "API group",
            [
                {"visitor": "Api One", "doors": ["front"]},
                {"visitor": "Api Two", "doors": ["front"]},
            ],
        )
        assert [m["invitation"]["visitor"] for m in made["invitations"]] == ["Api One", "Api Two"]
        days = admin.create_recurring_invitations(
            visitor="Api Daily",
            doors=["lab"],
            first_day="2036-06-02",
            last_day="2036-06-04",
            days=["mon", "tue", "wed"],
            start="09:00",
            end="10:00",
        )
        assert len(days["invitations"]) == 3
        first = days["invitations"][0]["invitation"]
        extended = admin.extend_invitation(first["id"], first["expires"] + 3600)
        assert extended["replaced"] == first["id"] and extended["token"].startswith("PT1:")
        with pytest.raises(BadRequest):
            admin.extend_invitation(first["id"], 1)
    # The answers are those docs/central-api.yaml describes.
    contract = ContractChecker()
    contract.check_response("POST", "/admin/invitations/batch", 201, made)
    contract.check_response("POST", "/admin/invitations/recurring", 201, days)
    contract.check_response("POST", "/admin/invitations/{invitation_id}/extend", 201, extended)
    with console_central.admin() as admin:
        journal = admin.operator_journal()
    details = [(e["action"], json.loads(e["detail"] or "{}")) for e in journal]
    assert any(
        action == "POST /admin/invitations/recurring" and d.get("kind") == "recurring"
        for action, d in details
    )
    assert any(
        action == "POST /admin/invitations/{invitation_id}/extend"
        and d.get("replaced") == first["id"]
        and d.get("id") == extended["id"]
        for action, d in details
    )


def _no_english(text: str) -> None:
    """None of the store's English details (or the old English-after-French prefix)."""
    for english in ("must be", "The central refused", "Check ", "got '", "characters"):
        assert english not in text, english


def test_the_stores_refusals_come_out_in_french(client: ConsoleClient, console_central):
    """Refusals of the store itself (not the form's own checks), through the forms, in
    French: the sentence and the field's name in words, no English detail."""
    csrf = _logged_in(client)
    client.request("/console/lang/fr?next=/console/visitors")
    single = {
        "csrf": csrf,
        "visitor": "Grace Refused",
        "host": "Alan",
        "host_email": "alan-at-example",
        "not_before": "2036-01-01T08:00",
        "expires": "2036-01-01T18:00",
        "doors": "front",
        "zones": "",
        "use": "multiple",
        "lang": "fr",
    }
    answer = client.request("/console/visitors", single)
    assert answer.status == 400 and '<html lang="fr">' in answer.text
    assert (
        "Vérifiez l’e-mail de l’hôte : ce doit être une adresse e-mail comme hote@example.com."
        in answer.text
    )
    _no_english(answer.text)
    # A group: the line, and the visitor's name in words.
    group = {
        "csrf": csrf,
        "label": "Refused group",
        "names": "Ok Name\n" + "y" * 300,
        "not_before": "2036-05-04T09:00",
        "expires": "2036-05-04T18:00",
        "host": "Finance",
        "doors": "front",
        "use": "single",
        "lang": "fr",
    }
    answer = client.request("/console/visitors/group", group)
    assert answer.status == 400
    assert "Ligne 2 : Vérifiez le nom du visiteur : de 1 à 128 caractères." in answer.text
    _no_english(answer.text)
    # An extension to an earlier end.
    with _store(console_central) as store:
        made = store.create_invitation(
            {"visitor": "Felix Shorter", "doors": ["lab"], "expires": 2_000_000_000}
        )["invitation"]
    answer = client.request(
        f"/console/visitors/{made['id']}/extend", {"csrf": csrf, "expires": "2030-01-01T18:00"}
    )
    assert answer.status == 400
    assert (
        "Vérifiez la fin : la nouvelle fin doit être après la fin actuelle et après maintenant."
        in answer.text
    )
    _no_english(answer.text)
    # The CSV import's preview: a line the store refuses (the file's own checks pass).
    answer = _upload(
        client,
        csrf,
        "Refused import",
        (
            "visitor,from,until,doors\n" + "z" * 200 + ",2036-12-05 08:00,2036-12-05 18:00,front\n"
        ).encode(),
    )
    assert answer.status == 400
    line = re.search(r'<tr id="line-2".*?</tr>', answer.text, re.S)
    assert line is not None
    assert "Vérifiez le nom du visiteur : de 1 à 128 caractères." in line.group(0)
    _no_english(answer.text)
    # The operators page (a security officer's): a name the store refuses.
    olivia = ConsoleClient(client.base)
    olivia.request("/console/lang/fr?next=/console/")
    olivia_csrf = _logged_in(olivia, "olivia")
    answer = olivia.request(
        "/console/operators", {"csrf": olivia_csrf, "name": "Nina Smith", "role": "auditor"}
    )
    assert answer.status == 400
    assert "Un nom compte 1 à 64 caractères" in answer.text
    _no_english(answer.text)


def _group_of(console_central, label: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    with _store(console_central) as store:
        return [i for i in store.list_invitations() if i["group"] and i["group"]["label"] == label]


def test_a_whole_group_revoked_and_extended(client: ConsoleClient, console_central):
    csrf = _logged_in(client)
    with _store(console_central) as store:
        now = store.now_ms() // 1000
        made = store.create_invitation_group(
            {
                "label": "Whole team",
                "invitations": [
                    {
                        "visitor": n,
                        "doors": ["front"],
                        "not_before": now - 60,
                        "expires": now + 3600,
                    }
                    for n in ("Gus One", "Gus Two")
                ],
            }
        )
    gid = made["id"]
    page = client.request("/console/visitors")
    assert f'action="/console/visitors/groups/{gid}/extend"' in page.text
    assert f'action="/console/visitors/groups/{gid}/revoke"' in page.text
    # Without the CSRF token: refused, nothing changed.
    answer = client.request(
        f"/console/visitors/groups/{gid}/extend", {"csrf": "", "expires": "2036-02-01T18:00"}
    )
    assert answer.status == 403
    answer = client.request(
        f"/console/visitors/groups/{gid}/extend", {"csrf": csrf, "expires": "2036-02-01T18:00"}
    )
    assert answer.status == 303, answer.text
    page = client.request(answer.headers["Location"])
    assert "2 invitations of Whole team now end 2036-02-01 18:00" in page.text
    rows = _group_of(console_central, "Whole team")
    old = {m["invitation"]["id"] for m in made["invitations"]}
    assert {r["status"] for r in rows if r["id"] in old} == {"replaced"}
    new = {r["id"] for r in rows if r["status"] == "valid"}
    assert len(new) == 2
    [entry] = _journal(console_central, "POST /admin/invitation-groups/{group_id}/extend")
    assert entry["detail"]["via"] == "console" and entry["operator"] == "paul"
    assert set(entry["detail"]["replaced"]) == old and set(entry["detail"]["invitations"]) == new
    # An end before the current ones: refused with the store's reason, in words.
    answer = client.request(
        f"/console/visitors/groups/{gid}/extend", {"csrf": csrf, "expires": "2035-01-01T18:00"}
    )
    assert answer.status == 400
    assert "the new end must be after the end of every invitation of the group" in answer.text

    # Revoke: a reason is required; then every valid one at once, audited once.
    answer = client.request(f"/console/visitors/groups/{gid}/revoke", {"csrf": csrf, "reason": ""})
    assert answer.status == 400 and "Give a reason for the revocation." in answer.text
    answer = client.request(
        f"/console/visitors/groups/{gid}/revoke", {"csrf": csrf, "reason": "Audit postponed"}
    )
    assert answer.status == 303
    page = client.request(answer.headers["Location"])
    assert "2 invitations of Whole team revoked." in page.text
    assert f'action="/console/visitors/groups/{gid}/revoke"' not in page.text  # nothing left
    assert {r["status"] for r in _group_of(console_central, "Whole team")} == {
        "replaced",
        "revoked",
    }
    [entry] = _journal(console_central, "POST /admin/invitation-groups/{group_id}/revoke")
    assert entry["detail"]["reason"] == "Audit postponed"
    assert set(entry["detail"]["revoked"]) == new
    answer = client.request(
        "/console/visitors/groups/g-nobody/revoke", {"csrf": csrf, "reason": "x"}
    )
    assert answer.status == 404

    # In French: the group's words and a refusal.
    client.request("/console/lang/fr?next=/console/")
    answer = client.request(
        f"/console/visitors/groups/{gid}/revoke", {"csrf": csrf, "reason": "encore"}
    )
    assert answer.status == 400
    assert "Aucune invitation du groupe n’est encore valide : rien à changer." in answer.text
    client.request("/console/lang/en?next=/console/")


def test_a_recurring_visitor_is_revoked_not_extended_from_the_page(
    client: ConsoleClient, console_central
):
    csrf = _logged_in(client)
    with _store(console_central) as store:
        days = store.create_recurring_invitations(
            {
                "visitor": "Rita Daily",
                "label": "Rita's weeks",
                "doors": ["lab"],
                "first_day": "2036-07-07",
                "last_day": "2036-07-09",
                "start": "09:00",
                "end": "12:00",
            }
        )
    gid = days["id"]
    page = client.request("/console/visitors")
    assert f'action="/console/visitors/groups/{gid}/revoke"' in page.text
    assert f'action="/console/visitors/groups/{gid}/extend"' not in page.text
    assert "A recurring visitor's days are extended one by one." in page.text
    answer = client.request(
        f"/console/visitors/groups/{gid}/extend", {"csrf": csrf, "expires": "2036-08-01T18:00"}
    )
    assert answer.status == 400 and "recurring visitor" in answer.text
    assert {r["status"] for r in _group_of(console_central, "Rita's weeks")} == {"upcoming"}


def test_an_auditor_may_not_revoke_a_group(client: ConsoleClient, console_central):
    with _store(console_central) as store:
        made = store.create_invitation_group(
            {"label": "Kept", "invitations": [{"visitor": "Kim", "doors": ["front"]}]}
        )
    csrf = _logged_in(client, "ada")
    answer = client.request(
        f"/console/visitors/groups/{made['id']}/revoke", {"csrf": csrf, "reason": "no"}
    )
    assert answer.status == 403
    assert {r["status"] for r in _group_of(console_central, "Kept")} == {"valid"}


def test_the_group_admin_routes(console_central):
    with console_central.admin() as admin:
        made = admin.create_invitation_group(
            "API whole",
            [
                {"visitor": "Api Three", "doors": ["front"]},
                {"visitor": "Api Four", "doors": ["front"]},
            ],
        )
        first = made["invitations"][0]["invitation"]
        extended = admin.extend_invitation_group(made["id"], first["expires"] + 86400)
        assert sorted(extended["replaced"]) == sorted(
            m["invitation"]["id"] for m in made["invitations"]
        )
        with pytest.raises(BadRequest):
            admin.extend_invitation_group(made["id"], 1)
        with pytest.raises(BadRequest):
            admin.revoke_invitation_group(made["id"], "")
        revoked = admin.revoke_invitation_group(made["id"], "called off")
        assert sorted(revoked["revoked"]) == sorted(
            one["invitation"]["id"] for one in extended["invitations"]
        )
        journal = admin.operator_journal()
    contract = ContractChecker()
    contract.check_response("POST", "/admin/invitation-groups/{group_id}/extend", 201, extended)
    contract.check_response("POST", "/admin/invitation-groups/{group_id}/revoke", 200, revoked)
    details = [(e["action"], json.loads(e["detail"] or "{}")) for e in journal]
    [extend_row] = [
        d
        for a, d in details
        if a == "POST /admin/invitation-groups/{group_id}/extend" and d.get("id") == made["id"]
    ]
    assert sorted(extend_row["replaced"]) == sorted(extended["replaced"])
    assert sorted(extend_row["invitations"]) == sorted(
        one["invitation"]["id"] for one in extended["invitations"]
    )
    [revoke_row] = [
        d
        for a, d in details
        if a == "POST /admin/invitation-groups/{group_id}/revoke" and d.get("id") == made["id"]
    ]
    assert revoke_row["reason"] == "called off" and revoke_row["revoked"] == revoked["revoked"]
