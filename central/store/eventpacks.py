"""Event packs (issue #14): a kiosk's cache for an off-site event, and its journal merged
back.

:meth:`EventPacksMixin.create_event_pack` builds what the device would sync from scratch
(one ``DeltasResponse`` page with ``reset: true``: badges, revocations, signing keys,
schedules, door settings, the shared replay ledgers), restricted to the event's
invitations, adds the event and the kiosk's settings, signs it with the delta signing key
the device pinned and encrypts it to the device's event-pack key
(:mod:`portier_common.eventpack`). :meth:`EventPacksMixin.merge_journal` imports a journal
the device exported (``edge-agent journal export``) through the very code that takes
``POST /v1/events``: same placement, chain check and de-duplication by event id.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any

from portier_common.eventpack import EXPORT_FORMAT, FORMAT, export_mac, seal

from ..errors import BadRequest, Forbidden, NotConfigured, NotFound
from .db import Connection, Row
from .deltas import DELTA_LISTS, REMOVABLE, head_seq
from .events import EventsMixin

__all__ = ["EventPacksMixin"]

log = logging.getLogger(__name__)

#: The longest event a pack may be made for, and how far ahead it may start.
MAX_EVENT_S = 31 * 86400
#: The kiosk trusts the pack's cache until the event's end plus this (a late guest).
GRACE_S = 3600
#: Events handed to the upload code per batch while merging.
MERGE_BATCH = 500
_LANGUAGES = ("en", "fr")
_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _int(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"event.{name}: must be Unix seconds", reason="bad_event")
    return value


def _snapshot(conn: Connection, site: str, guard_console: bool) -> dict[str, list[Any]]:
    """Every item a device of *site* would hold after a full sync (the deltas log's
    latest change of each item, removals dropped), in the deltas page's lists."""
    rows = conn.execute(
        "SELECT seq, kind, key, op, data FROM changes WHERE site IS NULL OR site = ? ORDER BY seq",
        (site,),
    ).fetchall()
    latest: dict[tuple[str, str], Row] = {}
    for row in rows:
        latest.pop((row["kind"], row["key"]), None)
        latest[(row["kind"], row["key"])] = row
    page: dict[str, list[Any]] = {name: [] for name in DELTA_LISTS.values()}
    for row in latest.values():
        if row["op"] == "delete":
            continue
        item = json.loads(row["data"])
        if row["kind"] == "badge" and not guard_console:
            item.pop("pin_hash", None)
        page[DELTA_LISTS[row["kind"]]].append(item)
    return page


