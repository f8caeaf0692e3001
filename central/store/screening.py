"""The site's deny list, the screening of every new invitation against it, the security
officer's approval, and the visitor's invitation e-mail (issue #14).

Screening is here, in the store, so that every way an invitation is made (the admin API, the
console, an import) is screened by the same code: :meth:`CredentialsMixin.create_invitation`
calls :meth:`ScreeningMixin._screen` in its own transaction.

Names are compared by :func:`name_key`: Unicode NFKD with the accents (combining marks)
dropped, a few letters NFKD keeps whole spelled out (``Œ`` ``oe``, ``ß`` ``ss``, ``Ø`` ``o``),
case-folded, every run of what is not a letter or a digit (spaces, hyphens, apostrophes,
dots) one separator, and the words sorted: "DU CHÂTELET Émilie", "Emilie du Chatelet" and
"du Châtelet-Émilie" have the same key. An invitation matches an entry when every word of the
entry is among the visitor's words (so a middle name the Pass Office adds still matches);
an entry of one word matches only a visitor of that one word (a bare surname would hold half
the site's visitors).

An invitation that matches is stored **pending approval**: no token is minted for it (the
door verifies a token offline, by its signature alone, so a token that exists can open the
door), nothing goes to the doors' deltas, no e-mail is queued. A security officer other than
the operator who created it approves it (it is published to the doors then, and its e-mail
queued) or refuses it (it stays unpublished, marked revoked), with a reason; the server and
the console record each decision in the audit log in the decision's transaction.

The visitor's e-mail is a row of the central's one outbox (:mod:`central.store.notify`,
channel ``invitation``, device ``central``): the sender (:mod:`central.notify`) renders the
PDF when it sends, with the token minted again from the stored invitation
(:meth:`ScreeningMixin.invitation_token`: Ed25519 signatures are deterministic, so it is the
same text the creation answered).
"""

from __future__ import annotations

import json
import re
import secrets
import unicodedata
from collections import Counter
from collections.abc import Mapping
from typing import Any

from portier_common.tokens import InvitationClaims, mint
from portier_common.tokens.keys import SigningKey

from ..errors import BadRequest, Forbidden, NotFound, NotIssued
from .base import StoreBase, dumps
from .db import Connection
from .deltas import record_change
from .keys import active_key
from .validate import checked_text, only_fields

__all__ = ["INVITATION_CHANNEL", "ScreeningMixin", "name_key", "names_match"]

#: The outbox channel of a visitor's invitation e-mail (central/notify.py sends it).
INVITATION_CHANNEL = "invitation"
#: The outbox "device" of rows the central itself queues (not from a door's upload).
CENTRAL_DEVICE = "central"
_SPELLED = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ø": "o", "Ø": "o", "ł": "l",
     "Ł": "l", "đ": "d", "Đ": "d", "ð": "d", "þ": "th", "ı": "i"}
)  # fmt: skip
_SEPARATORS = re.compile(r"[\W_]+")
_MAX_REASON = 500


def name_key(name: str) -> tuple[str, ...]:
    """The words of *name* as the deny list compares them (see the module), sorted."""
    text = unicodedata.normalize("NFKD", name.translate(_SPELLED))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.translate(_SPELLED).casefold()
    return tuple(sorted(word for word in _SEPARATORS.split(text) if word))


def names_match(entry: tuple[str, ...], visitor: tuple[str, ...]) -> bool:
    """Whether the deny-list entry's words *entry* name the visitor of words *visitor*."""
    if not entry:
        return False
    if len(entry) == 1:
        return entry == visitor
    return not Counter(entry) - Counter(visitor)


def _reason(body: Mapping[str, Any]) -> str:
    reason = " ".join(str(body.get("reason") or "").split())
    if not reason:
        raise BadRequest(
            "reason: say why (it goes to the audit log)", field="reason", reason="required"
        )
    return reason[:_MAX_REASON]


