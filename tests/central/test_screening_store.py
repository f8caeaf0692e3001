"""Deny-list screening in the store (central/store/screening.py), on SQLite and PostgreSQL:
the name comparison, the hold at create_invitation whoever calls it, the four-eyes rule,
refusals, and the visitor e-mail rows of the outbox."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from central.errors import BadRequest, Forbidden, NotIssued
from central.settings import CentralSettings
from central.store import CentralStore
from central.store.screening import name_key, names_match


@pytest.mark.parametrize(
    ("entry", "visitor"),
    [
        ("Emilie du Chatelet", "DU CHÂTELET Émilie"),
        ("Émilie du Châtelet", "emilie   DU-chatelet"),
        ("Jean-Pierre Lefèvre", "LEFEVRE Jean Pierre"),
        ("Hans Strauß", "hans STRAUSS"),
        ("Chloé Lœvenbruck", "Chloe Loevenbruck"),
        ("O'Brien Seán", "sean o brien"),
        ("Emilie du Chatelet", "Gabrielle Émilie du Châtelet"),  # a middle name added
        ("Ｅｍｉｌｉｅ du Chatelet", "Emilie du Chatelet"),  # full-width letters (NFKD)
    ],
)
def test_names_that_match(entry: str, visitor: str) -> None:
    assert names_match(name_key(entry), name_key(visitor))


@pytest.mark.parametrize(
    ("entry", "visitor"),
    [
        ("Emilie du Chatelet", "Emilie Dupont"),
        ("Emilie du Chatelet", "Emilie Chatelet"),  # a word of the entry missing
        ("Chatelet", "Emilie du Chatelet"),  # one word matches only one word
        ("Emilie du Chatelet", ""),
    ],
)
def test_names_that_do_not_match(entry: str, visitor: str) -> None:
    assert not names_match(name_key(entry), name_key(visitor))


def test_name_key_ignores_accents_case_order_spaces_and_hyphens() -> None:
    assert name_key("  DU CHÂTELET -- Émilie ") == ("chatelet", "du", "emilie")


@pytest.fixture
def store(tmp_path: Path, central_db: Any) -> Any:
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db())
    with CentralStore(settings) as opened:
        yield opened


def _changes(store: CentralStore, invitation_id: str) -> int:
    page = store.deltas("hq", None)
    return sum(1 for item in page["invitations"] if item["id"] == invitation_id)


def test_a_match_is_held_without_token_and_another_officer_decides(store: CentralStore) -> None:
    entry = store.add_deny_entry({"name": "Emilie du Chatelet", "reason": "trespass"}, by="sam")
    body = {"visitor": "DU CHÂTELET Émilie", "doors": ["lobby"], "visitor_email": "e@example.fr"}
    held = store.create_invitation(body, by="sam")
    invitation_id = held["invitation"]["id"]
    assert held["token"] is None and held["invitation"]["approval"] == "pending"
    assert _changes(store, invitation_id) == 0
    assert store.notifications() == []  # no e-mail queued
    [listed] = [i for i in store.list_invitations() if i["id"] == invitation_id]
    assert listed["status"] == "pending_approval"
    day = store.now_ms() // 1000
    summary = store.console_summary(
        day_start_s=day - 3600, day_end_s=day + 86400, online_within_ms=1
    )
    assert summary["visitors_today"] == 0  # not expected until approved
    with pytest.raises(NotIssued, match="awaits approval"):
        store.invitation_token(invitation_id)
    # Four eyes: the officer who created it does not approve it.
    with pytest.raises(Forbidden, match="another security officer"):
        store.decide_invitation(invitation_id, {"decision": "approve", "reason": "ok"}, by="sam")
    with pytest.raises(BadRequest, match="reason"):
        store.decide_invitation(invitation_id, {"decision": "approve", "reason": " "}, by="ann")
    with pytest.raises(BadRequest, match="decision"):
        store.decide_invitation(invitation_id, {"decision": "yes", "reason": "ok"}, by="ann")
    store.decide_invitation(invitation_id, {"decision": "approve", "reason": "ok"}, by="ann")
    assert _changes(store, invitation_id) == 1
    assert [n["channel"] for n in store.notifications()] == ["invitation"]
    assert store.invitation_token(invitation_id)["token"].startswith("PT1:")
    # Decided once: a second decision is refused.
    with pytest.raises(NotIssued):
        store.decide_invitation(invitation_id, {"decision": "refuse", "reason": "no"}, by="ann")
    # Off the list: the same name is no longer held.
    store.remove_deny_entry(entry["id"], {"reason": "lifted"})
    assert store.create_invitation(body, by="sam")["token"] is not None


def test_a_refused_invitation_never_reaches_the_doors(store: CentralStore) -> None:
    store.add_deny_entry({"name": "Mallory Evil", "reason": "theft"}, by="sam")
    held = store.create_invitation({"visitor": "EVIL, Mallory", "zones": ["north"]}, by="pia")
    invitation_id = held["invitation"]["id"]
    assert [p["id"] for p in store.pending_invitations()] == [invitation_id]
    store.decide_invitation(invitation_id, {"decision": "refuse", "reason": "no way"}, by="sam")
    assert store.pending_invitations() == []
    assert _changes(store, invitation_id) == 0
    [listed] = [i for i in store.list_invitations() if i["id"] == invitation_id]
    assert listed["status"] == "refused"
    with pytest.raises(NotIssued, match="refused"):
        store.invitation_token(invitation_id)


def test_deny_entries_need_a_name_and_a_reason(store: CentralStore) -> None:
    with pytest.raises(BadRequest, match="reason"):
        store.add_deny_entry({"name": "Mallory"}, by="sam")
    with pytest.raises(BadRequest, match="name"):
        store.add_deny_entry({"name": " - ", "reason": "x"}, by="sam")
    with pytest.raises(BadRequest, match="unknown"):
        store.add_deny_entry({"name": "Mallory", "reason": "x", "role": "x"}, by="sam")
    with pytest.raises(BadRequest, match="visitor_email"):
        store.create_invitation({"visitor": "Ada", "doors": ["a"], "visitor_email": "not mail"})


def test_groups_recurring_visits_and_extensions_are_screened_with_four_eyes(
    store: CentralStore,
) -> None:
    """Every way of making invitations is screened, and its maker may not approve: a group
    (or a CSV import) that holds a denied name, a recurring visitor's days; a held or refused
    invitation is not extended into an issued one."""
    store.add_deny_entry({"name": "Mallory Evil", "reason": "theft"}, by="sam")
    now = store.now_ms() // 1000
    group = store.create_invitation_group(
        {
            "label": "Visit",
            "invitations": [
                {"visitor": "Alice Martin", "doors": ["lobby"]},
                {"visitor": "evil MALLORY", "doors": ["lobby"]},
            ],
        },
        by="pia",
    )
    alice, mallory = (one["invitation"] for one in group["invitations"])
    assert alice.get("approval") is None and mallory["approval"] == "pending"
    with pytest.raises(Forbidden, match="another security officer"):
        store.decide_invitation(mallory["id"], {"decision": "approve", "reason": "ok"}, by="pia")
    with pytest.raises(BadRequest, match="pending"):
        store.extend_invitation(mallory["id"], {"expires": now + 7 * 86400}, by="pia")
    store.decide_invitation(mallory["id"], {"decision": "refuse", "reason": "no"}, by="sam")
    with pytest.raises(BadRequest, match=r"revoked|refused"):  # a refusal revokes it
        store.extend_invitation(mallory["id"], {"expires": now + 7 * 86400}, by="pia")
    today = dt.datetime.fromtimestamp(now, store.settings.zone).date()
    days = store.create_recurring_invitations(
        {
            "visitor": "Mallory Evil",
            "doors": ["lobby"],
            "first_day": (today + dt.timedelta(days=1)).isoformat(),
            "last_day": (today + dt.timedelta(days=7)).isoformat(),
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "08:00",
            "end": "17:00",
        },
        by="pia",
    )
    held = [one["invitation"] for one in days["invitations"]]
    assert len(held) == 7 and all(one["approval"] == "pending" for one in held)
    assert all(one["token"] is None for one in days["invitations"])
    with pytest.raises(Forbidden):
        store.decide_invitation(held[0]["id"], {"decision": "approve", "reason": "ok"}, by="pia")
