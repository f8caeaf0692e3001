"""Door modes from the central (issue #14): the attacks that must fail at the door.

A door mode travels in the door's settings, in the signed deltas (docs/sync.md). Someone on
the network path (or a rogue server) who forges a page that puts the door in free access or
lifts a lockdown, strips the signature, or signs with a key of their own: the agent refuses
the page, raises ``bad_delta`` and its door keeps the mode it has. (That a Pass Office
account cannot set a mode at the central: tests/central/test_central_door_modes.py.)
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.testing import CentralProcess, enroll_device
from edge_agent.store import Store, StoreSettings
from edge_agent.sync import Alarms, CentralClient, DeltaError, Downlink
from edge_agent.sync.client import SignedPage
from edge_agent.sync.downlink import DeltaTrust, DoorSettingsFile
from portier_common.signing import DeltaKey, b64url, delta_message

pytestmark = pytest.mark.processes

DOOR = "vault"


class _Forging:
    """A central client whose deltas pages an attacker rewrites (``forge``)."""

    def __init__(self, client: CentralClient, forge: Any) -> None:
        self._client = client
        self.forge = forge

    def signed_deltas(self, cursor: str | None, limit: int) -> SignedPage:
        return self.forge(self._client.signed_deltas(cursor, limit))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _free_access(page: SignedPage) -> SignedPage:
    body = json.loads(page.body)
    for item in body["door_settings"]:
        item["settings"]["mode"] = "free_access"
        item["settings"]["mode_set"]["by"] = "olivia"
    return replace(page, body=json.dumps(body).encode())


@pytest.mark.parametrize("attack", ["altered", "unsigned", "own-key"])
def test_a_forged_door_mode_is_refused(tmp_path: Path, attack: str) -> None:
    with CentralProcess(tmp_path / "central") as central, central.admin() as admin:
        enrolled, session = enroll_device(central.url, door=DOOR, device_id=f"dm-{attack}")
        session.close()
        admin.set_door_mode(DOOR, "lockdown", "intruder")
        device_id = enrolled["device_id"]
        pinned = DeltaKey.from_dict(enrolled["delta_key"])
        mallory = Ed25519PrivateKey.generate()

        def forge(page: SignedPage) -> SignedPage:
            altered = _free_access(page)
            if attack == "altered":  # the central's signature over other bytes
                return altered
            if attack == "unsigned":
                return SignedPage(altered.body, None, None)
            signature = mallory.sign(delta_message(device_id, altered.body))
            return SignedPage(altered.body, pinned.kid, b64url(signature))

        applied: list[Any] = []
        with (
            Store.open(StoreSettings(path=tmp_path / "door.db")) as store,
            CentralClient(central.url, credential=enrolled["device_token"]) as client,
        ):
            alarms = Alarms(store.journal.append)
            downlink = Downlink(
                store,
                _Forging(client, forge),  # type: ignore[arg-type]
                alarms,
                door=DOOR,
                trust=DeltaTrust(device_id, pinned),
                settings_file=DoorSettingsFile(tmp_path / "central-door-settings.json"),
                on_door_settings=applied.append,
            )
            with pytest.raises(DeltaError, match="signature"):
                downlink.sync()
            assert applied == [] and alarms.is_active("bad_delta")
            assert not (tmp_path / "central-door-settings.json").exists()
            assert store.cache.downlink().cursor is None
            # The honest page is applied: the lockdown the security office set.
            downlink.client = client
            downlink.sync()
            assert [s["mode"] for s in applied] == ["lockdown"]
            assert applied[0]["mode_set"]["reason"] == "intruder"
