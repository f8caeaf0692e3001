"""Invitations made together and extended (central/store/visits.py) on both backends:
groups all or none, a recurring visitor's days in the site's time, an extension's new
token and the old one's revocation in the doors' deltas, the CSV drafts' binding."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from central.errors import BadRequest, NotFound
from central.settings import CentralSettings
from central.store import CentralStore
from central.store.visits import MAX_OCCURRENCES
from portier_common.tokens.invitation import read_claims_unverified

pytestmark = pytest.mark.processes  # PostgreSQL: a real server the tests start

PARIS = ZoneInfo("Europe/Paris")
#: Monday 2027-03-22 12:00, Paris: the clocks go forward on Sunday 2027-03-28.
NOW_S = int(dt.datetime(2027, 3, 22, 12, 0, tzinfo=PARIS).timestamp())


def _store(tmp_path: Path, central_db: Callable[[], str | None]) -> CentralStore:
    settings = CentralSettings(
        data_dir=tmp_path / "data", db=central_db(), site="hq", time_zone="Europe/Paris"
    )
    return CentralStore(settings, clock=lambda: NOW_S * 1000)


def _one(visitor: str, **more: object) -> dict[str, object]:
    return {
        "visitor": visitor,
        "host": "Hélène",
        "doors": ["front"],
        "not_before": NOW_S,
        "expires": NOW_S + 3600,
        **more,
    }


def test_a_group_is_made_all_or_none(tmp_path: Path, central_db: Callable[[], str | None]):
    with _store(tmp_path, central_db) as store:
        made = store.create_invitation_group(
            {"kind": "group", "label": "Audit team", "invitations": [_one("Ada"), _one("Bob")]}
        )
        assert made["group"]["kind"] == "group" and made["id"] == made["group"]["id"]
        ids = [one["invitation"]["id"] for one in made["invitations"]]
        assert len(set(ids)) == 2
        listed = {i["id"]: i for i in store.list_invitations()}
        assert {listed[i]["group"]["label"] for i in ids} == {"Audit team"}
        assert all(one["token"].startswith("PT1:") for one in made["invitations"])

        # The third line is refused: neither the first two nor the group are made.
        cursor = store.head_cursor()
        bad = [_one("Cy"), _one("Dee"), _one("Eve", expires="tomorrow")]
        with pytest.raises(BadRequest, match=r"invitations\[2\]: expires"):
            store.create_invitation_group({"kind": "import", "label": "x", "invitations": bad})
        assert len(store.list_invitations()) == 2
        assert store.deltas("hq", cursor)["invitations"] == []
        with pytest.raises(BadRequest, match="invitations"):
            store.create_invitation_group({"label": "empty", "invitations": []})
        with pytest.raises(BadRequest, match="kind"):
            store.create_invitation_group(
                {"kind": "recurring", "label": "x", "invitations": [_one("Ada")]}
            )
        with pytest.raises(BadRequest, match="site"):
            store.create_invitation_group(
                {"label": "x", "invitations": [_one("Ada", site="elsewhere")]}
            )


def test_a_recurring_visitor_gets_one_invitation_per_day(
    tmp_path: Path, central_db: Callable[[], str | None]
):
    body = {
        "visitor": "Carl Contractor",
        "host": "Facilities",
        "zones": ["plant"],
        "first_day": "2027-03-22",
        "last_day": "2027-04-09",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "08:00",
        "end": "17:00",
    }
    with _store(tmp_path, central_db) as store:
        made = store.create_recurring_invitations(body)
        days = [one["invitation"] for one in made["invitations"]]
        assert len(days) == 15  # three weeks of weekdays
        assert made["group"] == {**made["group"], "kind": "recurring", "label": "Carl Contractor"}
        local = [
            (
                dt.datetime.fromtimestamp(d["not_before"], PARIS),
                dt.datetime.fromtimestamp(d["expires"], PARIS),
            )
            for d in days
        ]
        # 08:00-17:00 site time each day, on both sides of the change to summer time.
        assert {(a.hour, a.minute, b.hour, b.minute) for a, b in local} == {(8, 0, 17, 0)}
        assert {a.weekday() for a, _ in local} == {0, 1, 2, 3, 4}
        assert local[0][0].date() == dt.date(2027, 3, 22)
        assert local[-1][0].date() == dt.date(2027, 4, 9)
        assert local[5][0].utcoffset() != local[0][0].utcoffset()  # 2027-03-29: summer time
        # Each token carries that day's window only: what the door checks offline.
        claims = read_claims_unverified(made["invitations"][1]["token"])
        assert (claims.not_before, claims.expires) == (days[1]["not_before"], days[1]["expires"])

        for change, match in (
            ({"end": "08:00"}, "end"),
            ({"last_day": "2027-03-01"}, "last_day"),
            ({"days": ["sat"], "last_day": "2027-03-26"}, "none of these days"),
            ({"days": ["someday"]}, "days"),
            ({"start": "8h"}, "start"),
            ({"first_day": "22/03/2027"}, "first_day"),
            ({"last_day": "2027-12-31", "days": ["mon", "tue", "wed", "thu", "fri"]}, "more than"),
            ({"doors": "front"}, "doors"),
        ):
            with pytest.raises(BadRequest, match=match):
                store.create_recurring_invitations({**body, **change})
        assert len(store.list_invitations()) == 15
        assert MAX_OCCURRENCES < 200


def test_an_extension_replaces_the_token_and_revokes_the_old(
    tmp_path: Path, central_db: Callable[[], str | None]
):
    with _store(tmp_path, central_db) as store:
        old = store.create_invitation(
            {**_one("Ada"), "host_email": "host@example.com", "lang": "fr"}
        )["invitation"]
        cursor = store.head_cursor()
        new_end = NOW_S + 3 * 86400
        done = store.extend_invitation(old["id"], {"expires": new_end})
        new = done["invitation"]
        assert done["replaced"] == old["id"] and done["id"] == new["id"] != old["id"]
        claims = read_claims_unverified(done["token"])
        assert (claims.invitation_id, claims.expires) == (new["id"], new_end)
        assert (claims.not_before, claims.visitor, claims.doors) == (NOW_S, "Ada", ("front",))
        # The doors learn the new invitation and the old one's revocation in one delta.
        page = store.deltas("hq", cursor)
        assert [i["id"] for i in page["invitations"]] == [new["id"]]
        assert page["invitations"][0]["expires"] == new_end
        assert [(r["id"], r["expires_at"]) for r in page["revocations"]] == [
            (old["id"], old["expires"])
        ]
        listed = {i["id"]: i for i in store.list_invitations()}
        assert listed[old["id"]]["status"] == "replaced"
        assert listed[old["id"]]["replaced_by"] == new["id"]
        assert listed[new["id"]]["replaces"] == old["id"]
        assert listed[new["id"]]["status"] == "valid"
        assert (listed[new["id"]]["host_email"], listed[new["id"]]["lang"]) == (
            "host@example.com",
            "fr",
        )

        with pytest.raises(BadRequest, match="replaced by"):
            store.extend_invitation(old["id"], {"expires": new_end + 60})
        with pytest.raises(BadRequest, match="after the current end"):
            store.extend_invitation(new["id"], {"expires": new_end})
        with pytest.raises(BadRequest, match="expires"):
            store.extend_invitation(new["id"], {})
        with pytest.raises(NotFound):
            store.extend_invitation("i-nobody", {"expires": new_end + 60})
        revoked = store.create_invitation(_one("Bob"))["invitation"]
        store.revoke_invitation(revoked["id"])
        with pytest.raises(BadRequest, match="revoked"):
            store.extend_invitation(revoked["id"], {"expires": new_end})
        # A group's member stays in its group once extended.
        group = store.create_invitation_group({"label": "Team", "invitations": [_one("Cy")]})
        member = group["invitations"][0]["invitation"]["id"]
        moved = store.extend_invitation(member, {"expires": new_end})
        listed = {i["id"]: i for i in store.list_invitations()}
        assert listed[moved["id"]]["group"]["id"] == group["id"]


def test_import_drafts_are_bound_to_their_session(
    tmp_path: Path, central_db: Callable[[], str | None]
):
    with _store(tmp_path, central_db) as store:
        text = "visitor;doors\nAda;front\n"
        draft = store.save_import_draft("session-a", "Open day", text)
        assert draft["sha256"] == hashlib.sha256(text.encode()).hexdigest()
        got = store.import_draft(draft["id"], "session-a")
        assert got is not None and (got["text"], got["label"]) == (text, "Open day")
        assert store.import_draft(draft["id"], "session-b") is None  # another session's
        assert store.import_draft("nothing", "session-a") is None
        # A new upload replaces the session's last one.
        second = store.save_import_draft("session-a", "Open day", text + "Bob;front\n")
        assert store.import_draft(draft["id"], "session-a") is None
        assert store.import_draft(second["id"], "session-a") is not None
        # A draft changed in the database after its upload is not used.
        with store.one_transaction() as conn:
            conn.execute("UPDATE import_drafts SET data = ?", ("visitor\nMallory\n",))
        assert store.import_draft(second["id"], "session-a") is None
        with pytest.raises(BadRequest, match="characters"):
            store.save_import_draft("session-a", "big", "x" * (600 * 1024))
        store.drop_import_draft(second["id"])


def test_an_old_draft_expires(tmp_path: Path, central_db: Callable[[], str | None]):
    now = [NOW_S * 1000]
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db(), site="hq")
    with CentralStore(settings, clock=lambda: now[0]) as store:
        draft = store.save_import_draft("s", "x", "visitor\nAda\n")
        now[0] += 3601 * 1000
        assert store.import_draft(draft["id"], "s") is None


def test_checking_invitations_makes_none(tmp_path: Path, central_db: Callable[[], str | None]):
    with _store(tmp_path, central_db) as store:
        cursor = store.head_cursor()
        answers = store.check_invitations([_one("Ada"), _one("x" * 300), _one("Bob")])
        assert answers[0] is None and answers[2] is None
        assert answers[1] is not None and "visitor" in answers[1].detail
        assert (answers[1].extra["field"], answers[1].extra["reason"]) == ("visitor", "text")
        assert store.list_invitations() == []
        assert store.deltas("hq", cursor)["invitations"] == []


def test_retention_forgets_a_group_label_and_old_drafts(
    tmp_path: Path, central_db: Callable[[], str | None]
):
    now = [NOW_S * 1000]
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db(), site="hq")
    with CentralStore(settings, clock=lambda: now[0]) as store:
        old = store.create_invitation_group(
            {"label": "Carl Contractor", "invitations": [_one("Carl"), _one("Carl again")]}
        )
        kept = store.create_invitation_group({"label": "Later", "invitations": [_one("Dee")]})
        draft = store.save_import_draft("s", "x", "visitor\nAda\n")
        store.extend_invitation(
            kept["invitations"][0]["invitation"]["id"], {"expires": NOW_S + 400 * 86400}
        )
        now[0] += 40 * 86_400_000
        store.purge(retention_days=30)
        labels = {i["group"]["id"]: i["group"]["label"] for i in store.list_invitations()}
        assert labels[old["id"]] == "-"  # every invitation of it purged: the name goes
        assert labels[kept["id"]] == "Later"  # one still current
        with store.one_transaction() as conn:
            left = conn.execute("SELECT id FROM import_drafts").fetchall()
        assert [row["id"] for row in left] == [] and draft["id"]


def test_a_whole_group_is_revoked_at_once(tmp_path: Path, central_db: Callable[[], str | None]):
    with _store(tmp_path, central_db) as store:
        names = [
            _one("Ada"),
            _one("Bob"),
            _one("Cy"),
            _one("Old", expires=NOW_S - 60, not_before=NOW_S - 3600),
        ]
        group = store.create_invitation_group({"label": "Team", "invitations": names})
        ids = {m["invitation"]["visitor"]: m["invitation"]["id"] for m in group["invitations"]}
        store.revoke_invitation(ids["Cy"])  # revoked already: not again
        other = store.create_invitation(_one("Stranger"))["invitation"]
        cursor = store.head_cursor()

        with pytest.raises(BadRequest, match="reason"):
            store.revoke_invitation_group(group["id"], {"reason": "  "})
        with pytest.raises(BadRequest, match="unknown fields"):
            store.revoke_invitation_group(group["id"], {"reason": "x", "expires": 1})
        with pytest.raises(NotFound):
            store.revoke_invitation_group("g-nothing", {"reason": "cancelled"})
        assert store.deltas("hq", cursor)["revocations"] == []

        done = store.revoke_invitation_group(group["id"], {"reason": " event\n cancelled "})
        assert done["reason"] == "event cancelled" and done["id"] == group["id"]
        assert sorted(done["revoked"]) == sorted([ids["Ada"], ids["Bob"]])
        assert done["group"]["kind"] == "group" and done["held"] == []
        # The doors learn both revocations in the same delta; the stranger is untouched.
        page = store.deltas("hq", cursor)
        assert sorted(r["id"] for r in page["revocations"]) == sorted(done["revoked"])
        listed = {i["id"]: i for i in store.list_invitations()}
        assert {listed[i]["status"] for i in done["revoked"]} == {"revoked"}
        assert listed[ids["Old"]]["status"] == "expired"
        assert listed[other["id"]]["status"] == "valid"
        # Nothing left to revoke: said so, nothing done.
        with pytest.raises(BadRequest, match="still valid"):
            store.revoke_invitation_group(group["id"], {"reason": "again"})


def test_a_whole_group_is_extended_all_or_none(
    tmp_path: Path, central_db: Callable[[], str | None]
):
    with _store(tmp_path, central_db) as store:
        names = [_one("Ada"), _one("Bob", expires=NOW_S + 7200), _one("Cy", single_use=True)]
        group = store.create_invitation_group(
            {"kind": "import", "label": "Gala", "invitations": names}
        )
        ids = {m["invitation"]["visitor"]: m["invitation"]["id"] for m in group["invitations"]}
        cursor = store.head_cursor()
        # Not after every current end (Bob's): refused, nothing minted nor revoked.
        with pytest.raises(BadRequest, match="latest ends"):
            store.extend_invitation_group(group["id"], {"expires": NOW_S + 5000})
        assert store.deltas("hq", cursor)["invitations"] == []
        assert store.deltas("hq", cursor)["revocations"] == []
        with pytest.raises(BadRequest, match="expires"):
            store.extend_invitation_group(group["id"], {})
        with pytest.raises(NotFound):
            store.extend_invitation_group("g-nothing", {"expires": NOW_S + 86400})

        new_end = NOW_S + 86400
        done = store.extend_invitation_group(group["id"], {"expires": new_end}, by="paul")
        assert sorted(done["replaced"]) == sorted(ids.values())
        assert len(done["invitations"]) == 3
        for old_id, one in zip(done["replaced"], done["invitations"], strict=True):
            claims = read_claims_unverified(one["token"])
            assert claims.expires == new_end and claims.invitation_id != old_id
            assert one["invitation"]["replaces"] == old_id
        page = store.deltas("hq", cursor)
        assert sorted(i["id"] for i in page["invitations"]) == sorted(
            one["invitation"]["id"] for one in done["invitations"]
        )
        assert sorted(r["id"] for r in page["revocations"]) == sorted(ids.values())
        listed = {i["id"]: i for i in store.list_invitations()}
        assert {listed[i]["status"] for i in ids.values()} == {"replaced"}
        assert {listed[one["invitation"]["id"]]["group"]["id"] for one in done["invitations"]} == {
            group["id"]
        }


def test_a_recurring_visitors_days_are_revoked_not_extended(
    tmp_path: Path, central_db: Callable[[], str | None]
):
    with _store(tmp_path, central_db) as store:
        days = store.create_recurring_invitations(
            {
                "visitor": "Carl",
                "doors": ["front"],
                "first_day": "2027-03-23",
                "last_day": "2027-03-25",
                "start": "08:00",
                "end": "17:00",
            }
        )
        with pytest.raises(BadRequest, match="recurring"):
            store.extend_invitation_group(days["id"], {"expires": NOW_S + 30 * 86400})
        listed = {i["id"]: i for i in store.list_invitations()}
        assert {listed[m["invitation"]["id"]]["status"] for m in days["invitations"]} == {
            "upcoming"
        }
        done = store.revoke_invitation_group(days["id"], {"reason": "contract ended"})
        assert len(done["revoked"]) == 3 and done["group"]["kind"] == "recurring"


def test_a_group_revocation_leaves_the_held_ones_to_the_officer(
    tmp_path: Path, central_db: Callable[[], str | None]
):
    with _store(tmp_path, central_db) as store:
        store.add_deny_entry({"name": "Mallory Bad", "reason": "theft"}, by="sam")
        group = store.create_invitation_group(
            {"label": "Crew", "invitations": [_one("Ada"), _one("Mallory Bad")]}
        )
        held = [m["invitation"]["id"] for m in group["invitations"] if m["token"] is None]
        assert len(held) == 1
        done = store.revoke_invitation_group(group["id"], {"reason": "crew cancelled"})
        assert done["held"] == held and held[0] not in done["revoked"]
        listed = {i["id"]: i for i in store.list_invitations()}
        assert listed[held[0]]["status"] == "pending_approval"
