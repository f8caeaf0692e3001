"""What the console's security pages read (central/console/): the latest events across
devices with the names they concern, the devices' alarms (from their latest heartbeat) and
their acknowledgements, each device's state, and the technical log (alarm events, self-test
reports, acknowledgements over a period). Reads, and one change: :meth:`acknowledge_alarm`
(schema 9's ``alarm_acks``).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import BadRequest, NotFound
from .base import StoreBase
from .db import Connection, Row
from .validate import checked_name

__all__ = ["EVENT_GROUPS", "TECHNICAL_TYPES", "MonitorMixin", "event_in_group"]

#: The event types of a device's technical log (besides self-tests and acknowledgements).
TECHNICAL_TYPES = (
    "sync.alarm",
    "alarm.raised",
    "alarm.cleared",
    "alarm.acknowledged",
    "agent.started",
    "agent.stopped",
    "journal.gap",
    "journal.damaged",
    "clock.floor_reset",
    "door.mode_restored",
    "mode.changed",
)
#: The live page's filter: a group of event types by the start of their type. The stored
#: list (SQL ``LIKE``) and the pushed stream (:func:`event_in_group`) read this one table.
EVENT_GROUPS: dict[str, tuple[str, ...]] = {
    "access": ("access.", "badge.", "invitation."),
    "visitors": ("visitor.", "pass."),
    "alarms": ("alarm.", "sync.alarm", "journal."),
    "guards": ("guard.",),
    "doors": ("door.", "rex.", "mode."),
    "system": ("agent.", "clock."),
}


def event_in_group(event_type: str, group: str | None) -> bool:
    """Whether an event of *event_type* belongs to *group* (any when None)."""
    return group is None or event_type.startswith(EVENT_GROUPS[group])


#: The longest note an acknowledgement keeps.
MAX_NOTE = 500
#: One raise of an alarm: the same code with a ``since_ms`` this close (a door's alarm is
#: reported with ``since_ms`` worked out again from its age at each heartbeat, so it moves
#: by a few milliseconds; a new raise of the same alarm comes much later).
SAME_RAISE_MS = 10_000


def _payload(text: object) -> dict[str, Any]:
    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _heartbeat(row: Row) -> dict[str, Any]:
    return _payload(row["last_heartbeat"])


def _ack_of(rows: list[Row], since_ms: int) -> dict[str, Any] | None:
    """The acknowledgement of the raise at *since_ms* among *rows* (one code's), or None."""
    for row in rows:
        if abs(row["since_ms"] - since_ms) <= SAME_RAISE_MS:
            return {"operator": row["operator"], "at_ms": row["acked_at_ms"], "note": row["note"]}
    return None


class MonitorMixin(StoreBase):
    """Live events, alarms and their acknowledgements, devices, the technical log."""

    # -- live events ----------------------------------------------------------------

    def live_events(
        self,
        *,
        since_ms: int | None = None,
        limit: int = 50,
        door: str | None = None,
        group: str | None = None,
    ) -> list[dict[str, Any]]:
        """Return the newest *limit* stored events (received at or after *since_ms*, when
        given; of the devices at *door* and of the type *group* of :data:`EVENT_GROUPS`,
        when given), newest first: ``key`` (``device:seq``), ``device_id``, ``door`` (the
        payload's, else the device's), ``device_door`` (the device's), ``seq``, ``type``,
        ``at_ms`` (the device's wall clock, else the reception), ``received_at_ms``,
        ``payload`` and ``name`` (the person: the payload's, else the invitation's visitor).

        Raises:
            BadRequest: *group* is not a group of :data:`EVENT_GROUPS`.
        """
        where = "e.status = 'stored'"
        args: list[object] = []
        if since_ms is not None:
            where += " AND e.received_at_ms >= ?"
            args.append(since_ms)
        if door is not None:
            where += " AND d.door = ?"
            args.append(door)
        if group is not None:
            if group not in EVENT_GROUPS:
                raise BadRequest(
                    f"group: must be one of {list(EVENT_GROUPS)}, got {group!r}",
                    field="group",
                    reason="choice",
                )
            prefixes = EVENT_GROUPS[group]
            where += " AND (" + " OR ".join("e.type LIKE ?" for _ in prefixes) + ")"
            # (No prefix holds a LIKE wildcard, "%" or "_": a test checks.)
            args.extend(prefix + "%" for prefix in prefixes)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT e.device_id, e.seq, e.type, e.payload, e.wall_ms, e.received_at_ms, "
                "d.door FROM events e JOIN devices d ON d.device_id = e.device_id "
                f"WHERE {where} ORDER BY e.received_at_ms DESC, e.device_id, e.seq DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
            events = [self._event(row) for row in rows]
            self._add_names(conn, events)
        return events

    @staticmethod
    def _event(row: Row) -> dict[str, Any]:
        payload = _payload(row["payload"])
        return {
            "key": f"{row['device_id']}:{row['seq']}",
            "device_id": row["device_id"],
            "door": payload.get("door") if isinstance(payload.get("door"), str) else row["door"],
            "device_door": row["door"],
            "seq": row["seq"],
            "type": row["type"] or "",
            "at_ms": row["wall_ms"] if row["wall_ms"] is not None else row["received_at_ms"],
            "received_at_ms": row["received_at_ms"],
            "payload": payload,
            "name": "",
        }

    def _add_names(self, conn: Connection, events: list[dict[str, Any]]) -> None:
        """Fill each event's ``name``: the payload's person, else the visitor of the
        invitation it names."""
        wanted: set[str] = set()
        for event in events:
            payload = event["payload"]
            for field in ("holder", "visitor", "name"):
                if isinstance(payload.get(field), str) and payload[field]:
                    event["name"] = payload[field]
                    break
            else:
                ident = payload.get("invitation_id") or payload.get("credential_id")
                if isinstance(ident, str) and ident:
                    wanted.add(ident)
        if not wanted:
            return
        ids = sorted(wanted)[:500]
        rows = conn.execute(
            f"SELECT id, data FROM invitations WHERE id IN ({self._db.marks(len(ids))})", ids
        ).fetchall()
        names = {row["id"]: str(_payload(row["data"]).get("visitor") or "") for row in rows}
        for event in events:
            if not event["name"]:
                payload = event["payload"]
                ident = payload.get("invitation_id") or payload.get("credential_id")
                event["name"] = names.get(str(ident or ""), "")

    # -- alarms ---------------------------------------------------------------------

    def active_alarms(self) -> list[dict[str, Any]]:
        """Return the alarms the enabled devices' latest heartbeats list, oldest first:
        ``device_id``, ``door``, ``code``, ``since_ms``, ``detail``, ``heard_at_ms`` (the
        heartbeat's reception) and ``ack`` (``{"operator", "at_ms", "note"}`` or None)."""
        with self._read() as conn:
            devices = conn.execute(
                "SELECT device_id, door, last_heartbeat, last_heartbeat_at_ms FROM devices "
                "WHERE enabled = 1 AND last_heartbeat IS NOT NULL ORDER BY device_id"
            ).fetchall()
            acks: dict[tuple[str, str], list[Row]] = {}
            for row in conn.execute(
                "SELECT a.* FROM alarm_acks a JOIN devices d ON d.device_id = a.device_id "
                "WHERE d.enabled = 1"
            ).fetchall():
                acks.setdefault((row["device_id"], row["code"]), []).append(row)
        alarms = []
        for device in devices:
            for alarm in _heartbeat(device).get("alarms") or []:
                if not isinstance(alarm, dict) or not isinstance(alarm.get("code"), str):
                    continue
                since = alarm.get("since_ms")
                since_ms = since if isinstance(since, int) and not isinstance(since, bool) else 0
                alarms.append(
                    {
                        "device_id": device["device_id"],
                        "door": device["door"],
                        "code": alarm["code"],
                        "since_ms": since_ms,
                        "detail": str(alarm.get("detail") or ""),
                        "heard_at_ms": device["last_heartbeat_at_ms"],
                        "ack": _ack_of(
                            acks.get((device["device_id"], alarm["code"]), []), since_ms
                        ),
                    }
                )
        alarms.sort(key=lambda a: (a["since_ms"], a["device_id"], a["code"]))
        return alarms

    def acknowledge_alarm(
        self, device_id: str, code: str, since_ms: int, operator: str, note: str
    ) -> dict[str, Any]:
        """Record *operator*'s acknowledgement of the alarm *code* of *device_id* raised at
        *since_ms* (as its latest heartbeat lists it), with *note*; return it.

        Raises:
            BadRequest: no note, or the alarm is acknowledged already.
            NotFound: no such device, or its latest heartbeat does not list that alarm.
        """
        checked_name("device_id", device_id)
        note = note.strip()
        if not note or len(note) > MAX_NOTE:
            raise BadRequest(
                f"note: must be 1 to {MAX_NOTE} characters",
                field="note",
                reason="text",
                min=1,
                max=MAX_NOTE,
            )
        now = self.now_ms()
        with self._tx() as conn:
            device = conn.execute(
                "SELECT last_heartbeat FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            if device is None:
                raise NotFound(
                    f"no device {device_id!r}", field="device", reason="not_found", name=device_id
                )
            listed = any(
                isinstance(a, dict)
                and a.get("code") == code
                and isinstance(a.get("since_ms"), int)
                and abs(a["since_ms"] - since_ms) <= SAME_RAISE_MS
                for a in _heartbeat(device).get("alarms") or []
            )
            if not listed:
                raise NotFound(
                    f"device {device_id!r} has no alarm {code!r} since {since_ms}",
                    field="alarm",
                    reason="not_found",
                    name=code,
                )
            if conn.execute(
                "SELECT 1 FROM alarm_acks WHERE device_id = ? AND code = ? "
                "AND since_ms BETWEEN ? AND ?",
                (device_id, code, since_ms - SAME_RAISE_MS, since_ms + SAME_RAISE_MS),
            ).fetchone():
                raise BadRequest(
                    "alarm_acknowledged: this alarm is acknowledged already",
                    field="alarm",
                    reason="acknowledged",
                )
            conn.execute(
                "INSERT INTO alarm_acks (device_id, code, since_ms, acked_at_ms, operator, note) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (device_id, code, since_ms, now, operator, note),
            )
        return {
            "device_id": device_id,
            "code": code,
            "since_ms": since_ms,
            "operator": operator,
            "at_ms": now,
            "note": note,
        }

    # -- devices --------------------------------------------------------------------

    def devices_overview(self) -> list[dict[str, Any]]:
        """Return every device with what its latest heartbeat says: ``device_id``, ``door``,
        ``enabled``, ``last_contact_ms`` (heartbeat or upload), ``heartbeat`` (the body),
        ``selftest`` (``{"ok", "received_at_ms"}`` of the latest report, or None)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT d.device_id, d.door, d.enabled, d.last_heartbeat, "
                "d.last_heartbeat_at_ms, d.last_event_at_ms, s.ok, s.received_at_ms "
                "FROM devices d LEFT JOIN selftest_reports s ON s.device_id = d.device_id "
                "ORDER BY d.door, d.device_id"
            ).fetchall()
        devices = []
        for row in rows:
            heard = [t for t in (row["last_heartbeat_at_ms"], row["last_event_at_ms"]) if t]
            devices.append(
                {
                    "device_id": row["device_id"],
                    "door": row["door"],
                    "enabled": bool(row["enabled"]),
                    "last_contact_ms": max(heard) if heard else None,
                    "last_heartbeat_at_ms": row["last_heartbeat_at_ms"],
                    "heartbeat": _heartbeat(row),
                    "selftest": None
                    if row["received_at_ms"] is None
                    else {"ok": bool(row["ok"]), "received_at_ms": row["received_at_ms"]},
                }
            )
        return devices

    def technical_log(
        self,
        *,
        device_id: str | None = None,
        since_ms: int = 0,
        until_ms: int | None = None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Return the technical log of one device (or all) over [*since_ms*, *until_ms*),
        oldest first: the alarm and start/stop events (:data:`TECHNICAL_TYPES`), the
        self-test reports and the console's acknowledgements. Each entry: ``at_ms``,
        ``device_id``, ``door``, ``kind`` (the event type, ``selftest`` or
        ``alarm.console_ack``), ``code`` (the alarm, the state, ``ok``/``failed``...),
        ``detail`` (text) and ``payload``."""
        until = until_ms if until_ms is not None else 2**62
        device_sql, device_args = "", []
        if device_id is not None:
            device_sql, device_args = " AND d.device_id = ?", [device_id]
        with self._read() as conn:
            events = conn.execute(
                "SELECT e.device_id, e.type, e.payload, e.wall_ms, e.received_at_ms, d.door "
                "FROM events e JOIN devices d ON d.device_id = e.device_id "
                f"WHERE e.status = 'stored' AND e.type IN ({self._db.marks(len(TECHNICAL_TYPES))}) "
                f"AND e.received_at_ms >= ? AND e.received_at_ms < ?{device_sql} "
                "ORDER BY e.received_at_ms LIMIT ?",
                (*TECHNICAL_TYPES, since_ms, until, *device_args, limit),
            ).fetchall()
            tests = conn.execute(
                "SELECT s.device_id, s.received_at_ms, s.ok, s.report, d.door FROM selftest_log s "
                "JOIN devices d ON d.device_id = s.device_id "
                f"WHERE s.received_at_ms >= ? AND s.received_at_ms < ?{device_sql} "
                "ORDER BY s.received_at_ms LIMIT ?",
                (since_ms, until, *device_args, limit),
            ).fetchall()
            acks = conn.execute(
                "SELECT a.*, d.door FROM alarm_acks a JOIN devices d ON d.device_id = a.device_id "
                f"WHERE a.acked_at_ms >= ? AND a.acked_at_ms < ?{device_sql} "
                "ORDER BY a.acked_at_ms LIMIT ?",
                (since_ms, until, *device_args, limit),
            ).fetchall()
        log: list[dict[str, Any]] = []
        for row in events:
            payload = _payload(row["payload"])
            code = payload.get("code") or payload.get("alarm") or payload.get("mode") or ""
            state = payload.get("state")
            detail = payload.get("detail") or payload.get("why") or ""
            log.append(
                {
                    "at_ms": row["wall_ms"]
                    if row["wall_ms"] is not None
                    else row["received_at_ms"],
                    "device_id": row["device_id"],
                    "door": row["door"],
                    "kind": row["type"],
                    "code": f"{code} {state}".strip() if state else str(code),
                    "detail": str(detail),
                    "payload": payload,
                }
            )
        for row in tests:
            report = _payload(row["report"])
            failed = [
                "/".join(str(r.get(k) or "") for k in ("component", "check") if r.get(k))
                for r in report.get("results") or []
                if isinstance(r, dict) and r.get("status") == "fail"
            ]
            log.append(
                {
                    "at_ms": row["received_at_ms"],
                    "device_id": row["device_id"],
                    "door": row["door"],
                    "kind": "selftest",
                    "code": "ok" if row["ok"] else "failed",
                    "detail": ", ".join(f for f in failed if f),
                    "payload": report,
                }
            )
        for row in acks:
            log.append(
                {
                    "at_ms": row["acked_at_ms"],
                    "device_id": row["device_id"],
                    "door": row["door"],
                    "kind": "alarm.console_ack",
                    "code": row["code"],
                    "detail": f"{row['operator']}: {row['note']}",
                    "payload": {"since_ms": row["since_ms"], "operator": row["operator"]},
                }
            )
        log.sort(key=lambda entry: (entry["at_ms"], entry["device_id"]))
        return log[:limit]

    def selftest_reports(self, device_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """Return the newest *limit* self-test reports of *device_id*, newest first
        (``received_at_ms``, ``ok``, ``report``).

        Raises:
            NotFound: no such device.
        """
        with self._read() as conn:
            if (
                conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone()
                is None
            ):
                raise NotFound(
                    f"no device {device_id!r}", field="device", reason="not_found", name=device_id
                )
            rows = conn.execute(
                "SELECT received_at_ms, ok, report FROM selftest_log WHERE device_id = ? "
                "ORDER BY received_at_ms DESC LIMIT ?",
                (device_id, limit),
            ).fetchall()
        return [
            {
                "received_at_ms": row["received_at_ms"],
                "ok": bool(row["ok"]),
                "report": _payload(row["report"]),
            }
            for row in rows
        ]
