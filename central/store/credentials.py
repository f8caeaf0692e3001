"""Credentials and door configuration: invitations, badges and their revocations,
schedules, door settings.

Each change is one transaction that also appends it to the deltas log
(:func:`central.store.deltas.record_change`), so devices learn it on their next poll;
a revocation is published as its own item (``revocations``) as well as in the
credential's new state.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any

from portier_common.tokens import InvitationClaims, mint
from portier_common.tokens.claims import MAX_SCOPE_ITEMS, MAX_TEXT_CHARS, ClaimsError

from ..errors import BadRequest, NotFound
from .access import published_schedule
from .base import StoreBase, dumps
from .db import Connection
from .deltas import record_change
from .keys import active_key
from .validate import (
    check_door_settings,
    checked_bool,
    checked_name,
    checked_names,
    checked_seconds,
    checked_text,
    guard_fields,
    normalize_uid,
    only_fields,
)

__all__ = ["LANGUAGES", "CredentialsMixin", "checked_email"]

#: The languages of host notifications (central/notify.py templates).
LANGUAGES = ("en", "fr")
#: A plain address (local@domain.tld), no display name, no spaces or angle brackets: what
#: an SMTP envelope recipient takes as it is.
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\Z"
)


def _claims_refusal(body: Mapping[str, Any], not_before: int, expires: int) -> dict[str, Any]:
    """The ``field``/``reason`` of an invitation the claims refused (the claims' own message
    stays the English detail): the same checks as InvitationClaims, in its order."""
    for field, low in (("visitor", 1), ("host", 0)):
        value = body.get(field, "")
        if not isinstance(value, str) or not low <= len(value) <= MAX_TEXT_CHARS:
            return {"field": field, "reason": "text", "min": low, "max": MAX_TEXT_CHARS}
        if not value.isprintable():
            return {"field": field, "reason": "printable"}
    if expires <= not_before:
        return {"field": "expires", "reason": "after", "other": "not_before"}
    if not body.get("doors") and not body.get("zones"):
        return {"field": "doors", "reason": "no_door"}
    if len(body.get("doors") or ()) + len(body.get("zones") or ()) > MAX_SCOPE_ITEMS:
        return {"field": "doors", "reason": "too_many", "max": MAX_SCOPE_ITEMS}
    return {"field": "body", "reason": "claims"}


def checked_email(field: str, value: object) -> str | None:
    """Return *value* if it is None or a plain e-mail address (at most 254 characters).

    Raises:
        BadRequest: anything else, naming *field*.
    """
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL_RE.match(value):
        raise BadRequest(
            f"{field}: must be an e-mail address like host@example.com, got {value!r}",
            field=field,
            reason="email",
        )
    return value


log = logging.getLogger(__name__)

_TIME_RE = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]\Z")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_BADGE_KINDS = ("uid", "ntag424")


class CredentialsMixin(StoreBase):
    """Invitations, badges, revocations, schedules and door settings (the admin API)."""

    # -- invitations ------------------------------------------------------------

    def create_invitation(
        self, body: Mapping[str, Any], *, by: str | None = None
    ) -> dict[str, Any]:
        """Mint a signed invitation (an ``InvitationCreate`` body) with the active key.

        The visitor's name is screened against the deny list (central/store/screening.py):
        a match is stored awaiting a security officer's approval, without a token, not
        published to the doors, not e-mailed. *by*: the operator creating it (who may not
        approve it). With a ``visitor_email``, the invitation's e-mail is queued.

        Returns:
            ``{"token": "PT1:..." (None awaiting approval), "invitation": InvitationDelta
            plus host_email, visitor_email, lang, approval ("pending" or None)}``.

        Raises:
            BadRequest: a bad field (named), or claims the token format refuses.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields(
            "invitation",
            body,
            (
                "visitor",
                "host",
                "host_email",
                "visitor_email",
                "lang",
                "site",
                "doors",
                "zones",
                "not_before",
                "expires",
                "single_use",
            ),
        )
        host_email = checked_email("host_email", body.get("host_email"))
        visitor_email = checked_email("visitor_email", body.get("visitor_email"))
        lang = body.get("lang", "en")
        if lang not in LANGUAGES:
            raise BadRequest(
                f"lang: must be one of {', '.join(LANGUAGES)}, got {lang!r}",
                field="lang",
                reason="choice",
            )
        now_s = self.now_ms() // 1000
        site = checked_name("site", body.get("site", self.settings.site))
        not_before = checked_seconds("not_before", body.get("not_before"))
        not_before = now_s if not_before is None else not_before
        expires = checked_seconds("expires", body.get("expires"))
        if expires is None:
            expires = not_before + self.settings.invitation_default_s
        invitation_id = "i" + secrets.token_urlsafe(9)
        try:
            claims = InvitationClaims(
                invitation_id=invitation_id,
                visitor=body.get("visitor"),  # type: ignore[arg-type]
                site=site,
                not_before=not_before,
                expires=expires,
                single_use=checked_bool("single_use", body.get("single_use", False)),
                doors=tuple(checked_names("doors", body.get("doors"))),
                zones=tuple(checked_names("zones", body.get("zones"))),
                host=body.get("host", ""),
            )
        except ClaimsError as exc:
            raise BadRequest(str(exc), **_claims_refusal(body, not_before, expires)) from None
        with self._tx() as conn:
            row, key = active_key(conn)
            try:
                token = mint(claims, key)
            except ValueError as exc:
                raise BadRequest(str(exc), field="body", reason="claims") from None
            data = {
                "id": invitation_id,
                "site": site,
                "visitor": claims.visitor,
                "host": claims.host,
                "doors": list(claims.doors),
                "zones": list(claims.zones),
                "not_before": claims.not_before,
                "expires": claims.expires,
                "single_use": claims.single_use,
                "kid": row["kid"],
            }
            # The host's e-mail and the language stay here: not in the signed token, not in
            # the deltas the doors receive (only the central tells the host).
            conn.execute(
                "INSERT INTO invitations (id, site, kid, expires, data, host_email, lang, "
                "visitor_email) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    invitation_id,
                    site,
                    row["kid"],
                    expires,
                    dumps(data),
                    host_email,
                    lang,
                    visitor_email,
                ),
            )
            # Screened in this transaction, whoever creates it (API, console, import).
            entry = self._screen(conn, claims.visitor)  # type: ignore[attr-defined]
            if entry is not None:
                self._hold(conn, invitation_id, entry, by)  # type: ignore[attr-defined]
            else:
                record_change(conn, site, "invitation", invitation_id, data)
                if visitor_email is not None:
                    self._queue_invitation_mail(  # type: ignore[attr-defined]
                        conn, invitation_id, "created"
                    )
        extra = {
            "host_email": host_email,
            "visitor_email": visitor_email,
            "lang": lang,
            "approval": None if entry is None else "pending",
        }
        if entry is not None:
            # No token exists for it until a security officer approves it.
            log.info("invitation %s awaits approval (deny list)", invitation_id)
            return {"token": None, "invitation": {**data, **extra}}
        log.info("invitation %s minted", invitation_id)  # no name in logs: retention
        return {"token": token, "invitation": {**data, **extra}}

    def revoke_invitation(self, invitation_id: str) -> dict[str, Any]:
        """Revoke an invitation; idempotent. Return the ``Revocation``.

        Raises:
            NotFound: no such invitation.
        """
        now_s = self.now_ms() // 1000
        with self._tx() as conn:
            row = conn.execute(
                "SELECT site, expires, revoked_at FROM invitations WHERE id = ?", (invitation_id,)
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"no invitation {invitation_id!r}",
                    field="invitation",
                    reason="not_found",
                    name=invitation_id,
                )
            revoked_at = row["revoked_at"] if row["revoked_at"] is not None else now_s
            data = {
                "kind": "invitation",
                "id": invitation_id,
                "revoked_at": revoked_at,
                "expires_at": row["expires"],
            }
            if row["revoked_at"] is None:
                conn.execute(
                    "UPDATE invitations SET revoked_at = ? WHERE id = ?", (now_s, invitation_id)
                )
                self._revoke(conn, row["site"], data)
        return data

    # -- badges -----------------------------------------------------------------

    def put_badge(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Add or replace a badge (a ``BadgeCreate`` body); return the ``Badge``.

        Raises:
            BadRequest: a bad field (named), or no door and no zone.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields(
            "badge",
            body,
            (
                "uid",
                "site",
                "kind",
                "holder",
                "doors",
                "zones",
                "enabled",
                "not_before",
                "not_after",
                "role",
                "pin_hash",
                "guard_id",
                "schedule",
            ),
        )
        uid = normalize_uid(body.get("uid"))
        kind = body.get("kind", "ntag424")
        if kind not in _BADGE_KINDS:
            raise BadRequest(
                f"kind: must be one of {list(_BADGE_KINDS)}", field="kind", reason="choice"
            )
        badge = {
            "uid": uid,
            "site": checked_name("site", body.get("site", self.settings.site)),
            "kind": kind,
            "holder": checked_text("holder", body.get("holder")),
            "doors": checked_names("doors", body.get("doors")),
            "zones": checked_names("zones", body.get("zones")),
            "enabled": checked_bool("enabled", body.get("enabled", True)),
            "not_before": checked_seconds("not_before", body.get("not_before")),
            "not_after": checked_seconds("not_after", body.get("not_after")),
        }
        if not badge["doors"] and not badge["zones"]:
            raise BadRequest(
                "doors: a badge needs at least one door or zone", field="doors", reason="no_door"
            )
        badge.update(guard_fields(body))
        if body.get("schedule") is not None:
            # The door or zone whose schedule limits this badge's hours (the agent applies
            # the schedule a badge names; an unknown one refuses: outside_schedule).
            badge["schedule"] = checked_name("schedule", body["schedule"])
        if (
            badge["not_before"] is not None
            and badge["not_after"] is not None
            and badge["not_after"] < badge["not_before"]
        ):
            raise BadRequest(
                "not_after: must not be before not_before",
                field="not_after",
                reason="not_before",
                other="not_before",
            )
        with self._tx() as conn:
            old = conn.execute("SELECT site FROM badges WHERE uid = ?", (uid,)).fetchone()
            if old is not None and old["site"] != badge["site"]:
                # Moving a badge to another site: the old site's doors forget it.
                record_change(conn, old["site"], "badge", uid, None)
            if badge["enabled"]:
                # Adding a revoked badge again (found again) lifts its revocation.
                self._unrevoke(conn, "badge", uid)
            conn.execute(
                "INSERT INTO badges (uid, site, data) VALUES (?, ?, ?) ON CONFLICT (uid) DO "
                "UPDATE SET site = excluded.site, data = excluded.data",
                (uid, badge["site"], dumps(badge)),
            )
            record_change(conn, badge["site"], "badge", uid, badge)
        return badge

    def revoke_badge(self, uid: str) -> dict[str, Any]:
        """Disable a badge and publish its revocation; idempotent. Return the ``Revocation``.

        Raises:
            BadRequest: a malformed UID. NotFound: no such badge.
        """
        uid = normalize_uid(uid)
        now_s = self.now_ms() // 1000
        with self._tx() as conn:
            row = conn.execute("SELECT site, data FROM badges WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                raise NotFound(f"no badge {uid}", field="badge", reason="not_found", name=uid)
            previous = conn.execute(
                "SELECT data FROM revocations WHERE kind = 'badge' AND id = ?", (uid,)
            ).fetchone()
            if previous is not None:
                return json.loads(previous["data"])
            badge = json.loads(row["data"])
            badge["enabled"] = False
            conn.execute("UPDATE badges SET data = ? WHERE uid = ?", (dumps(badge), uid))
            record_change(conn, row["site"], "badge", uid, badge)
            data = {"kind": "badge", "id": uid, "revoked_at": now_s, "expires_at": None}
            self._revoke(conn, row["site"], data)
        return data

    def _revoke(self, conn: Connection, site: str, data: Mapping[str, Any]) -> None:
        conn.execute(
            "INSERT INTO revocations (kind, id, site, data) VALUES (?, ?, ?, ?)",
            (data["kind"], data["id"], site, dumps(data)),
        )
        record_change(conn, site, "revocation", f"{data['kind']}:{data['id']}", data)

    def _unrevoke(self, conn: Connection, kind: str, item: str) -> None:
        row = conn.execute(
            "DELETE FROM revocations WHERE kind = ? AND id = ? RETURNING site", (kind, item)
        ).fetchone()
        if row is not None:
            record_change(conn, row["site"], "revocation", f"{kind}:{item}", None)

    def delete_badge(self, uid: str) -> None:
        """Forget a badge (it goes out in ``removed.badges``).

        Raises:
            BadRequest: a malformed UID. NotFound: no such badge.
        """
        uid = normalize_uid(uid)
        with self._tx() as conn:
            row = conn.execute("SELECT site FROM badges WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                raise NotFound(f"no badge {uid}", field="badge", reason="not_found", name=uid)
            conn.execute("DELETE FROM badges WHERE uid = ?", (uid,))
            record_change(conn, row["site"], "badge", uid, None)
            self._unrevoke(conn, "badge", uid)

    # -- schedules and door settings ---------------------------------------------

    def put_schedule(self, schedule_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Set the schedule of the door or zone *schedule_id* (a ``ScheduleInput`` body).

        One schedule per door or zone of a site, as the agent's cache keeps them.

        Returns:
            the ``Schedule`` as the doors receive it (with the site's ``holidays``).

        Raises:
            BadRequest: a bad field (named).
        """
        schedule_id = checked_name("schedule_id", schedule_id)
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields("schedule", body, ("site", "timezone", "rules"))
        timezone = body.get("timezone", "UTC")
        if not isinstance(timezone, str) or not timezone or len(timezone) > 64:
            raise BadRequest(
                "timezone: must be an IANA zone name", field="timezone", reason="timezone"
            )
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(timezone)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise BadRequest(
                f"timezone: {timezone!r} is not a known IANA zone",
                field="timezone",
                reason="timezone",
            ) from None
        rules = body.get("rules")
        if not isinstance(rules, list):
            raise BadRequest("rules: must be a list", field="rules", reason="object")
        clean = []
        for i, rule in enumerate(rules):
            if not isinstance(rule, Mapping) or set(rule) != {"days", "start", "end"}:
                raise BadRequest(
                    f"rules[{i}]: must be an object with days, start and end",
                    field="rules",
                    reason="object",
                    index=i,
                )
            days = rule["days"]
            if not isinstance(days, list) or not days or not all(d in _DAYS for d in days):
                raise BadRequest(
                    f"rules[{i}].days: must be a non-empty list of {list(_DAYS)}",
                    field="rules.days",
                    reason="choice",
                    index=i,
                )
            start, end = rule["start"], rule["end"]
            if not isinstance(start, str) or not _TIME_RE.match(start):
                raise BadRequest(
                    f"rules[{i}].start: must be HH:MM", field="rules.start", reason="time", index=i
                )
            if not isinstance(end, str) or not (_TIME_RE.match(end) or end == "24:00"):
                raise BadRequest(
                    f"rules[{i}].end: must be HH:MM or 24:00",
                    field="rules.end",
                    reason="time",
                    index=i,
                )
            if end <= start:
                raise BadRequest(
                    f"rules[{i}].end: must be after start",
                    field="rules.end",
                    reason="after",
                    other="rules.start",
                    index=i,
                )
            clean.append({"days": list(dict.fromkeys(days)), "start": start, "end": end})
        schedule: dict[str, Any] = {
            "id": schedule_id,
            "site": checked_name("site", body.get("site", self.settings.site)),
            "timezone": timezone,
            "rules": clean,
        }
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO schedules (site, id, data) VALUES (?, ?, ?) ON CONFLICT (site, id) "
                "DO UPDATE SET data = excluded.data",
                (schedule["site"], schedule_id, dumps(schedule)),
            )
            published = published_schedule(conn, schedule)
            record_change(conn, schedule["site"], "schedule", schedule_id, published)
        return published

    def delete_schedule(self, schedule_id: str, site: str | None = None) -> None:
        """Remove the schedule of a door or zone (it goes out in ``removed.schedules``).

        Raises:
            BadRequest: a bad site name. NotFound: no such schedule.
        """
        site = checked_name("site", site if site is not None else self.settings.site)
        with self._tx() as conn:
            cursor = conn.execute(
                "DELETE FROM schedules WHERE site = ? AND id = ?", (site, schedule_id)
            )
            if cursor.rowcount == 0:
                raise NotFound(
                    f"no schedule {schedule_id!r} at site {site!r}",
                    field="schedule",
                    reason="not_found",
                    name=schedule_id,
                )
            record_change(conn, site, "schedule", schedule_id, None)

    def put_door_settings(self, door: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the settings of *door* (a ``DoorSettingsInput`` body); return ``DoorSettings``.

        Raises:
            BadRequest: a bad field (named).
        """
        door = checked_name("door", door)
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields("door settings", body, ("site", "settings"))
        site = checked_name("site", body.get("site", self.settings.site))
        settings = body.get("settings")
        if not isinstance(settings, dict):
            raise BadRequest("settings: must be an object", field="settings", reason="object")
        check_door_settings(settings)
        with self._tx() as conn:
            row = conn.execute(
                "SELECT version FROM door_settings WHERE site = ? AND door = ?", (site, door)
            ).fetchone()
            version = 1 if row is None else row["version"] + 1
            data = {"door": door, "site": site, "version": version, "settings": settings}
            conn.execute(
                "INSERT INTO door_settings (site, door, version, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (site, door) DO UPDATE SET version = excluded.version, "
                "data = excluded.data",
                (site, door, version, dumps(data)),
            )
            record_change(conn, site, "door_settings", door, data)
        return data
