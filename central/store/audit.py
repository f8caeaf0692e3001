"""What the central holds, read back: per-device counts and chain state, the stored events,
the chains re-walked from the database, and the admin summary.

Read-only. This is what an operator or an auditor reads (``GET /admin/events``,
``GET /admin/devices/{id}/events``, ``GET /admin/info``); issue #13's operator audit log
and the auditor's export with the chain proof belong here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from portier_common.encoding import event_hash

from ..errors import BadRequest, NotFound
from .base import StoreBase
from .db import Row
from .deltas import head_seq
from .devices import device_summary
from .events import GENESIS_HEX

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
        """Walk the stored events of *device_id* and recompute every link.

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
            expected_seq = dev["anchor_seq"] or 1
            prev = dev["anchor_prev_hash"] or GENESIS_HEX
            anchor_seq = dev["anchor_seq"] or 1
            anchor_prev = dev["anchor_prev_hash"] or GENESIS_HEX
            for row in conn.execute(
                "SELECT seq, id, wall_ms, mono_ns, type, payload, prev_hash, hash FROM events "
                "WHERE device_id = ? ORDER BY seq",
                (device_id,),
            ).fetchall():
                first = _declared_gap_start(row, expected_seq)
                if first is not None:
                    # The device lost first..seq-1; its chain goes on from first - 1.
                    expected_seq = row["seq"]
                    if first == anchor_seq:
                        prev = anchor_prev
                    else:
                        kept = conn.execute(
                            "SELECT hash FROM events WHERE device_id = ? AND seq = ?",
                            (device_id, first - 1),
                        ).fetchone()
                        prev = kept["hash"] if kept is not None else ""
                if row["seq"] != expected_seq or row["prev_hash"] != prev or row["payload"] is None:
                    return False, row["seq"]
                computed = event_hash(
                    bytes.fromhex(prev),
                    row["seq"],
                    uuid.UUID(row["id"]).bytes,
                    row["wall_ms"],
                    row["mono_ns"],
                    row["type"],
                    row["payload"],
                ).hex()
                if computed != row["hash"]:
                    return False, row["seq"]
                prev = row["hash"]
                expected_seq += 1
        return True, None

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


def _declared_gap_start(row: Row, expected_seq: int) -> int | None:
    """``from_seq`` of a stored ``journal.gap`` event that covers ``expected_seq``
    (the device lost ``from_seq..seq - 1``), else None."""
    if row["type"] != "journal.gap" or row["payload"] is None:
        return None
    try:
        payload = json.loads(row["payload"])
        first, last = payload["from_seq"], payload["to_seq"]
    except (TypeError, ValueError, KeyError):
        return None
    if not isinstance(first, int) or isinstance(first, bool) or last != row["seq"] - 1:
        return None
    return first if 1 <= first <= expected_seq <= row["seq"] else None
