"""The host-notification outbox: who to tell that a visitor checked in, and what came of it.

A ``visitor.checked_in`` event that :mod:`central.store.events` stores (new, not a
duplicate) gets one ``notifications`` row per channel (``email``, ``webhook``) **in the same
transaction** as the event itself: a device that uploads the same batch again only gets
``duplicate`` acks, so a check-in is told once, and a check-in stored is never left untold.
The row keeps what the message says (visitor, host, entrance, time, language) as it was when
the event arrived; the host's e-mail is read from the invitation (stored centrally only).

The sender (:mod:`central.notify`) claims due rows (:meth:`NotifyMixin.claim_notifications`)
and records each attempt (:meth:`NotifyMixin.finish_notification`). A claim is a lease: the
row's ``next_at_ms`` moves ``lease_ms`` ahead, so another central process on the same
database does not take it while it is being sent. The claim runs under the store's write lock
(SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock) and, on PostgreSQL, also reads with
``FOR UPDATE SKIP LOCKED``. A process killed between sending and recording leaves the row to be
sent again once the lease ends: at least once across a crash, exactly once otherwise.

Statuses: ``pending`` (due at ``next_at_ms``), ``sent``, ``failed`` (gave up after the
configured time; ``last_error`` says why), ``not_configured`` (no SMTP or no webhook
configured when it was due), ``no_recipient`` (the invitation has no host e-mail),
``cancelled`` (a visitor's invitation e-mail whose invitation was revoked or expired before
it went out).

The visitor's invitation e-mails are rows of this outbox too (channel ``invitation``, device
``central``), queued by :mod:`central.store.screening`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .base import StoreBase, dumps
from .db import Connection, Row

__all__ = ["CHANNELS", "CHECKIN_EVENT", "FINAL_STATUSES", "NotifyMixin"]

#: The event a host is told about.
CHECKIN_EVENT = "visitor.checked_in"
CHANNELS = ("email", "webhook")
FINAL_STATUSES = ("sent", "failed", "not_configured", "no_recipient", "cancelled")


class NotifyMixin(StoreBase):
    """The outbox of host notifications (written with the events, read by the sender)."""

    def _enqueue_checkin(
        self,
        conn: Connection,
        dev: Row,
        event_id: str,
        seq: int,
        wall_ms: int | None,
        payload: Mapping[str, Any],
        now: int,
    ) -> None:
        """Queue the notifications of a stored ``visitor.checked_in`` event (in the upload's
        transaction)."""
        invitation_id = payload.get("invitation_id")
        invitation_id = invitation_id if isinstance(invitation_id, str) else None
        host, host_email, lang, visitor = "", None, "en", payload.get("visitor")
        if invitation_id is not None:
            row = conn.execute(
                "SELECT host_email, lang, data FROM invitations WHERE id = ?", (invitation_id,)
            ).fetchone()
            if row is not None:
                data = json.loads(row["data"])
                host = data.get("host") or ""
                visitor = data.get("visitor") or visitor
                host_email = row["host_email"]
                lang = row["lang"] or "en"
        data = {
            "event_id": event_id,
            "seq": seq,
            "invitation_id": invitation_id,
            "visitor": visitor if isinstance(visitor, str) else "",
            "host": host,
            "host_email": host_email,
            "lang": lang,
            "site": dev["site"],
            "door": dev["door"],
            "device_id": dev["device_id"],
            "wall_ms": wall_ms,
            "by": payload.get("by") if isinstance(payload.get("by"), str) else None,
        }
        for channel in CHANNELS:
            conn.execute(
                "INSERT INTO notifications (device_id, event_id, channel, invitation_id, "
                "created_ms, status, next_at_ms, data) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) "
                "ON CONFLICT DO NOTHING",
                (dev["device_id"], event_id, channel, invitation_id, now, now, dumps(data)),
            )

    def claim_notifications(self, limit: int = 20, lease_ms: int = 60_000) -> list[dict[str, Any]]:
        """Take up to *limit* due notifications for sending: each gets one more attempt and
        is not due again for *lease_ms* (another process leaves it alone meanwhile)."""
        now = self.now_ms()
        lock = " FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgresql" else ""
        claimed: list[dict[str, Any]] = []
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT device_id, event_id, channel, attempts, created_ms, data "
                "FROM notifications WHERE status = 'pending' AND next_at_ms <= ? "
                f"ORDER BY next_at_ms, created_ms LIMIT ?{lock}",
                (now, limit),
            ).fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE notifications SET attempts = attempts + 1, next_at_ms = ? "
                    "WHERE device_id = ? AND event_id = ? AND channel = ?",
                    (now + lease_ms, row["device_id"], row["event_id"], row["channel"]),
                )
                claimed.append(
                    {
                        "device_id": row["device_id"],
                        "event_id": row["event_id"],
                        "channel": row["channel"],
                        "attempts": row["attempts"] + 1,
                        "created_ms": row["created_ms"],
                        "data": json.loads(row["data"]),
                    }
                )
        return claimed

    def finish_notification(
        self,
        item: Mapping[str, Any],
        status: str,
        *,
        error: str | None = None,
        retry_at_ms: int | None = None,
    ) -> None:
        """Record an attempt's outcome: a final *status*, or ``pending`` again at
        *retry_at_ms* with its *error*."""
        if status not in (*FINAL_STATUSES, "pending"):
            raise ValueError(f"status: {status!r} is not a notification status")
        now = self.now_ms()
        with self._tx() as conn:
            conn.execute(
                "UPDATE notifications SET status = ?, last_error = ?, next_at_ms = ?, "
                "done_ms = ? WHERE device_id = ? AND event_id = ? AND channel = ?",
                (
                    status,
                    None if error is None else error[:500],
                    retry_at_ms if retry_at_ms is not None else now,
                    None if status == "pending" else now,
                    item["device_id"],
                    item["event_id"],
                    item["channel"],
                ),
            )

    def notifications(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest notifications, newest first (for the admin and the tests)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT device_id, event_id, channel, invitation_id, created_ms, status, "
                "attempts, next_at_ms, last_error, done_ms FROM notifications "
                "ORDER BY created_ms DESC, device_id, event_id, channel LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(row) for row in rows]
