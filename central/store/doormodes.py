"""Door modes an operator sets from the security office, for a door or a zone (issue #14).

A mode (``normal``, ``lockdown``, ``free_access``; emergency follows the fire input and is
never set) with who set it and why (a reason is required). It travels to the doors in their
``door_settings`` (the signed deltas the agents poll, docs/sync.md): :meth:`set_door_mode`
writes the door's settings with ``mode`` and ``mode_set`` ``{by, reason, at_ms, scope,
name}`` over the settings the door has, for the door itself or for every enrolled door of
the zone, in one transaction with the ``door_modes`` row the console lists. The audit row is
the caller's (the admin API's ``_change``, the console's ``_recorded``), in that same
transaction.

The mode of a door is what its settings last said: a zone's mode set after a door's own
replaces it at that door, and the door's own set after the zone's replaces that
(the most recent command wins, as on the door itself).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, NotFound
from .base import StoreBase, dumps
from .deltas import record_change
from .validate import checked_name, checked_text, only_fields

__all__ = ["CENTRAL_MODES", "DoorModesMixin"]

#: The modes an operator may set (emergency follows a door's fire input).
CENTRAL_MODES = ("normal", "lockdown", "free_access")
#: The longest reason kept.
MAX_REASON = 500


class DoorModesMixin(StoreBase):
    """Door and zone modes: set them, and the overview the console shows."""

    def set_door_mode(
        self, scope: str, name: str, body: Mapping[str, Any], *, by: str
    ) -> dict[str, Any]:
        """Set the mode of door or zone *name* (*scope* ``door`` or ``zone``) from a
        ``DoorModeInput`` body ``{mode, reason, site?}``, as operator *by*; return the
        ``DoorMode`` (with ``doors``: the doors whose settings now carry it).

        Raises:
            BadRequest: a bad field (named). NotFound: a zone no enrolled door is in.
        """
        if scope not in ("door", "zone"):
            raise BadRequest(
                f"scope: must be door or zone, got {scope!r}", field="scope", reason="choice"
            )
        name = checked_name(scope, name)
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        only_fields("door mode", body, ("site", "mode", "reason"))
        site = checked_name("site", body.get("site", self.settings.site))
        mode = body.get("mode")
        if mode not in CENTRAL_MODES:
            raise BadRequest(
                f"mode: must be one of {list(CENTRAL_MODES)}", field="mode", reason="choice"
            )
        reason = body.get("reason")
        if isinstance(reason, str):
            reason = " ".join(reason.split())
        reason = checked_text("reason", reason)
        if len(reason) > MAX_REASON:
            raise BadRequest(
                f"reason: must be at most {MAX_REASON} characters",
                field="reason",
                reason="too_long",
                max=MAX_REASON,
            )
        now = self.now_ms()
        mode_set = {"by": by, "reason": reason, "at_ms": now, "scope": scope, "name": name}
        with self._tx() as conn:
            if scope == "zone":
                doors = sorted(self._zone_doors(conn, site).get(name, ()))
                if not doors:
                    raise NotFound(
                        f"no enrolled door is in zone {name!r} at site {site!r}",
                        field="zone",
                        reason="zone_empty",
                        name=name,
                    )
            else:
                doors = [name]
            conn.execute(
                "INSERT INTO door_modes (site, scope, name, mode, set_by, reason, set_at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, scope, name) DO UPDATE SET "
                "mode = excluded.mode, set_by = excluded.set_by, reason = excluded.reason, "
                "set_at_ms = excluded.set_at_ms",
                (site, scope, name, mode, by, reason, now),
            )
            for door in doors:
                row = conn.execute(
                    "SELECT version, data FROM door_settings WHERE site = ? AND door = ?",
                    (site, door),
                ).fetchone()
                version = 1 if row is None else row["version"] + 1
                settings = {} if row is None else dict(json.loads(row["data"])["settings"])
                settings.update(mode=mode, mode_set=mode_set)
                data = {"door": door, "site": site, "version": version, "settings": settings}
                conn.execute(
                    "INSERT INTO door_settings (site, door, version, data) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (site, door) DO UPDATE SET version = excluded.version, "
                    "data = excluded.data",
                    (site, door, version, dumps(data)),
                )
                record_change(conn, site, "door_settings", door, data)
        return {
            "site": site,
            "scope": scope,
            "name": name,
            "mode": mode,
            "set_by": by,
            "reason": reason,
            "set_at_ms": now,
            "doors": doors,
        }

    @staticmethod
    def _zone_doors(conn: Any, site: str) -> dict[str, set[str]]:
        """Zone -> the doors of the site's enrolled devices that are in it."""
        zones: dict[str, set[str]] = {}
        for row in conn.execute(
            "SELECT door, zones FROM devices WHERE site = ? AND credential_hash IS NOT NULL",
            (site,),
        ).fetchall():
            for zone in json.loads(row["zones"] or "[]"):
                zones.setdefault(zone, set()).add(row["door"])
        return zones

    def door_modes(self, site: str | None = None, *, online_within_ms: int) -> dict[str, Any]:
        """The doors and zones the central knows at *site* (its enrolled devices' doors and
        zones, and any door or zone a mode was set for), each with the mode set centrally
        (None: none) and, for a door, what its devices last reported (heartbeat)::

            {"doors": [{"door", "zones", "mode", "mode_set", "devices": [{"device_id",
                        "online", "last_heartbeat_at_ms", "mode", "state"}]}],
             "zones": [{"zone", "doors", "mode", "set_by", "reason", "set_at_ms"}]}
        """
        site = checked_name("site", site if site is not None else self.settings.site)
        now = self.now_ms()
        with self._read() as conn:
            devices = conn.execute(
                "SELECT device_id, door, zones, last_heartbeat_at_ms, last_heartbeat "
                "FROM devices WHERE site = ? AND credential_hash IS NOT NULL ORDER BY device_id",
                (site,),
            ).fetchall()
            settings = {
                row["door"]: json.loads(row["data"])["settings"]
                for row in conn.execute(
                    "SELECT door, data FROM door_settings WHERE site = ?", (site,)
                ).fetchall()
            }
            set_rows = conn.execute(
                "SELECT scope, name, mode, set_by, reason, set_at_ms FROM door_modes "
                "WHERE site = ?",
                (site,),
            ).fetchall()
        doors: dict[str, dict[str, Any]] = {}
        zones: dict[str, dict[str, Any]] = {}

        def door_entry(door: str) -> dict[str, Any]:
            entry = doors.get(door)
            if entry is None:
                own = settings.get(door) or {}
                mode_set = own.get("mode_set") if isinstance(own.get("mode_set"), dict) else None
                entry = doors[door] = {
                    "door": door,
                    "zones": set(),
                    "mode": own.get("mode"),
                    "mode_set": mode_set,
                    "devices": [],
                }
            return entry

        def zone_entry(zone: str) -> dict[str, Any]:
            return zones.setdefault(
                zone,
                {
                    "zone": zone,
                    "doors": set(),
                    "mode": None,
                    "set_by": None,
                    "reason": None,
                    "set_at_ms": None,
                },
            )

        for row in devices:
            entry = door_entry(row["door"])
            heartbeat = json.loads(row["last_heartbeat"]) if row["last_heartbeat"] else {}
            reported = next(
                (
                    item
                    for item in heartbeat.get("doors") or ()
                    if isinstance(item, dict) and item.get("door") == row["door"]
                ),
                {},
            )
            seen = row["last_heartbeat_at_ms"]
            entry["devices"].append(
                {
                    "device_id": row["device_id"],
                    "online": seen is not None and now - seen <= online_within_ms,
                    "last_heartbeat_at_ms": seen,
                    "mode": reported.get("mode"),
                    "state": reported.get("state"),
                }
            )
            for zone in json.loads(row["zones"] or "[]"):
                entry["zones"].add(zone)
                zone_entry(zone)["doors"].add(row["door"])
        for row in set_rows:
            if row["scope"] == "door":
                door_entry(row["name"])
            else:
                zone_entry(row["name"]).update(
                    mode=row["mode"],
                    set_by=row["set_by"],
                    reason=row["reason"],
                    set_at_ms=row["set_at_ms"],
                )
        return {
            "doors": [
                {**entry, "zones": sorted(entry["zones"])} for _, entry in sorted(doors.items())
            ],
            "zones": [
                {**entry, "doors": sorted(entry["doors"])} for _, entry in sorted(zones.items())
            ],
        }
