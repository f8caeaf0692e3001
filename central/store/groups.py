"""A whole group of invitations at once: revoke it, or extend it (docs/console.md,
"Groups at once").

A group is what :mod:`central.store.visits` makes together: several names (``group``), a
CSV import (``import``), or a recurring visitor's days (``recurring``). Its invitations
are revoked or extended as :meth:`revoke_invitation` and :meth:`extend_invitation` do one,
in ONE transaction (the caller's, with its audit row): the doors learn every new
invitation and every revocation in the same delta, or none.

Which invitations a group call touches: those still valid (status ``valid`` or
``upcoming``, :func:`central.store.console.invitation_status`). Not the expired, used,
revoked or replaced ones (nothing to do), and not those the deny list holds: a security
officer decides those one by one (``held`` in the answer says which were left).

A recurring visitor's group is revoked but not extended: each of its invitations is one
day's hours, and moving every day's end to one new end would make nonsense (more days
are a new recurring invitation; docs/console.md says so).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, NotFound
from .base import StoreBase
from .console import invitation_status
from .db import Connection
from .validate import checked_seconds, only_fields

__all__ = ["MAX_GROUP_REASON", "GroupsMixin"]

#: The longest reason kept for a group's revocation (the audit row's).
MAX_GROUP_REASON = 500


class GroupsMixin(StoreBase):
    """Revoke or extend every still-valid invitation of a group at once."""

    def _group_members(
        self, conn: Connection, group_id: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The group *group_id* and its invitations, each with its ``status``.

        Raises:
            NotFound: no such group.
        """
        group = conn.execute(
            "SELECT id, site, kind, label FROM invitation_groups WHERE id = ?", (group_id,)
        ).fetchone()
        if group is None:
            raise NotFound(
                f"no invitation group {group_id!r}",
                field="invitation_group",
                reason="not_found",
                name=group_id,
            )
        rows = conn.execute(
            "SELECT i.id, i.data, i.revoked_at, i.replaced_by, a.state AS approval, "
            "u.id AS used_id FROM invitations i "
            "LEFT JOIN used_invitations u ON u.id = i.id "
            "LEFT JOIN invitation_approvals a ON a.invitation_id = i.id "
            "WHERE i.group_id = ? ORDER BY i.id",
            (group_id,),
        ).fetchall()
        now_s = self.now_ms() // 1000
        members = []
        for row in rows:
            member = {
                **json.loads(row["data"]),
                "id": row["id"],
                "revoked_at": row["revoked_at"],
                "replaced_by": row["replaced_by"],
                "approval": row["approval"],
                "used": row["used_id"] is not None,
            }
            member["status"] = invitation_status(member, now_s)
            members.append(member)
        return dict(group), members

    @staticmethod
    def _answer(group: Mapping[str, Any], members: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": group["id"],
            "group": {"id": group["id"], "kind": group["kind"], "label": group["label"]},
            "held": [m["id"] for m in members if m["status"] == "pending_approval"],
        }

    def revoke_invitation_group(self, group_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Revoke every still-valid invitation of the group *group_id* (an
        ``InvitationGroupRevoke`` body: ``reason``, for the audit row), any kind.

        Returns:
            ``{"id", "group", "reason", "revoked": [ids], "held": [ids awaiting approval,
            left]}``.

        Raises:
            NotFound: no such group. BadRequest: no reason, or no invitation of the group
                is still valid (nothing revoked).
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields("group revocation", body, ("reason",))
        reason = " ".join(str(body.get("reason") or "").split())[:MAX_GROUP_REASON]
        if not reason:
            raise BadRequest(
                "reason: say why (it goes to the audit log)", field="reason", reason="required"
            )
        with self._atomic() as conn:  # type: ignore[attr-defined]
            group, members = self._group_members(conn, group_id)
            live = [m["id"] for m in members if m["status"] in ("valid", "upcoming")]
            if not live:
                raise BadRequest(
                    "group: none of its invitations is still valid",
                    field="invitation_group",
                    reason="group_none_valid",
                )
            for invitation_id in live:
                self.revoke_invitation(invitation_id)  # type: ignore[attr-defined]
        return {**self._answer(group, members), "reason": reason, "revoked": live}

    def extend_invitation_group(
        self, group_id: str, body: Mapping[str, Any], *, by: str | None = None
    ) -> dict[str, Any]:
        """Extend every still-valid invitation of the group *group_id* to a new end (an
        ``InvitationExtend`` body: ``expires``), each as :meth:`extend_invitation` does
        (a new invitation and token, the old one revoked), all or none. Not a recurring
        visitor's group (see the module's docstring).

        Returns:
            ``{"id", "group", "invitations": [{"token", "invitation"}] (the new ones),
            "replaced": [old ids, in the same order], "held": [ids left]}``.

        Raises:
            NotFound: no such group. BadRequest: a recurring visitor's group, no
                invitation still valid, or a new end not after every one's current end
                and now (nothing is extended).
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields("extension", body, ("expires",))
        expires = checked_seconds("expires", body.get("expires"))
        if expires is None:
            raise BadRequest(
                "expires: the new end is required (Unix seconds)",
                field="expires",
                reason="required",
            )
        with self._atomic() as conn:  # type: ignore[attr-defined]
            group, members = self._group_members(conn, group_id)
            if group["kind"] == "recurring":
                raise BadRequest(
                    "group: a recurring visitor's days are not extended together (each is "
                    "that day's hours): extend one day, or invite the visitor for more days",
                    field="invitation_group",
                    reason="group_recurring",
                )
            live = [m for m in members if m["status"] in ("valid", "upcoming")]
            if not live:
                raise BadRequest(
                    "group: none of its invitations is still valid",
                    field="invitation_group",
                    reason="group_none_valid",
                )
            latest = max(m["expires"] for m in live)
            if expires <= latest:
                raise BadRequest(
                    f"expires: must be after the end of every invitation extended "
                    f"(the latest ends at {latest})",
                    field="expires",
                    reason="group_extend_later",
                )
            made = [
                self.extend_invitation(m["id"], {"expires": expires}, by=by)  # type: ignore[attr-defined]
                for m in live
            ]
        return {
            **self._answer(group, members),
            "invitations": [{"token": d["token"], "invitation": d["invitation"]} for d in made],
            "replaced": [d["replaced"] for d in made],
        }
