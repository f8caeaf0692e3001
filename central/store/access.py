"""Access levels as the security office reads them (issue #14): the badges with what they
are (guard or not, revoked, the key version of an NTAG 424 card), the schedules of doors and
zones, the site's holidays, and what the central knows to explain a badge's rights at a door.

Holidays (schema 15, ``holidays``): a site's list of days (``YYYY-MM-DD``, the date in each
schedule's own time zone) on which every schedule of the site is closed all day. They reach
the doors inside the schedules: each schedule the deltas carry has the site's ``holidays``
(``[{date, name}]``), so a change of the list publishes every schedule of the site again, in
the same transaction (docs/central.md "Holidays"); the agent refuses with ``holiday``
(:mod:`portier_common.access`). A badge or a visitor schedule with no schedule is not
affected: holidays close what a schedule opens.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, NotFound
from .base import StoreBase
from .db import Connection
from .deltas import record_change
from .validate import checked_name, checked_text, normalize_uid, only_fields

__all__ = ["AccessMixin", "published_schedule"]

#: A holiday's name: short words ("Christmas", "Site closure").
MAX_HOLIDAY_NAME = 80
#: Badges one list answers at most (the console pages through a search).
MAX_BADGES = 500


def _holidays(conn: Connection, site: str) -> list[dict[str, str]]:
    return [
        {"date": row["day"], "name": row["name"]}
        for row in conn.execute(
            "SELECT day, name FROM holidays WHERE site = ? ORDER BY day", (site,)
        ).fetchall()
    ]


def published_schedule(conn: Connection, schedule: Mapping[str, Any]) -> dict[str, Any]:
    """*schedule* as the doors receive it: with its site's holidays."""
    return {**schedule, "holidays": _holidays(conn, schedule["site"])}


def checked_day(field: str, value: object) -> str:
    """A calendar date ``YYYY-MM-DD``.

    Raises:
        BadRequest: anything else, naming *field*.
    """
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError(value)
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise BadRequest(
            f"{field}: must be a date YYYY-MM-DD, got {value!r}", field=field, reason="date"
        ) from None


def _public_badge(badge: Mapping[str, Any]) -> dict[str, Any]:
    """A badge as an operator may read it: a guard's PIN hash is never shown (only that
    there is one)."""
    shown = {key: value for key, value in badge.items() if key != "pin_hash"}
    shown["has_pin"] = bool(badge.get("pin_hash"))
    return shown


