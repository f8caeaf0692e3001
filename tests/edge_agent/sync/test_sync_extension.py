"""What a door does with an extension and a recurring visitor, end to end: a real central
(its admin routes), a door's real downlink into its cache, and the agent's own decision
(:func:`edge_agent.policy.decide`) on the QR tokens the central minted.

An extension replaces the token: after the sync the old one is refused as revoked and the
new one opens until the new end. A recurring visitor's day opens only that day's hours.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.admin import CentralAdmin
from central.testing import CentralProcess
from edge_agent.cacheview import StoreCacheView
from edge_agent.door import DoorMode
from edge_agent.policy import Credential, DoorPolicy, decide
from portier_common.reasons import Reason
from tests.edge_agent.sync.test_sync_downlink import DOOR, Door

pytestmark = pytest.mark.processes


@pytest.fixture
def door(central: CentralProcess, tmp_path: Path) -> Iterator[Door]:
    d = Door(central, tmp_path)
    yield d
    d.close()


def _at(door: Door, token: str, when: float) -> Any:
    policy = DoorPolicy(site="hq", door=DOOR)
    view = StoreCacheView(door.store)
    return decide(Credential.qr(token), policy, DoorMode.NORMAL, when, view)


def test_an_extended_invitation_at_the_door(admin: CentralAdmin, door: Door) -> None:
    now = int(time.time())
    made = admin.create_invitation(
        visitor="Ada Lovelace", doors=[DOOR], not_before=now - 60, expires=now + 3600
    )
    assert door.downlink.sync().complete
    assert _at(door, made["token"], now).granted

    new_end = now + 2 * 86400
    done = admin.extend_invitation(made["invitation"]["id"], new_end)
    assert door.downlink.sync().complete
    old = _at(door, made["token"], now)
    assert not old.granted and old.reason is Reason.REVOKED
    assert _at(door, done["token"], now).granted
    assert _at(door, done["token"], now + 86400).granted  # past the old end
    late = _at(door, done["token"], new_end + 3600)
    assert not late.granted and late.reason is Reason.EXPIRED
    cached = door.store.cache.invitation(done["id"])
    assert cached is not None and cached.not_after == new_end


def test_a_recurring_visitors_day_opens_its_hours_only(admin: CentralAdmin, door: Door) -> None:
    zone = dt.UTC  # the test central's time_zone
    tomorrow = dt.datetime.now(zone).date() + dt.timedelta(days=1)
    made = admin.create_recurring_invitations(
        visitor="Carl Contractor",
        doors=[DOOR],
        first_day=tomorrow.isoformat(),
        last_day=(tomorrow + dt.timedelta(days=1)).isoformat(),
        days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        start="08:00",
        end="17:00",
    )
    assert door.downlink.sync().complete
    first = made["invitations"][0]["token"]

    def at(hour: int, minute: int = 0, day: dt.date = tomorrow) -> float:
        return dt.datetime.combine(day, dt.time(hour, minute), zone).timestamp()

    assert _at(door, first, at(12)).granted
    early = _at(door, first, at(7, 50))  # beyond the door's clock skew allowance
    assert not early.granted and early.reason is Reason.NOT_YET_VALID
    late = _at(door, first, at(17, 10))
    assert not late.granted and late.reason is Reason.EXPIRED
    next_day = _at(door, first, at(12, day=tomorrow + dt.timedelta(days=1)))
    assert not next_day.granted  # the next day is the next invitation's
    second = made["invitations"][1]["token"]
    assert _at(door, second, at(12, day=tomorrow + dt.timedelta(days=1))).granted
