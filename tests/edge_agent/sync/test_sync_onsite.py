"""Check-ins and check-outs reach the central once (issue #15): the uplink of a store whose
on-site list journaled a check-in and the three kinds of check-out, drained twice, against
the reference central (a real process): every event stored once, chain verified, and the
check-out events kept with their type and payload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_agent.guards import Session
from edge_agent.onsite import OnSite
from portier_common.passes import pass_hash
from tests.edge_agent.sync.test_sync_uplink import Device, assert_central_has_journal

pytestmark = pytest.mark.processes


def _onsite(device: Device, clock: list[float]) -> OnSite:
    def guard_session(token: str) -> Session:
        return Session(token=token, guard_id="g-1", name="Gail Guard", expires_at=0.0)

    return OnSite(
        device.store,
        door="gate-a",
        append_claimed=device.store.journal.append_claimed,
        invitation=lambda ident: ("Visitor " + ident, "Hal Host", 2_000_000_000, ["lobby"]),
        guard_session=guard_session,
        clock_trusted=lambda now: True,
        wall=lambda: clock[0],
    )


def test_checkouts_are_synced_once(central: Any, admin: Any, tmp_path: Path) -> None:
    device = Device(central, tmp_path)
    try:
        clock = [1_900_000_000.0]
        onsite = _onsite(device, clock)
        passes = {}
        for ident in ("a", "b", "c"):
            passes[ident], digest = onsite.mint_pass()
            onsite.record_checkin(
                {
                    "invitation_id": ident,
                    "by": "visitor",
                    "pass_hash": digest,
                    **onsite.checkin_payload(ident),
                }
            )
        onsite.checkout_by_pass(passes["a"])
        onsite.checkout_by_guard("token", "b", "left early")
        clock[0] = 2_000_000_001.0
        assert onsite.sweep() == 1
        uplink = device.uplink()
        assert uplink.drain() == len(device.store.journal.events(limit=1000))
        assert uplink.drain() == 0  # nothing twice
        assert_central_has_journal(admin, device)
        stored = admin.all_device_events(device.device_id)
        outs = [e for e in stored if e["type"] == "visitor.checked_out"]
        assert len(outs) == 3
        assert len([e for e in stored if e["type"] == "visitor.checked_in"]) == 3
        # The central holds the passes' hashes, never an id that checks a visitor out.
        synced = json.dumps(stored)
        assert all(pass_id not in synced for pass_id in passes.values())
        assert pass_hash(passes["a"]) in synced
    finally:
        device.close()
