"""What the console's statistics and its on-site pages read (central/console/stats.py,
central/console/onsite.py): counts of stored events over a period, each device's contact
over time, and who is on site now, worked out from the check-ins and check-outs the doors
uploaded. Reads only.

Time. An event's time is the device's wall clock, else its reception
(:data:`EVENT_TIME`: the very expression schema 14's index ``events_kind_time`` holds, so a
period of a year of events is read through the index, never the whole table). Counts come
back per **quarter hour** (Unix ms // :data:`QUARTER_MS`): every time zone's offset is a
whole number of quarter hours, so the console sorts them into the site's days and hours
(``time_zone``, daylight saving included) without SQL that differs between SQLite and
PostgreSQL, and a period of 90 days is at most 8,640 rows per series.

Who is on site. Each door keeps its own list (``edge_agent/onsite.py``): a visitor checked
in there (``visitor.checked_in``) and not checked out since (``visitor.checked_out``: at
the kiosk, by a guard, or by the door itself when the invitation ended, ``how: expired``).
The upload keeps the same list per device in ``onsite_visits`` (:func:`record_visit`, in
the transaction that stores the event, in the device's journal order), so the central shows
what each door's muster screen shows -- as far as the door has uploaded -- and
:meth:`StatsMixin.on_site` reads the visits open now, not every check-in ever.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .base import StoreBase
from .db import Connection

__all__ = ["EVENT_TIME", "QUARTER_MS", "StatsMixin", "rebuild_onsite_visits", "record_visit"]

#: A quarter hour in ms: the unit of the counts and of each device's contact.
QUARTER_MS = 900_000
#: An event's time, written exactly as schema 14's index ``events_kind_time`` has it.
EVENT_TIME = "coalesce(wall_ms, received_at_ms)"
CHECKED_IN = "visitor.checked_in"
CHECKED_OUT = "visitor.checked_out"
DECISION = "access.decision"
OPEN_REFUSED = "access.open_refused"
ALARM_RAISED = "alarm.raised"
# Payloads are stored in canonical JSON (docs/journal.md: no whitespace, keys sorted), so
# a grant or a refusal is this exact text; a string value holding it would be escaped
# (``\\"granted\\"``). Filtering on it first spares reading the JSON of every decision.
_GRANTED = '%"granted":true%'
_REFUSED = '%"granted":false%'


def _payload(text: object) -> dict[str, Any]:
    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def record_visit(
    conn: Connection, device_id: str, seq: int, kind: object, payload: Mapping[str, Any]
) -> None:
    """Keep ``onsite_visits`` (schema 14) as the door keeps its list: a stored
    ``visitor.checked_in`` puts (or puts again) the visit of its invitation at this device, a
    ``visitor.checked_out`` ends it. Called by the upload for each event it stores, in its
    transaction; a device's events are placed in its journal order, so the latest wins."""
    ident = payload.get("invitation_id")
    if not isinstance(ident, str) or kind not in (CHECKED_IN, CHECKED_OUT):
        return
    if kind == CHECKED_IN:
        conn.execute(
            "INSERT INTO onsite_visits (device_id, invitation_id, seq) VALUES (?, ?, ?) "
            "ON CONFLICT (device_id, invitation_id) DO UPDATE SET seq = excluded.seq",
            (device_id, ident, seq),
        )
    else:
        conn.execute(
            "DELETE FROM onsite_visits WHERE device_id = ? AND invitation_id = ?",
            (device_id, ident),
        )


def rebuild_onsite_visits(conn: Connection) -> None:
    """Schema 14's step in Python: ``onsite_visits`` from the events stored before it (every
    check-in and check-out, each device's in journal order), once."""
    conn.execute("DELETE FROM onsite_visits")
    rows = conn.execute(
        "SELECT device_id, seq, type, payload FROM events WHERE type IN (?, ?) "
        "AND status = 'stored' ORDER BY device_id, seq",
        (CHECKED_IN, CHECKED_OUT),
    )
    for row in list(rows):
        record_visit(conn, row["device_id"], row["seq"], row["type"], _payload(row["payload"]))