class EventPacksMixin(EventsMixin):
    """Event packs for off-site kiosks, and the merge of their exported journals.

    It extends :class:`EventsMixin` on purpose (as that one extends the claims): a merged
    journal is placed by the very code of ``POST /v1/events``, batch by batch."""

    def create_event_pack(self, body: Mapping[str, Any], *, by: str) -> dict[str, Any]:
        """Make the event pack asked for by *body* (``EventPackRequest``); return
        ``{"id", "pack_id", "serial", "device_id", "name", "guests", "not_after_ms",
        "file"}`` (``file``: the pack's text, to save as it is).

        Raises:
            BadRequest: a bad field (``reason``: ``bad_event``, ``unknown_invitation``...).
            NotFound: no such device.
            NotConfigured: the device sent no event-pack key (``no_pack_key``: enroll it
                again with a current agent) or is disabled.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object", field="body", reason="object")
        unknown = set(body) - {"device_id", "event", "invitations", "kiosk"}
        if unknown:
            raise BadRequest(
                f"event pack: unknown fields {sorted(unknown)}",
                field="body",
                reason="unknown_fields",
            )
        device_id = body.get("device_id")
        if not isinstance(device_id, str) or not _ID_RE.fullmatch(device_id):
            raise BadRequest("device_id: must be a device id", field="device_id", reason="choice")
        event = body.get("event")
        if not isinstance(event, Mapping):
            raise BadRequest("event: must be an object {name, starts, ends}", reason="bad_event")
        name = event.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 120:
            raise BadRequest("event.name: must be text of 1 to 120 characters", reason="bad_event")
        name = name.strip()
        starts, ends = _int(event, "starts"), _int(event, "ends")
        now_ms = self.now_ms()
        now_s = now_ms // 1000
        if not starts < ends or ends <= now_s:
            raise BadRequest(
                "event: must end after it starts, and in the future", reason="bad_event"
            )
        if ends - now_s > MAX_EVENT_S:
            raise BadRequest(
                f"event: must end within {MAX_EVENT_S // 86400} days", reason="bad_event"
            )
        wanted = body.get("invitations")
        if wanted is not None and (
            not isinstance(wanted, list)
            or not all(isinstance(i, str) and _ID_RE.fullmatch(i) for i in wanted)
            or len(wanted) > 10_000
        ):
            raise BadRequest(
                "invitations: must be a list of invitation ids", field="invitations", reason="names"
            )
        kiosk_in = body.get("kiosk") or {}
        if not isinstance(kiosk_in, Mapping) or set(kiosk_in) - {"language", "welcome"}:
            raise BadRequest(
                "kiosk: may hold language and welcome only", field="kiosk", reason="unknown_fields"
            )
        language = kiosk_in.get("language", "en")
        welcome = kiosk_in.get("welcome", "")
        if language not in _LANGUAGES:
            raise BadRequest(
                f"kiosk.language: must be one of {list(_LANGUAGES)}",
                field="kiosk.language",
                reason="choice",
            )
        if not isinstance(welcome, str) or len(welcome) > 200 or not welcome.isprintable():
            raise BadRequest(
                "kiosk.welcome: must be printable text of at most 200 characters",
                field="kiosk.welcome",
                reason="too_long",
                max=200,
            )
        staleness_s = ends - now_s + GRACE_S
        kiosk = {
            "language": language,
            "welcome": welcome.strip(),
            "max_offline_staleness_s": staleness_s,
        }

        with self._tx() as conn:
            device = conn.execute(
                "SELECT * FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            if device is None:
                raise NotFound(
                    f"no device {device_id!r}", field="device", reason="not_found", name=device_id
                )
            if not device["enabled"]:
                raise NotConfigured(f"device {device_id!r} is disabled", reason="disabled")
            if device["pack_key"] is None:
                raise NotConfigured(
                    f"device {device_id!r} has no event-pack key: enroll it again with a "
                    "current agent",
                    reason="no_pack_key",
                )
            site, door = device["site"], device["door"]
            zones = set(json.loads(device["zones"]))
            page = _snapshot(conn, site, bool(device["guard_console"]))
            page["invitations"] = self._event_invitations(
                page["invitations"], wanted, door, zones, starts, ends
            )
            guests = [item["id"] for item in page["invitations"]]
            settings = [s for s in page["door_settings"] if s.get("door") == door]
            page["door_settings"] = [
                {
                    "door": door,
                    "site": site,
                    "version": settings[-1]["version"] if settings else 0,
                    "settings": {
                        **(settings[-1]["settings"] if settings else {}),
                        # The kiosk decides from this cache until the event is over,
                        # however long the event (the door's own bound would stop it).
                        "max_offline_staleness_s": staleness_s,
                    },
                }
            ]
            serial = conn.execute(
                "SELECT coalesce(max(serial), 0) + 1 AS next FROM event_packs"
            ).fetchone()["next"]
            pack_id = "ep-" + secrets.token_hex(6)
            not_after_ms = ends * 1000
            pack_body = {
                "format": FORMAT,
                "pack_id": pack_id,
                "serial": serial,
                "device_id": device_id,
                "site": site,
                "door": door,
                "issued_ms": now_ms,
                "not_after_ms": not_after_ms,
                "event": {"name": name, "starts": starts, "ends": ends, "guests": guests},
                "kiosk": kiosk,
                "deltas": {
                    "from_cursor": "",
                    "cursor": str(max(1, head_seq(conn))),
                    "more": False,
                    "reset": True,
                    "server_time_ms": now_ms,
                    **page,
                    "removed": {name: [] for name in REMOVABLE.values()},
                },
            }
            data = seal(
                pack_body,
                device_public_key=bytes(device["pack_key"]),
                kid=self._delta_key.kid,
                sign=self._delta_key.sign,
            )
            conn.execute(
                "INSERT INTO event_packs (serial, pack_id, device_id, name, starts, ends, "
                "guests, not_after_ms, created_ms, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    serial,
                    pack_id,
                    device_id,
                    name,
                    starts,
                    ends,
                    len(guests),
                    not_after_ms,
                    now_ms,
                    by,
                ),
            )
        log.info(
            "event pack %s (serial %d) for device %s: %r, %d guests",
            pack_id,
            serial,
            device_id,
            name,
            len(guests),
        )
        return {
            "id": pack_id,
            "pack_id": pack_id,
            "serial": serial,
            "device_id": device_id,
            "name": name,
            "guests": len(guests),
            "not_after_ms": not_after_ms,
            "file": data.decode("utf-8"),
        }

    @staticmethod
    def _event_invitations(
        items: list[dict[str, Any]],
        wanted: list[str] | None,
        door: str,
        zones: set[str],
        starts: int,
        ends: int,
    ) -> list[dict[str, Any]]:
        """The event's guests: the invitations named (each must exist), or every
        invitation of this door (or its zones) valid at some time during the event."""
        if wanted is not None:
            by_id = {item["id"]: item for item in items}
            missing = [i for i in wanted if i not in by_id]
            if missing:
                raise BadRequest(
                    f"invitations: unknown here: {', '.join(missing[:10])}",
                    reason="unknown_invitation",
                    name=", ".join(missing[:10]),
                )
            return [by_id[i] for i in dict.fromkeys(wanted)]
        return [
            item
            for item in items
            if (door in (item.get("doors") or []) or zones & set(item.get("zones") or []))
            and (item.get("not_before") or 0) < ends
            and int(item.get("expires") or 0) > starts
        ]

    def list_event_packs(self, limit: int = 100) -> list[dict[str, Any]]:
        """The packs made, newest first (never their content)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM event_packs ORDER BY serial DESC LIMIT ?", (limit,)
            ).fetchall()
        return [
            {
                "pack_id": r["pack_id"],
                "serial": r["serial"],
                "device_id": r["device_id"],
                "name": r["name"],
                "starts": r["starts"],
                "ends": r["ends"],
                "guests": r["guests"],
                "not_after_ms": r["not_after_ms"],
                "created_ms": r["created_ms"],
                "created_by": r["created_by"],
            }
            for r in rows
        ]

    def pack_devices(self) -> list[dict[str, Any]]:
        """The enrolled devices a pack can be made for (enabled, with an event-pack key)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT device_id, site, door FROM devices "
                "WHERE enabled = 1 AND pack_key IS NOT NULL ORDER BY device_id"
            ).fetchall()
        return [dict(device_id=r["device_id"], site=r["site"], door=r["door"]) for r in rows]

    # -- merge back --------------------------------------------------------------------

    def merge_journal(self, export: Mapping[str, Any]) -> dict[str, Any]:
        """Import a journal exported by a device that did not come back online, with the
        checks of ``POST /v1/events`` (order, chain, exactly once: merging twice adds
        nothing). Returns the counts of each ack and the device's chain state.

        Raises:
            BadRequest: not an export (``reason``: ``malformed``).
            NotFound: no such device.
            Forbidden: the export's MAC does not match the device's credential
                (``reason``: ``bad_mac``), or the device has no credential now.
        """
        if not isinstance(export, Mapping) or export.get("format") != EXPORT_FORMAT:
            raise BadRequest(f"not a journal export ({EXPORT_FORMAT})", reason="malformed")
        device_id = export.get("device_id")
        events = export.get("events")
        mac = export.get("mac")
        if (
            not isinstance(device_id, str)
            or not isinstance(events, list)
            or not isinstance(mac, str)
        ):
            raise BadRequest("export: device_id, events and mac are required", reason="malformed")
        with self._read() as conn:
            device = conn.execute(
                "SELECT credential_hash FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
        if device is None:
            raise NotFound(
                f"no device {device_id!r}", field="device", reason="not_found", name=device_id
            )
        if device["credential_hash"] is None:
            raise Forbidden(
                f"device {device_id!r} has no credential now (reset): its export cannot be checked",
                reason="bad_mac",
            )
        body = {k: v for k, v in export.items() if k != "mac"}
        expected = export_mac(bytes(device["credential_hash"]), body)
        if not hmac.compare_digest(expected, mac):
            raise Forbidden(
                "the export's MAC does not match this device's credential: altered, or "
                "not from this device",
                reason="bad_mac",
            )
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "retry_later": 0}
        reasons: dict[str, int] = {}
        answer: dict[str, Any] = {"next_seq": None, "chain_ok": None}
        for start in range(0, len(events), MERGE_BATCH):
            answer = self.upload_events(device_id, events[start : start + MERGE_BATCH])
            for ack in answer["acks"]:
                counts[ack["status"]] = counts.get(ack["status"], 0) + 1
                if ack["status"] in ("rejected", "retry_later"):
                    reasons[ack["reason"]] = reasons.get(ack["reason"], 0) + 1
        log.info("journal of %s merged: %s", device_id, counts)
        return {
            "device_id": device_id,
            "events": len(events),
            **counts,
            "reasons": reasons,
            "next_seq": answer["next_seq"],
            "chain_ok": answer["chain_ok"],
        }