class AccessMixin(StoreBase):
    """Badges listed, holidays, schedules listed, and the facts of a badge's rights."""

    # -- badges -----------------------------------------------------------------

    def list_badges(
        self, search: str | None = None, *, site: str | None = None, limit: int = MAX_BADGES
    ) -> list[dict[str, Any]]:
        """The badges of *site* (default: this central's), holder order; *search* keeps
        those whose holder, UID, door, zone or guard id contains it (case-insensitive).

        Each badge is its stored record without ``pin_hash`` (``has_pin`` instead), with
        ``revoked`` (``revoked_at``: Unix seconds or None), ``key_version`` and
        ``issue_state`` (an NTAG 424 card issued at the Pass Office, else None).
        """
        site = checked_name("site", site if site is not None else self.settings.site)
        needle = (search or "").strip().casefold()
        with self._read() as conn:
            rows = conn.execute("SELECT uid, data FROM badges WHERE site = ?", (site,)).fetchall()
            revoked = {
                row["id"]: json.loads(row["data"]).get("revoked_at")
                for row in conn.execute(
                    "SELECT id, data FROM revocations WHERE kind = 'badge' AND site = ?", (site,)
                ).fetchall()
            }
            issues = {
                row["uid"]: (row["key_version"], row["state"])
                for row in conn.execute(
                    "SELECT uid, key_version, state FROM badge_issues WHERE site = ?", (site,)
                ).fetchall()
            }
        badges = []
        for row in rows:
            badge = json.loads(row["data"])
            haystack = " ".join(
                [
                    badge.get("holder", ""),
                    row["uid"],
                    *badge.get("doors", []),
                    *badge.get("zones", []),
                    str(badge.get("guard_id", "")),
                ]
            ).casefold()
            if needle and needle not in haystack:
                continue
            version, state = issues.get(row["uid"], (None, None))
            badges.append(
                {
                    **_public_badge(badge),
                    "revoked": row["uid"] in revoked,
                    "revoked_at": revoked.get(row["uid"]),
                    "key_version": version,
                    "issue_state": state,
                }
            )
        badges.sort(key=lambda b: (b["holder"].casefold(), b["uid"]))
        return badges[:limit]

    def get_badge(self, uid: str) -> dict[str, Any]:
        """One badge as :meth:`list_badges` shows it, with ``pin_hash`` kept back.

        Raises:
            BadRequest: a malformed UID. NotFound: no such badge.
        """
        uid = normalize_uid(uid)
        with self._read() as conn:
            row = conn.execute("SELECT site FROM badges WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            raise NotFound(f"no badge {uid}", field="badge", reason="not_found", name=uid)
        found = [b for b in self.list_badges(uid, site=row["site"]) if b["uid"] == uid]
        if not found:  # pragma: no cover - deleted between the two reads
            raise NotFound(f"no badge {uid}", field="badge", reason="not_found", name=uid)
        return found[0]

    def badge_pin_hash(self, uid: str) -> str | None:
        """The stored PIN hash of a guard's badge (to keep it when the badge is edited
        without a new PIN); never shown to anyone."""
        uid = normalize_uid(uid)
        with self._read() as conn:
            row = conn.execute("SELECT data FROM badges WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            return None
        value = json.loads(row["data"]).get("pin_hash")
        return value if isinstance(value, str) else None

    # -- schedules and holidays ---------------------------------------------------

    def list_schedules(self, site: str | None = None) -> list[dict[str, Any]]:
        """The schedules of *site* (one per door or zone), by id, as ``put_schedule`` took
        them (``{id, site, timezone, rules}``)."""
        site = checked_name("site", site if site is not None else self.settings.site)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT data FROM schedules WHERE site = ? ORDER BY id", (site,)
            ).fetchall()
        return [json.loads(row["data"]) for row in rows]

    def list_holidays(self, site: str | None = None) -> list[dict[str, str]]:
        """The holidays of *site*, by date: ``[{date, name}]``."""
        site = checked_name("site", site if site is not None else self.settings.site)
        with self._read() as conn:
            return _holidays(conn, site)

    def put_holiday(self, day: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Add (or rename) the holiday of *day* (``YYYY-MM-DD``) from ``{name, site?}``;
        every schedule of the site is published again with it. Returns ``{site, date,
        name, schedules}`` (``schedules``: how many were published again).

        Raises:
            BadRequest: a bad field (named).
        """
        day = checked_day("date", day)
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields("holiday", body, ("site", "name"))
        site = checked_name("site", body.get("site", self.settings.site))
        name = body.get("name")
        if isinstance(name, str):
            name = " ".join(name.split())
        name = checked_text("name", name)
        if len(name) > MAX_HOLIDAY_NAME:
            raise BadRequest(
                f"name: must be at most {MAX_HOLIDAY_NAME} characters",
                field="name",
                reason="too_long",
                max=MAX_HOLIDAY_NAME,
            )
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO holidays (site, day, name) VALUES (?, ?, ?) "
                "ON CONFLICT (site, day) DO UPDATE SET name = excluded.name",
                (site, day, name),
            )
            count = self._publish_schedules(conn, site)
        return {"site": site, "date": day, "name": name, "schedules": count}

    def delete_holiday(self, day: str, site: str | None = None) -> dict[str, Any]:
        """Remove the holiday of *day*; every schedule of the site is published again.

        Raises:
            BadRequest: a bad date or site. NotFound: no holiday that day.
        """
        day = checked_day("date", day)
        site = checked_name("site", site if site is not None else self.settings.site)
        with self._tx() as conn:
            row = conn.execute(
                "DELETE FROM holidays WHERE site = ? AND day = ? RETURNING name", (site, day)
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"no holiday on {day} at site {site!r}",
                    field="holiday",
                    reason="not_found",
                    name=day,
                )
            count = self._publish_schedules(conn, site)
        return {"site": site, "date": day, "name": row["name"], "schedules": count}

    @staticmethod
    def _publish_schedules(conn: Connection, site: str) -> int:
        rows = conn.execute(
            "SELECT id, data FROM schedules WHERE site = ? ORDER BY id", (site,)
        ).fetchall()
        for row in rows:
            record_change(
                conn, site, "schedule", row["id"], published_schedule(conn, json.loads(row["data"]))
            )
        return len(rows)

    # -- what a badge's rights at a door depend on ---------------------------------

    def rights_facts(self, uid: str, door: str, site: str | None = None) -> dict[str, Any]:
        """What the central knows that decides whether badge *uid* opens *door*: the badge
        (no PIN hash) and whether it is revoked, the door's zones (its enrolled devices'),
        its settings (mode, ``mode_set``, ``accept``), the site's schedules with their
        holidays, and the time zone. :mod:`central.rights` decides with it.

        Raises:
            BadRequest: a malformed UID or door name. NotFound: no such badge.
        """
        uid = normalize_uid(uid)
        door = checked_name("door", door)
        site = checked_name("site", site if site is not None else self.settings.site)
        with self._read() as conn:
            row = conn.execute("SELECT site, data FROM badges WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                raise NotFound(f"no badge {uid}", field="badge", reason="not_found", name=uid)
            badge = json.loads(row["data"])
            revoked = (
                conn.execute(
                    "SELECT 1 FROM revocations WHERE kind = 'badge' AND id = ?", (uid,)
                ).fetchone()
                is not None
            )
            zones: set[str] = set()
            known = False
            for device in conn.execute(
                "SELECT zones FROM devices WHERE site = ? AND door = ? "
                "AND credential_hash IS NOT NULL",
                (site, door),
            ).fetchall():
                known = True
                zones.update(json.loads(device["zones"] or "[]"))
            settings_row = conn.execute(
                "SELECT data FROM door_settings WHERE site = ? AND door = ?", (site, door)
            ).fetchone()
            schedules = {
                s["id"]: published_schedule(conn, json.loads(s["data"]))
                for s in conn.execute(
                    "SELECT id, data FROM schedules WHERE site = ?", (site,)
                ).fetchall()
            }
        return {
            "site": site,
            "door": door,
            "door_known": known or settings_row is not None,
            "zones": sorted(zones),
            "door_settings": {}
            if settings_row is None
            else json.loads(settings_row["data"])["settings"],
            "badge": _public_badge(badge),
            "badge_site": row["site"],
            "revoked": revoked,
            "schedules": schedules,
            "time_zone": self.settings.time_zone,
        }
