"""Claims events carry, shared with the site's doors: a single-use invitation used, and
an NTAG 424 badge's tap counter.

When a device journals ``invitation.used`` or ``badge.counter``, the central tells the
site's other doors (``used_invitations`` / ``badge_counters`` deltas), so an invitation
is used once site-wide and a cloned badge's replayed counter is refused. A claim is
believed only from a device whose door the credential is valid at, and a counter only
with evidence; otherwise the event is stored (it is the device's journal) but the claim
is not shared (``not_shared: ...``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from portier_common.ntag424 import SunError

from ..errors import BadRequest
from .base import StoreBase, dumps
from .db import Connection, Row
from .deltas import record_change
from .validate import normalize_uid

__all__ = ["EVENT_BADGE_COUNTER", "EVENT_INVITATION_USED", "ClaimsMixin"]

log = logging.getLogger(__name__)

EVENT_INVITATION_USED = "invitation.used"
EVENT_BADGE_COUNTER = "badge.counter"
_MAX_COUNTER = 2**24 - 1


class ClaimsMixin(StoreBase):
    """Sharing the claims of ``invitation.used`` and ``badge.counter`` events."""

    def _apply_side_effects(
        self,
        conn: Connection,
        dev: Row,
        values: Mapping[str, Any],
        payload: Mapping[str, Any],
    ) -> str | None:
        """Share single-use invitation use and NTAG 424 counters with the site's doors.

        Returns None (shared, or nothing to share), ``"invalid: ..."`` (the event is
        rejected), or ``"not_shared: ..."``: the event is stored (it is the device's
        journal) but the claim is not believed, so no other door hears of it. A claim
        is believed only from a device whose door the credential is valid for, and a
        counter only with evidence (a SUN message that verifies, or -- without keys --
        a bounded advance).
        """
        if values["type"] == EVENT_INVITATION_USED:
            return self._share_invitation_use(conn, dev, values, payload)
        if values["type"] == EVENT_BADGE_COUNTER:
            return self._share_badge_counter(conn, dev, values, payload)
        return None

    @staticmethod
    def _valid_here(dev: Row, doors: Sequence[str], zones: Sequence[str]) -> bool:
        """True if a credential for *doors* / *zones* is valid at the device's door."""
        device_zones = set(json.loads(dev["zones"] or "[]"))
        return dev["door"] in doors or bool(device_zones & set(zones))

    def _not_shared(self, dev: Row, what: str, why: str) -> str:
        log.warning("device %s: %s not shared: %s", dev["device_id"], what, why)
        return f"not_shared: {why}"

    def _share_invitation_use(
        self,
        conn: Connection,
        dev: Row,
        values: Mapping[str, Any],
        payload: Mapping[str, Any],
    ) -> str | None:
        site = dev["site"]
        inv_id, door, expires = (
            payload.get("invitation_id"),
            payload.get("door"),
            payload.get("expires"),
        )
        if not isinstance(inv_id, str) or not 1 <= len(inv_id) <= 64:
            return "invalid: payload.invitation_id must be text of 1 to 64 characters"
        if not isinstance(door, str) or isinstance(expires, bool) or not isinstance(expires, int):
            return "invalid: payload.door must be text and payload.expires Unix seconds"
        what = f"invitation.used {inv_id}"
        if door != dev["door"]:
            return self._not_shared(dev, what, f"door {door!r} is not the device's door")
        row = conn.execute(
            "SELECT data FROM invitations WHERE id = ? AND site = ?", (inv_id, site)
        ).fetchone()
        if row is None:
            return self._not_shared(dev, what, "unknown invitation")
        invitation = json.loads(row["data"])
        if not invitation.get("single_use"):
            return self._not_shared(dev, what, "the invitation is not single-use")
        if not self._valid_here(dev, invitation["doors"], invitation["zones"]):
            return self._not_shared(dev, what, f"the invitation is not valid at {dev['door']}")
        if conn.execute("SELECT 1 FROM used_invitations WHERE id = ?", (inv_id,)).fetchone():
            return None  # first use wins; later ones are in the journal anyway
        data = {
            "id": inv_id,
            "used_at": values["wall_ms"] // 1000,
            # The central's own record, not what the device says.
            "expires_at": invitation["expires"],
            "door": door,
            "device_id": dev["device_id"],
        }
        conn.execute(
            "INSERT INTO used_invitations (id, site, data) VALUES (?, ?, ?)",
            (inv_id, site, dumps(data)),
        )
        record_change(conn, site, "used_invitation", inv_id, data)
        return None

    def _share_badge_counter(
        self,
        conn: Connection,
        dev: Row,
        values: Mapping[str, Any],
        payload: Mapping[str, Any],
    ) -> str | None:
        site = dev["site"]
        try:
            uid = normalize_uid(payload.get("uid"))
        except BadRequest as exc:
            return f"invalid: payload.{exc.detail}"
        counter = payload.get("counter")
        if isinstance(counter, bool) or not isinstance(counter, int):
            return "invalid: payload.counter must be an integer"
        if not 0 <= counter <= _MAX_COUNTER:
            return "invalid: payload.counter must be 0 to 16777215"
        what = f"badge.counter {uid}={counter}"
        door, sun_url = payload.get("door"), payload.get("sun_url")
        if door != dev["door"]:
            return self._not_shared(dev, what, f"door {door!r} is not the device's door")
        badge_row = conn.execute(
            "SELECT data FROM badges WHERE uid = ? AND site = ?", (uid, site)
        ).fetchone()
        if badge_row is None:
            return self._not_shared(dev, what, "unknown badge")
        badge = json.loads(badge_row["data"])
        if not self._valid_here(dev, badge["doors"], badge["zones"]):
            return self._not_shared(dev, what, f"the badge is not valid at {dev['door']}")
        row = conn.execute(
            "SELECT counter FROM badge_counters WHERE site = ? AND uid = ?", (site, uid)
        ).fetchone()
        last = None if row is None else row["counter"]
        if self._sun is not None:
            if not isinstance(sun_url, str) or not sun_url:
                return self._not_shared(dev, what, "no SUN message (payload.sun_url)")
            try:
                tap = self._sun.verify(sun_url)
            except (SunError, ValueError) as exc:
                return self._not_shared(dev, what, f"SUN message does not verify: {exc}")
            if tap.uid_hex.lower() != uid or tap.counter != counter:
                return self._not_shared(
                    dev, what, f"SUN message is for {tap.uid_hex.lower()}={tap.counter}"
                )
        else:
            ceiling = (last or 0) + self.settings.counter_max_advance
            if counter > ceiling:
                return self._not_shared(
                    dev,
                    what,
                    f"counter {counter} is more than {self.settings.counter_max_advance} above "
                    f"the last shared ({last or 0}) and no SUN keys verify it",
                )
        if last is not None and last >= counter:
            return None
        updated = values["wall_ms"] // 1000
        conn.execute(
            "INSERT INTO badge_counters (site, uid, counter, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (site, uid) DO UPDATE SET counter = excluded.counter, "
            "updated_at = excluded.updated_at",
            (site, uid, counter, updated),
        )
        record_change(
            conn,
            site,
            "badge_counter",
            uid,
            {"uid": uid, "counter": counter, "updated_at": updated},
        )
        return None
