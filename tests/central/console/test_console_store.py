"""The store's reads for the console (central/store/console.py) on both backends: the
invitations with their status, the home page's summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from central.settings import CentralSettings
from central.store import CentralStore
from central.store.console import invitation_status

pytestmark = pytest.mark.processes  # PostgreSQL: a real server the tests start

NOW_S = 1_900_000_000


def test_invitations_and_summary_on_each_backend(
    tmp_path: Path, central_db: Callable[[], str | None]
):
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db())
    with CentralStore(settings, clock=lambda: NOW_S * 1000) as store:
        assert store.list_invitations() == []
        made = {}
        for label, start, end, single in (
            ("valid", NOW_S - 60, NOW_S + 3600, False),
            ("upcoming", NOW_S + 86400 * 2, NOW_S + 86400 * 3, False),
            ("expired", NOW_S - 7200, NOW_S - 3600, False),
            ("revoked", NOW_S - 60, NOW_S + 3600, False),
            ("single", NOW_S - 60, NOW_S + 3600, True),
        ):
            made[label] = store.create_invitation(
                {
                    "visitor": label.title(),
                    "host": "Host",
                    "host_email": "host@example.com",
                    "doors": ["front"],
                    "not_before": start,
                    "expires": end,
                    "single_use": single,
                    "lang": "fr",
                }
            )["invitation"]["id"]
        store.revoke_invitation(made["revoked"])
        listed = {i["id"]: i for i in store.list_invitations()}
        assert {made[k]: listed[made[k]]["status"] for k in made} == {
            made["valid"]: "valid",
            made["upcoming"]: "upcoming",
            made["expired"]: "expired",
            made["revoked"]: "revoked",
            made["single"]: "valid",
        }
        assert listed[made["valid"]]["host_email"] == "host@example.com"
        assert listed[made["valid"]]["lang"] == "fr"
        assert store.list_invitations(limit=2) == list(store.list_invitations())[:2]

        summary = store.console_summary(
            day_start_s=NOW_S - 3600, day_end_s=NOW_S + 3600, online_within_ms=300_000
        )
        # valid and single overlap the day; upcoming does not, expired ended, revoked is out.
        assert summary == {"devices": 0, "devices_online": 0, "visitors_today": 2}


def test_invitation_status_words():
    base = {"revoked_at": None, "single_use": True, "used": True, "expires": 10, "not_before": 0}
    assert invitation_status(base, 5) == "used"
    assert invitation_status({**base, "revoked_at": 3}, 5) == "revoked"
    assert invitation_status({**base, "used": False}, 11) == "expired"
    assert invitation_status({**base, "used": False, "not_before": 7}, 5) == "upcoming"