class ScreeningMixin(StoreBase):
    """The deny list, approvals of screened invitations, and invitation tokens and e-mails."""

    # -- the deny list ---------------------------------------------------------------

    def deny_list(self) -> list[dict[str, Any]]:
        """The site's deny list, newest first: ``{id, name, reason, added_by, added_ms}``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, name, reason, added_by, added_ms FROM deny_list "
                "ORDER BY added_ms DESC, id"
            ).fetchall()
        return [dict(row) for row in rows]

    def add_deny_entry(self, body: Mapping[str, Any], *, by: str) -> dict[str, Any]:
        """Add a person to the deny list (``{name, reason}``); return the entry.

        Raises:
            BadRequest: no name (or one with no letter), no reason, an unknown field.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields("deny-list entry", body, ("name", "reason"))
        name = checked_text("name", body.get("name"))
        if not name or not name_key(name):
            raise BadRequest("name: give the person's name", field="name", reason="required")
        entry = {
            "id": "d" + secrets.token_urlsafe(9),
            "name": " ".join(name.split()),
            "reason": _reason(body),
            "added_by": by,
            "added_ms": self.now_ms(),
        }
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO deny_list (id, name, name_key, reason, added_by, added_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry["id"],
                    entry["name"],
                    " ".join(name_key(name)),
                    entry["reason"],
                    by,
                    entry["added_ms"],
                ),
            )
        return entry

    def remove_deny_entry(self, entry_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Take an entry off the deny list with a reason (``{reason}``); return
        ``{id, name, reason}`` (the removal's reason, for the audit row).

        Raises:
            NotFound: no such entry. BadRequest: no reason.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields("deny-list removal", body, ("reason",))
        reason = _reason(body)
        with self._tx() as conn:
            row = conn.execute(
                "DELETE FROM deny_list WHERE id = ? RETURNING name", (entry_id,)
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"no deny-list entry {entry_id!r}",
                    field="deny_entry",
                    reason="not_found",
                    name=entry_id,
                )
        return {"id": entry_id, "name": row["name"], "reason": reason}

    # -- screening (create_invitation's transaction) ------------------------------------

    def _screen(self, conn: Connection, visitor: str) -> dict[str, Any] | None:
        """The deny-list entry that names *visitor*, if any (the oldest)."""
        words = name_key(visitor)
        rows = conn.execute(
            "SELECT id, name, name_key FROM deny_list ORDER BY added_ms, id"
        ).fetchall()
        for row in rows:
            if names_match(tuple(row["name_key"].split()), words):
                return {"id": row["id"], "name": row["name"]}
        return None

    def _hold(
        self, conn: Connection, invitation_id: str, entry: Mapping[str, Any], by: str | None
    ) -> None:
        """Record that *invitation_id* awaits approval because of the deny-list *entry*."""
        conn.execute(
            "INSERT INTO invitation_approvals (invitation_id, entry_id, entry_name, state, "
            "requested_by, requested_ms) VALUES (?, ?, ?, 'pending', ?, ?)",
            (invitation_id, entry["id"], entry["name"], by or "", self.now_ms()),
        )

    # -- approvals -------------------------------------------------------------------

    def pending_invitations(self) -> list[dict[str, Any]]:
        """The invitations awaiting a security officer, oldest first: the invitation's
        fields plus ``entry_id``, ``entry_name`` (the deny-list entry it matched),
        ``entry_reason`` (None once the entry was removed), ``requested_by``,
        ``requested_ms``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT i.data, i.lang, i.visitor_email, i.host_email, a.entry_id, a.entry_name, "
                "a.requested_by, a.requested_ms, d.reason AS entry_reason "
                "FROM invitation_approvals a JOIN invitations i ON i.id = a.invitation_id "
                "LEFT JOIN deny_list d ON d.id = a.entry_id "
                "WHERE a.state = 'pending' ORDER BY a.requested_ms, a.invitation_id"
            ).fetchall()
        return [
            {
                **json.loads(row["data"]),
                "lang": row["lang"] or "en",
                "host_email": row["host_email"],
                "visitor_email": row["visitor_email"],
                "entry_id": row["entry_id"],
                "entry_name": row["entry_name"],
                "entry_reason": row["entry_reason"],
                "requested_by": row["requested_by"],
                "requested_ms": row["requested_ms"],
            }
            for row in rows
        ]

    def decide_invitation(
        self, invitation_id: str, body: Mapping[str, Any], *, by: str
    ) -> dict[str, Any]:
        """Approve or refuse an invitation awaiting approval (``{decision: "approve" |
        "refuse", reason}``). Approved: published to the doors (the deltas) and its e-mail
        queued; refused: marked revoked, never published. Returns ``{id, decision, reason,
        visitor}``.

        Raises:
            NotFound: no such invitation. NotIssued: it awaits no decision (not screened
            out, or decided already). Forbidden: *by* created it (someone else decides).
            BadRequest: a bad decision or no reason.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields("decision", body, ("decision", "reason"))
        decision = body.get("decision")
        if decision not in ("approve", "refuse"):
            raise BadRequest(
                f"decision: 'approve' or 'refuse', got {decision!r}",
                field="decision",
                reason="choice",
            )
        reason = _reason(body)
        now = self.now_ms()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT i.site, i.data, i.visitor_email, i.lang, a.state, a.requested_by "
                "FROM invitations i LEFT JOIN invitation_approvals a ON a.invitation_id = i.id "
                "WHERE i.id = ?",
                (invitation_id,),
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"no invitation {invitation_id!r}",
                    field="invitation",
                    reason="not_found",
                    name=invitation_id,
                )
            if row["state"] != "pending":
                raise NotIssued(
                    f"invitation {invitation_id} awaits no approval",
                    field="invitation",
                    reason="not_pending",
                )
            if row["requested_by"] and row["requested_by"] == by:
                raise Forbidden(
                    "you created this invitation: another security officer approves or refuses it",
                    field="invitation",
                    reason="own_invitation",
                )
            state = "approved" if decision == "approve" else "refused"
            conn.execute(
                "UPDATE invitation_approvals SET state = ?, decided_by = ?, decided_ms = ?, "
                "reason = ? WHERE invitation_id = ?",
                (state, by, now, reason, invitation_id),
            )
            data = json.loads(row["data"])
            if state == "approved":
                record_change(conn, row["site"], "invitation", invitation_id, data)
                if row["visitor_email"]:
                    self._queue_invitation_mail(conn, invitation_id, "created")
            else:
                conn.execute(
                    "UPDATE invitations SET revoked_at = ? WHERE id = ?",
                    (now // 1000, invitation_id),
                )
        return {
            "id": invitation_id,
            "decision": decision,
            "reason": reason,
            "visitor": data["visitor"],
        }

    # -- the token, the PDF and the e-mail -------------------------------------------------

    def invitation_token(self, invitation_id: str) -> dict[str, Any]:
        """The token of an issued invitation, minted again from what is stored, for its PDF
        and its e-mail: ``{token, invitation}`` (the invitation with ``lang``,
        ``visitor_email``).

        Raises:
            NotFound: no such invitation. NotIssued: it awaits approval, was refused or
            revoked, has expired, or its personal data was purged.
        """
        now_s = self.now_ms() // 1000
        with self._read() as conn:
            row = conn.execute(
                "SELECT i.kid, i.data, i.lang, i.visitor_email, i.host_email, i.revoked_at, "
                "i.purged_at_ms, a.state FROM invitations i "
                "LEFT JOIN invitation_approvals a ON a.invitation_id = i.id WHERE i.id = ?",
                (invitation_id,),
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"no invitation {invitation_id!r}",
                    field="invitation",
                    reason="not_found",
                    name=invitation_id,
                )
            if row["state"] in ("pending", "refused"):
                raise NotIssued(
                    f"invitation {invitation_id} "
                    + ("awaits approval" if row["state"] == "pending" else "was refused"),
                    field="invitation",
                    reason=row["state"],
                )
            data = json.loads(row["data"])
            if row["revoked_at"] is not None:
                raise NotIssued(
                    f"invitation {invitation_id} is revoked", field="invitation", reason="revoked"
                )
            if row["purged_at_ms"] is not None or data["expires"] <= now_s:
                raise NotIssued(
                    f"invitation {invitation_id} has expired", field="invitation", reason="expired"
                )
            key = self._signing_key(conn, row["kid"], data["expires"])
        claims = InvitationClaims(
            invitation_id=data["id"],
            visitor=data["visitor"],
            site=data["site"],
            not_before=data["not_before"],
            expires=data["expires"],
            single_use=data["single_use"],
            doors=tuple(data["doors"]),
            zones=tuple(data["zones"]),
            host=data["host"],
        )
        invitation = {
            **data,
            "lang": row["lang"] or "en",
            "visitor_email": row["visitor_email"],
            "host_email": row["host_email"],
        }
        return {"token": mint(claims, key), "invitation": invitation}

    @staticmethod
    def _signing_key(conn: Connection, kid: str, until_s: int) -> SigningKey:
        """The key that signed an invitation; the active one if the doors stop trusting
        that one before the invitation ends (a rotation since)."""
        row = conn.execute(
            "SELECT kid, private_key, not_after FROM signing_keys WHERE kid = ?", (kid,)
        ).fetchone()
        if row is None or (row["not_after"] is not None and row["not_after"] < until_s):
            return active_key(conn)[1]
        return SigningKey.from_private_bytes(row["kid"], row["private_key"])

    def resend_invitation(self, invitation_id: str) -> dict[str, Any]:
        """Queue the visitor's invitation e-mail again; return ``{id, visitor_email}``.

        Raises:
            NotFound, NotIssued (see :meth:`invitation_token`), BadRequest: the invitation
            has no visitor e-mail.
        """
        found = self.invitation_token(invitation_id)  # refuses what has no token to send
        email = found["invitation"]["visitor_email"]
        if not email:
            raise BadRequest(
                "visitor_email: this invitation has no visitor e-mail to send to",
                field="visitor_email",
                reason="no_visitor_email",
            )
        with self._tx() as conn:
            self._queue_invitation_mail(conn, invitation_id, "resend")
        return {"id": invitation_id, "visitor_email": email}

    def _queue_invitation_mail(self, conn: Connection, invitation_id: str, why: str) -> None:
        """One outbox row for the visitor's e-mail (the sender reads the invitation when it
        sends: a revocation meanwhile cancels it)."""
        now = self.now_ms()
        event_id = f"{invitation_id}/{why}-{now}-{secrets.token_hex(3)}"
        data = {"event_id": event_id, "invitation_id": invitation_id, "why": why}
        conn.execute(
            "INSERT INTO notifications (device_id, event_id, channel, invitation_id, "
            "created_ms, status, next_at_ms, data) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
            (CENTRAL_DEVICE, event_id, INVITATION_CHANNEL, invitation_id, now, now, dumps(data)),
        )
