"""The kiosk's agent rig (tests/support/kiosk_rig.py) itself: what it writes and runs agrees."""

from __future__ import annotations

import pytest

from kiosk import demo_material
from tests.support.kiosk_rig import running_rig

pytestmark = pytest.mark.processes


@pytest.fixture
def rig():
    with running_rig() as agent:
        yield agent


def test_rig_material_round_trips_and_decisions_match_expectations(rig):
    material = demo_material.load(rig.root)
    assert material == rig.material
    client = rig.client()
    for invitation in material.invitations:
        decision = client.present_qr(invitation.token)
        assert decision["reason"] == invitation.expect, invitation.label
    for badge in material.badges:
        decision = client.present_badge(badge.uid)
        assert decision["reason"] == badge.expect, badge.label
    assert client.guard_login(material.guard.uid, material.guard.pin)["name"] == "Gabrielle Roy"
