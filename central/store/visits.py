"""Invitations made together, and extended: groups, recurring visitors, CSV imports.

What a door can check decides the shape (docs/console.md, "Recurring visitors"): an
invitation is a signed token that carries ONE validity (``not_before`` .. ``expires``,
:class:`portier_common.tokens.InvitationClaims`), which the door checks offline from the
token itself. There is no daily window in a token, and the doors' schedules belong to a
door or a zone (every visitor there), not to one person. So:

* a **recurring** visitor (a contractor every weekday 08:00-17:00 for three weeks) gets one
  invitation per day it comes, each valid that day's hours only, made together as a group;
* a **group** (several names, one host, one validity) gets one invitation per person;
* a **CSV import** is a group of the lines of the file;
* an **extension** cannot change a token already handed out (its end is signed in it):
  it mints a new invitation with the new end (same visitor, host, doors, start) and
  revokes the old one, in one transaction. The old row says ``replaced_by``, the new one
  ``replaces``; the doors learn the new invitation and the revocation in the same delta.

A group's invitations are made in ONE transaction through :meth:`create_invitation` (the
admin API's own method, each call a savepoint): one refused line and nothing is made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import BadRequest, NotFound
from .base import StoreBase
from .db import Connection
from .validate import checked_seconds, checked_text, only_fields

__all__ = ["GROUP_KINDS", "MAX_GROUP", "MAX_OCCURRENCES", "VisitsMixin", "invitation_ids"]

#: How invitations came to be made together.
GROUP_KINDS = ("group", "recurring", "import")
#: The most invitations made in one call (a CSV import's lines, a group's names).
MAX_GROUP = 500
#: The most days of a recurring visitor (one invitation each).
MAX_OCCURRENCES = 92
#: How long a CSV upload waits for its confirmation.
DRAFT_TTL_MS = 3600 * 1000
#: The largest CSV upload kept (characters).
MAX_DRAFT_CHARS = 512 * 1024
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: The fields of an invitation that a group's or a recurring visitor's call shares.
# (No visitor_email: a recurring visitor would get one e-mail per day at once; their codes
# are handed out from the console's list.)
_SHARED = ("visitor", "host", "host_email", "lang", "site", "doors", "zones", "single_use")


def _day(field: str, value: object) -> dt.date:
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a date YYYY-MM-DD", field=field, reason="date")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{field}: must be a date YYYY-MM-DD, got {value!r}", field=field, reason="date"
        ) from None


def _clock(field: str, value: object) -> dt.time:
    if not isinstance(value, str) or len(value) != 5:
        raise BadRequest(f"{field}: must be a time HH:MM", field=field, reason="time")
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{field}: must be a time HH:MM, got {value!r}", field=field, reason="time"
        ) from None


def invitation_ids(answer: dict[str, Any]) -> dict[str, Any]:
    """What an audit row says of invitations made together (a group, a recurring visitor, a
    CSV import): the group's kind and its invitations' ids (never their tokens)."""
    made = answer.get("invitations")
    group = answer.get("group")
    if not isinstance(made, list) or not isinstance(group, dict):
        return {}
    return {
        "kind": group.get("kind"),
        "invitations": [one["invitation"]["id"] for one in made],
    }


class VisitsMixin(StoreBase):
    """Groups of invitations, recurring visitors, extensions, the console's CSV drafts."""

    @contextmanager
    def _atomic(self) -> Iterator[Connection]:
        """One transaction for several store calls: the caller's (the admin API's or the
        console's ``one_transaction``), else one of its own."""
        if self._outer is not None:
            with self._tx() as conn:
                yield conn
        else:
            with self.one_transaction() as conn:
                yield conn

    def _new_group(self, conn: Connection, site: str, kind: str, label: str) -> dict[str, Any]:
        group = {
            "id": "g" + secrets.token_urlsafe(9),
            "site": site,
            "kind": kind,
            "label": label,
            "created_at_ms": self.now_ms(),
        }
        conn.execute(
            "INSERT INTO invitation_groups (id, site, kind, label, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (group["id"], site, kind, label, group["created_at_ms"]),
        )
        return group

    def _create_in_group(
        self,
        conn: Connection,
        group: Mapping[str, Any],
        bodies: Sequence[Mapping[str, Any]],
        by: str | None,
    ) -> list[dict[str, Any]]:
        made = []
        for i, body in enumerate(bodies):
            try:
                one = self.create_invitation(body, by=by)  # type: ignore[attr-defined]
            except BadRequest as exc:
                # The line's own field and reason, and which line (the console's preview).
                raise BadRequest(
                    f"invitations[{i}]: {exc.detail}", **{**exc.extra, "index": i}
                ) from None
            conn.execute(
                "UPDATE invitations SET group_id = ? WHERE id = ?",
                (group["id"], one["invitation"]["id"]),
            )
            one["invitation"]["group_id"] = group["id"]
            made.append(one)
        return made

    # -- groups -------------------------------------------------------------------------

    def create_invitation_group(
        self, body: Mapping[str, Any], *, by: str | None = None
    ) -> dict[str, Any]:
        """Make several invitations together (an ``InvitationGroupCreate`` body:
        ``kind`` group or import, ``label``, ``invitations``: ``InvitationCreate`` bodies),
        all or none. Each is screened against the deny list as :meth:`create_invitation`
        does; *by*: the operator making them (who may not approve one held).

        Returns:
            ``{"id": group id, "group": {...}, "invitations": [{"token", "invitation"}]}``.

        Raises:
            BadRequest: a bad field (named, ``invitations[3]: ...`` for a line): nothing
                is made.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields("invitation group", body, ("kind", "label", "site", "invitations"))
        kind = body.get("kind", "group")
        if kind not in ("group", "import"):
            raise BadRequest("kind: must be group or import", field="kind", reason="choice")
        label = checked_text("label", body.get("label"))
        bodies = body.get("invitations")
        if not isinstance(bodies, list) or not bodies or len(bodies) > MAX_GROUP:
            raise BadRequest(
                f"invitations: must be a list of 1 to {MAX_GROUP} invitations",
                field="invitations",
                reason="too_many",
                max=MAX_GROUP,
            )
        site = body.get("site", self.settings.site)
        for i, one in enumerate(bodies):
            if not isinstance(one, Mapping):
                raise BadRequest(
                    f"invitations[{i}]: must be a JSON object",
                    field="invitations",
                    reason="object",
                    index=i,
                )
            if one.get("site", site) != site:
                raise BadRequest(
                    f"invitations[{i}].site: must be the group's site {site!r}",
                    field="site",
                    reason="same_site",
                    index=i,
                )
        with self._atomic() as conn:
            group = self._new_group(conn, str(site), kind, label)
            made = self._create_in_group(conn, group, [{"site": site, **b} for b in bodies], by)
        return {"id": group["id"], "group": group, "invitations": made}

    def check_invitations(self, bodies: Sequence[Mapping[str, Any]]) -> list[BadRequest | None]:
        """What :meth:`create_invitation` would say of each of *bodies* (its refusal, with
        its ``field`` and ``reason``; None: it would make it), without making any: each is
        tried in a savepoint of a transaction that is then rolled back. The CSV import's
        preview; the confirmation makes them again with :meth:`create_invitation_group`."""
        answers: list[BadRequest | None] = []

        class _Undo(Exception):
            pass

        try:
            with self._atomic():
                for body in bodies:
                    try:
                        self.create_invitation(body)  # type: ignore[attr-defined]
                    except BadRequest as exc:
                        answers.append(exc)
                    else:
                        answers.append(None)
                raise _Undo
        except _Undo:
            pass
        return answers

    def create_recurring_invitations(
        self, body: Mapping[str, Any], *, by: str | None = None
    ) -> dict[str, Any]:
        """One invitation per day a recurring visitor comes (an ``InvitationRecurring``
        body: the shared invitation fields, ``first_day``, ``last_day`` (site dates,
        included), ``days`` (``mon``..``sun``), ``start`` and ``end`` (``HH:MM`` site
        time, the same day) and an optional ``label``). The site's time zone is the
        central's ``time_zone``: a day keeps its hours across a change of summer time.

        Returns:
            as :meth:`create_invitation_group`, kind ``recurring``.

        Raises:
            BadRequest: a bad field (named), no day in the period, or more than
                :data:`MAX_OCCURRENCES` days: nothing is made.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields(
            "recurring invitation",
            body,
            (*_SHARED, "label", "first_day", "last_day", "days", "start", "end"),
        )
        first = _day("first_day", body.get("first_day"))
        last = _day("last_day", body.get("last_day"))
        if last < first:
            raise BadRequest(
                "last_day: must not be before first_day",
                field="last_day",
                reason="not_before",
                other="first_day",
            )
        days = body.get("days", list(_DAYS[:5]))
        if not isinstance(days, list) or not days or not all(d in _DAYS for d in days):
            raise BadRequest(
                f"days: must be a non-empty list of {list(_DAYS)}", field="days", reason="choice"
            )
        start = _clock("start", body.get("start"))
        end = _clock("end", body.get("end"))
        if end <= start:
            raise BadRequest(
                "end: must be after start (the same day)",
                field="end",
                reason="after",
                other="start",
            )
        zone = self.settings.zone
        shared = {key: body[key] for key in _SHARED if key in body}
        bodies: list[dict[str, Any]] = []
        day = first
        while day <= last:
            if _DAYS[day.weekday()] in days:
                if len(bodies) == MAX_OCCURRENCES:
                    raise BadRequest(
                        f"days: more than {MAX_OCCURRENCES} days in the period",
                        field="days",
                        reason="too_many",
                        max=MAX_OCCURRENCES,
                    )
                opens = dt.datetime.combine(day, start, zone)
                closes = dt.datetime.combine(day, end, zone)
                bodies.append(
                    {
                        **shared,
                        "not_before": int(opens.timestamp()),
                        "expires": int(closes.timestamp()),
                    }
                )
            day += dt.timedelta(days=1)
        if not bodies:
            raise BadRequest(
                "days: none of these days falls in the period", field="days", reason="no_days"
            )
        label = body.get("label") or body.get("visitor")
        label = checked_text("label", label if isinstance(label, str) else "")
        site = str(body.get("site", self.settings.site))
        with self._atomic() as conn:
            group = self._new_group(conn, site, "recurring", label)
            made = self._create_in_group(conn, group, bodies, by)
        return {"id": group["id"], "group": group, "invitations": made}

    # -- extension ----------------------------------------------------------------------

    def extend_invitation(
        self, invitation_id: str, body: Mapping[str, Any], *, by: str | None = None
    ) -> dict[str, Any]:
        """Extend an invitation to a new end (an ``InvitationExtend`` body: ``expires``).

        The token handed out carries its end, signed: it cannot change. So this mints a
        new invitation (new id, new token: the visitor needs the new QR code) with the
        same visitor, host, doors, zones, start and use, and the new end; and revokes the
        old one (its revocation is published until the old end, as any revocation). One
        transaction: the doors never see one without the other.

        Returns:
            ``{"id": new id, "replaced": old id, "token", "invitation", "revocation"}``.

        Raises:
            NotFound: no such invitation. BadRequest: revoked or replaced already, a
                single-use invitation already used, or an end not after the current end
                and now.
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
        with self._atomic() as conn:
            row = conn.execute(
                "SELECT i.data, i.host_email, i.visitor_email, i.lang, i.revoked_at, "
                "i.replaced_by, i.group_id, a.state AS approval FROM invitations i "
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
            if row["replaced_by"] is not None:
                raise BadRequest(
                    f"invitation: already replaced by {row['replaced_by']}",
                    field="invitation",
                    reason="replaced",
                    by=row["replaced_by"],
                )
            if row["revoked_at"] is not None:
                raise BadRequest(
                    "invitation: revoked, it cannot be extended",
                    field="invitation",
                    reason="revoked",
                )
            if row["approval"] in ("pending", "refused"):
                # Held by the deny list: its security officer's decision comes first (a
                # refused one is not asked again by extending it).
                raise BadRequest(
                    f"invitation: {row['approval']} approval, it cannot be extended",
                    field="invitation",
                    reason=row["approval"],
                )
            data = json.loads(row["data"])
            used = conn.execute(
                "SELECT 1 FROM used_invitations WHERE id = ?", (invitation_id,)
            ).fetchone()
            if data["single_use"] and used is not None:
                raise BadRequest(
                    "invitation: single use, used already", field="invitation", reason="used"
                )
            if expires <= data["expires"] or expires <= self.now_ms() // 1000:
                raise BadRequest(
                    "expires: must be after the current end and after now",
                    field="expires",
                    reason="extend_later",
                )
            # Everything the invitation was made with but its end (a field added to
            # invitations later must be copied here too).
            new: dict[str, Any] = {
                "visitor": data["visitor"],
                "host": data["host"],
                "site": data["site"],
                "doors": data["doors"],
                "zones": data["zones"],
                "not_before": data["not_before"],
                "expires": expires,
                "single_use": data["single_use"],
                "lang": row["lang"] or "en",
            }
            if row["host_email"]:
                new["host_email"] = row["host_email"]
            if row["visitor_email"]:  # the new QR code is e-mailed as the first was
                new["visitor_email"] = row["visitor_email"]
            made = self.create_invitation(new, by=by)  # type: ignore[attr-defined]
            new_id = made["invitation"]["id"]
            conn.execute(
                "UPDATE invitations SET group_id = ?, replaces = ? WHERE id = ?",
                (row["group_id"], invitation_id, new_id),
            )
            revocation = self.revoke_invitation(invitation_id)  # type: ignore[attr-defined]
            conn.execute(
                "UPDATE invitations SET replaced_by = ? WHERE id = ?", (new_id, invitation_id)
            )
        made["invitation"].update(group_id=row["group_id"], replaces=invitation_id)
        return {"id": new_id, "replaced": invitation_id, **made, "revocation": revocation}

    # -- the console's CSV drafts -------------------------------------------------------

    def save_import_draft(self, session_hash: str, label: str, text: str) -> dict[str, Any]:
        """Keep an uploaded CSV until its confirmation: for this console session only
        (*session_hash*), one at a time (a new upload replaces the session's last),
        :data:`DRAFT_TTL_MS` at most. Returns ``{"id", "sha256"}``.

        Raises:
            BadRequest: more than :data:`MAX_DRAFT_CHARS` characters.
        """
        if len(text) > MAX_DRAFT_CHARS:
            raise BadRequest(
                f"file: more than {MAX_DRAFT_CHARS} characters",
                field="file",
                reason="too_long",
                max=MAX_DRAFT_CHARS,
            )
        now = self.now_ms()
        draft = {
            "id": secrets.token_urlsafe(18),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM import_drafts WHERE session_hash = ? OR created_at_ms < ?",
                (session_hash, now - DRAFT_TTL_MS),
            )
            conn.execute(
                "INSERT INTO import_drafts (id, session_hash, created_at_ms, sha256, label, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (draft["id"], session_hash, now, draft["sha256"], label[:200], text),
            )
        return draft

    def import_draft(self, draft_id: str, session_hash: str) -> dict[str, Any] | None:
        """The draft *draft_id* of this session (``{"id", "sha256", "label", "text"}``),
        None if it is another session's, too old, or gone; its text is checked against
        the digest taken at upload."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT id, session_hash, created_at_ms, sha256, label, data FROM import_drafts "
                "WHERE id = ?",
                (draft_id,),
            ).fetchone()
        if row is None or not secrets.compare_digest(row["session_hash"], session_hash):
            return None
        if row["created_at_ms"] < self.now_ms() - DRAFT_TTL_MS:
            return None
        if hashlib.sha256(row["data"].encode()).hexdigest() != row["sha256"]:
            return None
        return {
            "id": row["id"],
            "sha256": row["sha256"],
            "label": row["label"],
            "text": row["data"],
        }

    def drop_import_draft(self, draft_id: str) -> None:
        """Forget a draft (done, in the transaction that made its invitations)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM import_drafts WHERE id = ?", (draft_id,))