class StatsMixin(StoreBase):
    """Counts over a period, devices' contact, and who is on site."""

    def _json_text(self, key: str) -> str:
        """SQL for the text of the payload's field *key* (a constant of this module)."""
        if self._db.dialect == "postgresql":
            return f"(payload::jsonb ->> '{key}')"
        return f"json_extract(payload, '$.{key}')"

    def _quarters(
        self, conn: Connection, kind: str, since_ms: int, until_ms: int, like: str | None = None
    ) -> dict[int, int]:
        where = f"type = ? AND {EVENT_TIME} >= ? AND {EVENT_TIME} < ? AND status = 'stored'"
        args: list[Any] = [kind, since_ms, until_ms]
        if like is not None:
            where += " AND payload LIKE ?"
            args.append(like)
        rows = conn.execute(
            f"SELECT {EVENT_TIME} / {QUARTER_MS} AS quarter, count(*) AS n FROM events "
            f"WHERE {where} GROUP BY {EVENT_TIME} / {QUARTER_MS}",
            args,
        ).fetchall()
        return {int(row["quarter"]): int(row["n"]) for row in rows}

    def event_counts(self, since_ms: int, until_ms: int) -> dict[str, Any]:
        """Return the counts of the period ``[since_ms, until_ms)`` (event time, above).

        ``checkins`` and ``entries`` (granted access decisions): ``{quarter: count}``;
        ``denies``: ``[(source, reason, count)]``, source ``decision`` (a credential
        refused: ``reason``) or ``open_refused`` (a grant the door would not open:
        ``reason_code``, lockdown or fire); ``alarms``: ``[(device_id, door, alarm,
        count)]`` of ``alarm.raised`` (the door's own alarms: forced, held open, tamper...).
        """
        reason = self._json_text("reason")
        reason_code = self._json_text("reason_code")
        alarm, door = self._json_text("alarm"), self._json_text("door")
        period = f"{EVENT_TIME} >= ? AND {EVENT_TIME} < ? AND status = 'stored'"
        with self._read() as conn:
            checkins = self._quarters(conn, CHECKED_IN, since_ms, until_ms)
            # Entries and refusals in one pass over the period's decisions (the larger part
            # of all events): a refusal's reason is read from its JSON, a grant's is not.
            entries: dict[int, int] = {}
            refused: dict[str, int] = {}
            for row in conn.execute(
                f"SELECT {EVENT_TIME} / {QUARTER_MS} AS quarter, "
                f"CASE WHEN payload LIKE ? THEN NULL ELSE coalesce({reason}, '') END AS why, "
                f"count(*) AS n FROM events WHERE type = ? AND {period} "
                "AND (payload LIKE ? OR payload LIKE ?) GROUP BY 1, 2",
                (_GRANTED, DECISION, since_ms, until_ms, _GRANTED, _REFUSED),
            ):
                if row["why"] is None:
                    entries[int(row["quarter"])] = int(row["n"])
                else:
                    refused[str(row["why"])] = refused.get(str(row["why"]), 0) + int(row["n"])
            denies = [("decision", why, n) for why, n in refused.items()]
            denies += [
                ("open_refused", str(row["reason"] or ""), int(row["n"]))
                for row in conn.execute(
                    f"SELECT {reason_code} AS reason, count(*) AS n FROM events "
                    f"WHERE type = ? AND {period} GROUP BY {reason_code}",
                    (OPEN_REFUSED, since_ms, until_ms),
                )
            ]
            rows = conn.execute(
                f"SELECT a.device_id, a.alarm, a.door, a.n, d.door AS device_door FROM "
                f"(SELECT device_id, {alarm} AS alarm, {door} AS door, count(*) AS n "
                f"FROM events WHERE type = ? AND {period} "
                f"GROUP BY device_id, {alarm}, {door}) a "
                "LEFT JOIN devices d ON d.device_id = a.device_id",
                (ALARM_RAISED, since_ms, until_ms),
            ).fetchall()
        alarms = [
            (
                row["device_id"],
                str(row["door"] or row["device_door"] or row["device_id"]),
                str(row["alarm"] or ""),
                int(row["n"]),
            )
            for row in rows
        ]
        return {"checkins": checkins, "entries": entries, "denies": denies, "alarms": alarms}

    def device_availability(self, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """Return each device's contact over ``[since_ms, until_ms)``, by door: ``device_id``,
        ``door``, ``enabled``, ``heard`` (quarter hours with a heartbeat) and ``quarters``
        (the quarter hours of the period it was enrolled in, up to now)."""
        first = since_ms // QUARTER_MS
        last = -(-min(until_ms, self.now_ms()) // QUARTER_MS)  # the current one counts
        with self._read() as conn:
            devices = conn.execute(
                "SELECT device_id, door, enabled, enrolled_at_ms FROM devices "
                "ORDER BY door, device_id"
            ).fetchall()
            heard = {
                row["device_id"]: int(row["n"])
                for row in conn.execute(
                    "SELECT device_id, count(*) AS n FROM device_contact "
                    "WHERE quarter >= ? AND quarter < ? GROUP BY device_id",
                    (first, last),
                )
            }
        return [
            {
                "device_id": row["device_id"],
                "door": row["door"],
                "enabled": bool(row["enabled"]),
                "heard": heard.get(row["device_id"], 0),
                "quarters": max(0, last - max(first, row["enrolled_at_ms"] // QUARTER_MS)),
            }
            for row in devices
        ]

    def on_site(self) -> list[dict[str, Any]]:
        """Return who is on site now, as the doors' own lists (module docstring): one entry
        per door and visit, oldest entry first: ``device_id``, ``door``, ``zones`` (the
        door's), ``invitation_id``, ``visitor``, ``host``, ``entered_ms``, ``not_after``
        (seconds, the invitation's end, or None) and ``how`` (``by`` of the check-in)."""
        with self._read() as conn:
            # The open visits (kept by the upload, record_visit) and their check-ins: the
            # cost is that of the people on site, not of the years of check-ins behind them.
            rows = conn.execute(
                "SELECT v.device_id, e.payload, coalesce(e.wall_ms, e.received_at_ms) AS at_ms "
                "FROM onsite_visits v JOIN events e ON e.device_id = v.device_id "
                "AND e.seq = v.seq"
            ).fetchall()
            devices = {
                row["device_id"]: row
                for row in conn.execute("SELECT device_id, door, zones FROM devices")
            }
            visits: dict[tuple[str, str], dict[str, Any]] = {}
            for row in rows:
                payload = _payload(row["payload"])
                ident = payload.get("invitation_id")
                if isinstance(ident, str):
                    visits[(row["device_id"], ident)] = {"row": row, "payload": payload}
            entries = [self._entry(key, visit, devices) for key, visit in visits.items()]
            self._fill_from_invitations(conn, entries)
        entries.sort(key=lambda e: (e["entered_ms"], e["door"], e["visitor"].casefold()))
        return entries

    @staticmethod
    def _entry(
        key: tuple[str, str], visit: dict[str, Any], devices: dict[str, Any]
    ) -> dict[str, Any]:
        device_id, ident = key
        payload, row = visit["payload"], visit["row"]
        device = devices.get(device_id)
        door = payload.get("door")
        zones: list[str] = []
        if device is not None:
            door = door if isinstance(door, str) else device["door"]
            zones = [str(z) for z in json.loads(device["zones"] or "[]")]
        not_after = payload.get("not_after")
        return {
            "device_id": device_id,
            "door": door if isinstance(door, str) else device_id,
            "zones": zones,
            "invitation_id": ident,
            "visitor": payload["visitor"] if isinstance(payload.get("visitor"), str) else "",
            "host": payload["host"] if isinstance(payload.get("host"), str) else "",
            "entered_ms": int(row["at_ms"]),
            "not_after": not_after
            if isinstance(not_after, int) and not isinstance(not_after, bool)
            else None,
            "how": str(payload.get("by") or ""),
        }

    def _fill_from_invitations(self, conn: Connection, entries: Sequence[dict[str, Any]]) -> None:
        """A check-in that did not carry the visitor's name or host (an older agent, a door
        whose cache missed the invitation) takes them from the invitation, as the door does."""
        wanted = sorted({e["invitation_id"] for e in entries if not e["visitor"] or not e["host"]})
        for start in range(0, len(wanted), 500):
            ids = wanted[start : start + 500]
            rows = conn.execute(
                f"SELECT id, data FROM invitations WHERE id IN ({self._db.marks(len(ids))})", ids
            ).fetchall()
            known = {row["id"]: _payload(row["data"]) for row in rows}
            for entry in entries:
                data = known.get(entry["invitation_id"])
                if data is None:
                    continue
                entry["visitor"] = entry["visitor"] or str(data.get("visitor") or "")
                entry["host"] = entry["host"] or str(data.get("host") or "")
                if entry["not_after"] is None and isinstance(data.get("expires"), int):
                    entry["not_after"] = data["expires"]
