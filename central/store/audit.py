"""What the central holds, read back: per-device counts and chain state, the stored events,
the chains re-walked from the database, and the admin summary.

Read-only. This is what an operator or an auditor reads (``GET /admin/events``,
``GET /admin/devices/{id}/events``, ``GET /admin/info``), and the auditor's export of one
device's events with the chain proof (``GET /admin/devices/{id}/export``).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import BadRequest, NotFound
from .base import StoreBase
from .db import Connection, Row
from .deltas import head_seq
from .devices import device_summary
from .eventchain import EXPORT_FORMAT, GENESIS_HEX, declared_gap_start, walk

__all__ = ["AuditMixin"]


class AuditMixin(StoreBase):
    """The received view, stored events, chain re-walks and the admin info."""

    def received(self, *, verify: bool = False) -> dict[str, Any]:
        """Return the ``ReceivedView``: per-device counts and chain state, and totals.

        With *verify*, each device's stored chain is walked again from the
        database (:meth:`verify_chain`) into ``chain_verified``.
        """
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM devices ORDER BY device_id").fetchall()
        devices = [
            device_summary(row, self.verify_chain(row["device_id"])[0] if verify else None)
            for row in rows
        ]
        return {
            "devices": devices,
            "totals": {
                "devices": len(devices),
                "unique_events": sum(d["unique_events"] for d in devices),
                "duplicates_seen": sum(d["duplicates_seen"] for d in devices),
                "rejected": sum(d["rejected"] for d in devices),
                "chain_ok": all(
                    d["chain_ok"] and d["chain_verified"] is not False for d in devices
                ),
            },
        }

    def verify_chain(self, device_id: str) -> tuple[bool, int | None]:
        """Walk the stored events of *device_id* and recompute every link
        (:func:`central.store.eventchain.walk`; a purged event by its links only).

        Returns:
            ``(True, None)`` if every event from seq 1 (or the enrollment
            anchor) links to the one before and hashes to its stored hash,
            else ``(False, seq of the first bad event)``.

        Raises:
            NotFound: no such device.
        """
        with self._read() as conn:
            dev = conn.execute(
                "SELECT anchor_seq, anchor_prev_hash FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            if dev is None:
                raise NotFound(f"no device {device_id!r}")
            rows = conn.execute(
                f"SELECT {_CHAIN_COLUMNS} FROM events WHERE device_id = ? ORDER BY seq",
                (device_id,),
            ).fetchall()
            result = walk(
                (dict(row) for row in rows),
                first_seq=dev["anchor_seq"] or 1,
                prev_hash=dev["anchor_prev_hash"] or GENESIS_HEX,
                hash_before=lambda seq: _hash_at(conn, device_id, dev, seq),
            )
        if result["ok"]:
            return True, None
        return False, result["problems"][0]["seq"]

    def export_device_events(
        self, device_id: str, *, since_ms: int | None = None, until_ms: int | None = None
    ) -> dict[str, Any]:
        """Return one device's events of a period with their chain proof, for an auditor
        (``GET /admin/devices/{id}/export``, ``portier-central events-export``).

        The events are a contiguous run of the device's chain: from the first with
        ``wall_ms >= since_ms`` to the last with ``wall_ms < until_ms`` (the device's
        clock), so a clock that stepped back inside the period leaves no hole. The
        document (``format`` :data:`~central.store.eventchain.EXPORT_FORMAT`) holds the
        ``anchor`` (seq and hash of the event before the first: what the first chains to),
        the ``events`` (each with ``payload_json``, the text its hash covers, and
        ``purged_at_ms`` when retention pseudonymised it), ``gap_anchors`` (hashes before
        the period a declared journal gap inside it chains to), ``purges`` (the audit rows of the
        retention purges that pseudonymised events of it, each with its chain hashes), the
        ``end`` (seq and hash of the last event) and the device's head now.
        ``verify_export`` re-checks it.

        Raises:
            BadRequest: since/until not integers, or until before since. NotFound: no
                such device.
        """
        for name, value in (("since", since_ms), ("until", until_ms)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise BadRequest(f"{name}: Unix milliseconds (an integer)")
        if since_ms is not None and until_ms is not None and until_ms < since_ms:
            raise BadRequest("until is before since")
        low = since_ms if since_ms is not None else -(2**63)
        high = until_ms if until_ms is not None else 2**63 - 1
        with self._tx() as conn:
            dev = conn.execute(
                "SELECT device_id, site, door, anchor_seq, anchor_prev_hash, next_seq, "
                "last_hash FROM devices WHERE device_id = ?",
                (device_id,),
            ).fetchone()
            if dev is None:
                raise NotFound(f"no device {device_id!r}")
            span = conn.execute(
                "SELECT (SELECT min(seq) FROM events WHERE device_id = ? AND wall_ms >= ?) "
                "AS first, (SELECT max(seq) FROM events WHERE device_id = ? AND wall_ms < ?) "
                "AS last",
                (device_id, low, device_id, high),
            ).fetchone()
            rows: list[dict[str, Any]] = []
            if span["first"] is not None and span["last"] is not None:
                rows = [
                    dict(row)
                    for row in conn.execute(
                        f"SELECT {_CHAIN_COLUMNS}, received_at_ms, link_ok, status, reason "
                        "FROM events WHERE device_id = ? AND seq >= ? AND seq <= ? ORDER BY seq",
                        (device_id, span["first"], span["last"]),
                    ).fetchall()
                ]
            purges = _purge_records(conn, device_id, rows)
            first_seq = rows[0]["seq"] if rows else dev["next_seq"]
            anchor_hash = _hash_at(conn, device_id, dev, first_seq - 1)
            gap_anchors: dict[str, str | None] = {}
            expected = first_seq
            for row in rows:
                gap_first = declared_gap_start(row, expected)
                if gap_first is not None and gap_first - 1 < first_seq - 1:
                    gap_anchors[str(gap_first - 1)] = _hash_at(conn, device_id, dev, gap_first - 1)
                expected = row["seq"] + 1
        events = [
            {
                "seq": row["seq"],
                "id": row["id"],
                "wall_ms": row["wall_ms"],
                "mono_ns": row["mono_ns"],
                "type": row["type"],
                "payload_json": row["payload"],
                "prev_hash": row["prev_hash"],
                "hash": row["hash"],
                "purged_at_ms": row["purged_at_ms"],
                "received_at_ms": row["received_at_ms"],
                "status": row["status"],
                "reason": row["reason"],
            }
            for row in rows
        ]
        return {
            "format": EXPORT_FORMAT,
            "device_id": device_id,
            "site": dev["site"],
            "door": dev["door"],
            "since_ms": since_ms,
            "until_ms": until_ms,
            "exported_at_ms": self.now_ms(),
            "anchor": {"seq": first_seq - 1, "hash": anchor_hash},
            "gap_anchors": gap_anchors,
            "events": events,
            "purges": purges,
            "end": {
                "seq": events[-1]["seq"] if events else first_seq - 1,
                "hash": events[-1]["hash"] if events else anchor_hash,
            },
            "device_head": {"next_seq": dev["next_seq"], "last_hash": dev["last_hash"]},
            "hashing": "each event's hash is portier_common.encoding.event_hash(prev_hash, "
            "seq, id (16 bytes), wall_ms, mono_ns, type, payload_json) as hex; the first "
            "event's prev_hash is the anchor's hash (64 zeros before seq 1); an event with "
            "purged_at_ms had its personal fields pseudonymised by retention and is checked "
            "by its links only (docs/central.md, Retention)",
        }

    def device_events(
        self, device_id: str, after_seq: int = 0, limit: int = 1000
    ) -> dict[str, Any]:
        """Return a ``StoredEventsPage``: events of *device_id* with seq > *after_seq*.

        Raises:
            BadRequest: a bad *after_seq* or *limit*. NotFound: no such device.
        """
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise BadRequest("after_seq: must be an integer >= 0")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise BadRequest("limit: must be 1 to 10000")
        with self._read() as conn:
            if (
                conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone()
                is None
            ):
                raise NotFound(f"no device {device_id!r}")
            rows = conn.execute(
                "SELECT * FROM events WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (device_id, after_seq, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        events = [
            {
                "id": row["id"],
                "seq": row["seq"],
                "wall_ms": row["wall_ms"],
                "mono_ns": row["mono_ns"],
                "type": row["type"],
                "payload_json": row["payload"],
                "payload": None if row["payload"] is None else json.loads(row["payload"]),
                "prev_hash": row["prev_hash"],
                "hash": row["hash"],
                "received_at_ms": row["received_at_ms"],
                "link_ok": bool(row["link_ok"]),
                "status": row["status"],
                "reason": row["reason"],
                "purged_at_ms": row["purged_at_ms"],
            }
            for row in rows
        ]
        return {
            "device_id": device_id,
            "events": events,
            "next_after_seq": rows[-1]["seq"] if rows else after_seq,
            "more": more,
        }

    def info(self) -> dict[str, Any]:
        """Return the ``AdminInfo``: site, active kid, head cursor, time, limits."""
        with self._read() as conn:
            kid = conn.execute("SELECT kid FROM signing_keys WHERE active = 1").fetchone()["kid"]
            head = head_seq(conn)
        return {
            "site": self.settings.site,
            "active_kid": kid,
            "deltas_cursor": str(head),
            "server_time_ms": self.now_ms(),
            "limits": self.settings.limits(),
        }


def _purge_records(conn: Connection, device_id: str, rows: list[dict[str, Any]]) -> list[Any]:
    """The audit rows (``retention.purge``) that pseudonymised any of *rows*."""
    purged = {row["seq"] for row in rows if row["purged_at_ms"] is not None}
    if not purged:
        return []
    records = []
    for entry in conn.execute(
        "SELECT seq, at_ms, operator, action, detail, remote, status, prev_hash, hash "
        "FROM operator_journal WHERE action = 'retention.purge' ORDER BY seq"
    ).fetchall():
        try:
            ranges = json.loads(entry["detail"]).get("devices", {}).get(device_id, [])
        except (ValueError, AttributeError):
            continue
        if any(low <= seq <= high for low, high in ranges for seq in purged):
            records.append(dict(entry))
    return records


_CHAIN_COLUMNS = "seq, id, wall_ms, mono_ns, type, payload, prev_hash, hash, purged_at_ms"


def _hash_at(conn: Connection, device_id: str, dev: Row, seq: int) -> str | None:
    """The hash a chain continuing after *seq* links to: the genesis before seq 1, the
    enrollment anchor's (the device's journal head when it enrolled), else the stored
    event's (None when the central never received it)."""
    if seq + 1 == (dev["anchor_seq"] or 1):
        return dev["anchor_prev_hash"] or GENESIS_HEX
    if seq <= 0:
        return GENESIS_HEX
    row = conn.execute(
        "SELECT hash FROM events WHERE device_id = ? AND seq = ?", (device_id, seq)
    ).fetchone()
    return None if row is None else row["hash"]
