"""What the web console reads (central/console/): the invitations with their status, and a
short summary for its home page. Reads only: every change the console makes goes through
the same methods as the admin API (``create_invitation``, ``revoke_invitation``).
"""

from __future__ import annotations

import json
from typing import Any

from .base import StoreBase

__all__ = ["ConsoleMixin", "invitation_status"]


def invitation_status(invitation: dict[str, Any], now_s: int) -> str:
    """One word for an invitation: ``pending_approval`` (screened out by the deny list,
    awaiting a security officer), ``refused`` (by one), ``replaced`` (extended: revoked for
    a new one), ``revoked``, ``used`` (single use, used once), ``expired``, ``upcoming``
    (not valid yet) or ``valid``."""
    if invitation.get("approval") == "pending":
        return "pending_approval"
    if invitation.get("approval") == "refused":
        return "refused"
    if invitation.get("replaced_by"):
        return "replaced"
    if invitation["revoked_at"] is not None:
        return "revoked"
    if invitation["single_use"] and invitation["used"]:
        return "used"
    if invitation["expires"] <= now_s:
        return "expired"
    if invitation["not_before"] > now_s:
        return "upcoming"
    return "valid"


class ConsoleMixin(StoreBase):
    """The console's reads: invitations with their status, the home page's summary."""

    def list_invitations(self, *, limit: int = 200) -> list[dict[str, Any]]:
        """Return the newest *limit* invitations (newest validity first), each the
        ``InvitationDelta`` fields plus ``host_email``, ``lang``, ``revoked_at``, ``used``,
        ``purged``, ``status`` (:func:`invitation_status`), and ``group`` (``{"id",
        "kind", "label"}`` of the invitations made with it, else None), ``replaces`` and
        ``replaced_by`` (an extension's old and new invitation ids)."""
        now_s = self.now_ms() // 1000
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT i.data, i.host_email, i.lang, i.revoked_at, i.purged_at_ms, "
                "i.visitor_email, a.state AS approval, "
                "i.replaces, i.replaced_by, g.id AS group_id, g.kind AS group_kind, "
                "g.label AS group_label, u.id AS used_id FROM invitations i "
                "LEFT JOIN used_invitations u ON u.id = i.id "
                "LEFT JOIN invitation_approvals a ON a.invitation_id = i.id "
                "LEFT JOIN invitation_groups g ON g.id = i.group_id "
                "ORDER BY i.expires DESC, i.id LIMIT ?",
                (limit,),
            ).fetchall()
        invitations = []
        for row in rows:
            invitation = {
                **json.loads(row["data"]),
                "host_email": row["host_email"],
                "visitor_email": row["visitor_email"],
                "approval": row["approval"],
                "lang": row["lang"] or "en",
                "revoked_at": row["revoked_at"],
                "used": row["used_id"] is not None,
                "purged": row["purged_at_ms"] is not None,
                "replaces": row["replaces"],
                "replaced_by": row["replaced_by"],
                "group": None
                if row["group_id"] is None
                else {
                    "id": row["group_id"],
                    "kind": row["group_kind"],
                    "label": row["group_label"],
                },
            }
            invitation["status"] = invitation_status(invitation, now_s)
            invitations.append(invitation)
        return invitations

    def console_summary(
        self, *, day_start_s: int, day_end_s: int, online_within_ms: int
    ) -> dict[str, int]:
        """Return ``{"devices", "devices_online", "visitors_today"}``: enabled devices,
        those heard from (heartbeat or event) within *online_within_ms*, and invitations
        not revoked nor awaiting approval whose validity overlaps [*day_start_s*, *day_end_s*)."""
        since = self.now_ms() - online_within_ms
        with self._tx() as conn:
            devices = conn.execute(
                "SELECT COUNT(*) AS n, "
                "SUM(CASE WHEN COALESCE(last_heartbeat_at_ms, 0) >= ? "
                "OR COALESCE(last_event_at_ms, 0) >= ? THEN 1 ELSE 0 END) AS online "
                "FROM devices WHERE enabled = 1",
                (since, since),
            ).fetchone()
            rows = conn.execute(
                "SELECT data FROM invitations WHERE revoked_at IS NULL AND expires > ? "
                # Held by the deny list: not expected unless a security officer approves.
                "AND id NOT IN (SELECT invitation_id FROM invitation_approvals "
                "WHERE state = 'pending')",
                (day_start_s,),
            ).fetchall()
        today = sum(1 for row in rows if json.loads(row["data"])["not_before"] < day_end_s)
        return {
            "devices": int(devices["n"] or 0),
            "devices_online": int(devices["online"] or 0),
            "visitors_today": today,
        }
