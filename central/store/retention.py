"""Retention: visitors' personal data is purged after ``retention_days`` (default 90).

What a purge does, in one transaction, to what is older than the cutoff (now minus
``settings.retention_days``):

* **events** received before the cutoff (``received_at_ms``, the central's clock, not the
  device's): every personal field of the payload (:data:`PSEUDONYMISED_KEYS`: the visitor's,
  a badge holder's, a guard's or the host's name, an e-mail address, a phone number, at any
  depth) becomes a keyed pseudonym (:func:`pseudonym`: ``psn_`` and 16 hex digits of
  HMAC-SHA256 under the central's pseudonym key, the same for the same name, so counts and
  "how many visits by the same visitor" still work), a photo (:data:`DROPPED_KEYS`) becomes
  null; the event is marked ``purged_at_ms``. Its seq, id, times, type, ``prev_hash`` and
  ``hash`` stay as the device wrote them: the chain still verifies, by its links across
  the purged events (:mod:`central.store.eventchain` says what that proves). An event with
  nothing personal is left as it was (still re-hashable).
* **invitations** that expired before the cutoff: visitor and host pseudonymised in the
  stored invitation and in the deltas log (``changes``) that new doors read, host e-mail
  removed; marked ``purged_at_ms``. A group of invitations (schema 13: a recurring
  visitor's days, a group, a CSV import) whose every invitation is purged loses its label
  (a recurring visitor's is their name). The console's CSV uploads never confirmed
  (``import_drafts``) are deleted once an hour old.
* **host notifications** created before the cutoff: the message's visitor, host and
  recipient pseudonymised, ``last_error`` (it may quote the address) cleared; one still
  pending is given up (``failed``, "purged by retention").

* **alarm notes**: an acknowledgement's note (``alarm_acks.note``) is free text that may name
  a visitor ("let Ada out by the fire door"): it cannot be pseudonymised, so it is emptied
  after ``retention_days`` like the visitors' data; who acknowledged, which alarm and when stay
  for the technical log.

**The technical log** (schema 9, 14 and 16: ``selftest_log``, ``alarm_acks``,
``device_contact``, ``event_packs``) names no visitor: a device's self-test reports, who of
the security office acknowledged which alarm, the quarter hours a device was heard in (its
availability), the event packs made (an event's name, a device, the operator, a guest
count, never the guests). It is kept longer, ``technical_log_days`` (default 400: last
year's alarms and availability), then deleted (not pseudonymised: nothing in it is needed
once old), by the same purge and in the same transaction:

* ``selftest_log`` rows received before the technical cutoff (each device's latest report
  stays in ``selftest_reports``);
* ``alarm_acks`` acknowledged before it, except those of an alarm a device's latest
  heartbeat still lists (the alarm would show as never acknowledged again);
* ``device_contact`` quarters before it;
* ``event_packs`` whose event ended (``not_after_ms``) before it, except the newest pack: the
  next serial is the highest plus one, and a device refuses a pack whose serial is not above
  the last it installed.

Each purge that changed something (and each one run from the command line) appends one
``retention.purge`` row to the audit chain, in the same transaction: who (``system``,
NULL operator), the cutoff and the counts, and each device's purged seq ranges.

The pseudonym key is 32 random bytes in the ``meta`` table (``pseudonym_key``), made by the
first purge. Pseudonymised data is still personal data in law (GDPR recital 26) as long as
the key exists; deleting the key row makes the pseudonyms anonymous for good.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from portier_common.encoding import canonical_json

from .base import StoreBase, dumps
from .db import Connection
from .monitor import SAME_RAISE_MS
from .operators import journal
from .stats import QUARTER_MS
from .visits import DRAFT_TTL_MS

__all__ = [
    "DROPPED_KEYS",
    "PSEUDONYMISED_KEYS",
    "PSEUDONYM_PREFIX",
    "RetentionMixin",
    "pseudonym",
    "pseudonymise",
]

log = logging.getLogger(__name__)

#: Payload and record fields holding a person's name or contact: replaced by a pseudonym.
PSEUDONYMISED_KEYS = frozenset(
    {"visitor", "holder", "host", "name", "host_email", "email", "phone"}
)
#: Fields dropped outright (null): no statistic needs them.
DROPPED_KEYS = frozenset({"photo"})
PSEUDONYM_PREFIX = "psn_"
_KEY_NAME = "pseudonym_key"
_DAY_MS = 86_400_000


def pseudonym(key: bytes, value: str) -> str:
    """The keyed pseudonym of *value* (trimmed, case-folded): ``psn_`` + 16 hex digits."""
    normal = " ".join(value.split()).casefold()
    digest = hmac.new(key, normal.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:16]


def pseudonymise(value: Any, key: bytes) -> tuple[Any, bool]:
    """Return *value* (JSON data) with every personal field pseudonymised or dropped, and
    whether anything changed. Already pseudonymised values are left as they are."""
    if isinstance(value, list):
        changed = False
        items = []
        for item in value:
            new, did = pseudonymise(item, key)
            items.append(new)
            changed = changed or did
        return items, changed
    if not isinstance(value, Mapping):
        return value, False
    out: dict[str, Any] = {}
    changed = False
    for name, item in value.items():
        if name in DROPPED_KEYS:
            out[name] = None
            changed = changed or item is not None
        elif name in PSEUDONYMISED_KEYS and isinstance(item, str):
            if item == "" or item.startswith(PSEUDONYM_PREFIX):
                out[name] = item
            else:
                out[name] = pseudonym(key, item)
                changed = True
        elif (
            name in PSEUDONYMISED_KEYS
            and item is not None
            and not isinstance(item, (Mapping, list))
        ):
            out[name] = None  # a number or a flag where a name goes: nothing to keep
            changed = True
        else:
            out[name], did = pseudonymise(item, key)
            changed = changed or did
    return out, changed


def _ranges(seqs: list[int]) -> list[list[int]]:
    """[1, 2, 3, 7] -> [[1, 3], [7, 7]]."""
    out: list[list[int]] = []
    for seq in sorted(seqs):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def pseudonym_key(conn: Connection, *, create: bool) -> bytes | None:
    """The central's pseudonym key (``meta.pseudonym_key``), made when *create* and missing."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_KEY_NAME,)).fetchone()
    if row is not None:
        return bytes.fromhex(str(row["value"]))
    if not create:
        return None
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (_KEY_NAME, secrets.token_hex(32)),
    )
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_KEY_NAME,)).fetchone()
    return bytes.fromhex(str(row["value"]))


class RetentionMixin(StoreBase):
    """The retention purge (``portier-central purge``, and periodically in ``serve``)."""

    def purge(
        self,
        *,
        retention_days: int | None = None,
        dry_run: bool = False,
        by: str = "system",
        record_empty: bool = False,
        technical_log_days: int | None = None,
    ) -> dict[str, Any]:
        """Pseudonymise what is older than *retention_days* (default: the setting), and
        delete the technical log older than *technical_log_days* (default: the setting).

        Args:
            dry_run: count what would be purged; change nothing, record nothing.
            by: who ran it, for the audit row (``system``: the serve loop; ``cli``).
            record_empty: append the audit row even when nothing was purged.

        Returns:
            ``{"dry_run", "retention_days", "cutoff_ms", "events", "invitations",
            "notifications", "devices": {device_id: [[first_seq, last_seq], ...]},
            "technical_log_days", "technical_cutoff_ms", "technical": {"selftest_log",
            "alarm_acks", "alarm_notes", "device_contact", "event_packs"}}`` (the rows
            deleted, or the notes emptied).
        """
        days = self.settings.retention_days if retention_days is None else retention_days
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36_500:
            raise ValueError(f"retention_days: {days!r} must be 1 to 36500 days")
        tech_days = (
            self.settings.technical_log_days if technical_log_days is None else technical_log_days
        )
        if (
            isinstance(tech_days, bool)
            or not isinstance(tech_days, int)
            or not 1 <= tech_days <= 36_500
        ):
            raise ValueError(f"technical_log_days: {tech_days!r} must be 1 to 36500 days")
        now = self.now_ms()
        cutoff = now - days * _DAY_MS
        tech_cutoff = now - tech_days * _DAY_MS
        with self._tx() as conn:
            key = pseudonym_key(conn, create=not dry_run) or secrets.token_bytes(32)
            events = self._purge_events(conn, key, cutoff, now, dry_run)
            invitations = self._purge_invitations(conn, key, cutoff, now, dry_run)
            notifications = self._purge_notifications(conn, key, cutoff, now, dry_run)
            technical = self._purge_technical(conn, cutoff, tech_cutoff, dry_run)
            if not dry_run:  # a CSV upload never confirmed: its guest list goes after an hour
                conn.execute(
                    "DELETE FROM import_drafts WHERE created_at_ms < ?", (now - DRAFT_TTL_MS,)
                )
            result = {
                "dry_run": dry_run,
                "retention_days": days,
                "cutoff_ms": cutoff,
                "events": sum(len(seqs) for seqs in events.values()),
                "invitations": invitations,
                "notifications": notifications,
                "devices": {device: _ranges(seqs) for device, seqs in sorted(events.items())},
                "technical_log_days": tech_days,
                "technical_cutoff_ms": tech_cutoff,
                "technical": technical,
            }
            changed = result["events"] or invitations or notifications or any(technical.values())
            if not dry_run and (changed or record_empty):
                detail = {k: v for k, v in result.items() if k != "dry_run"}
                journal(conn, now, None, "retention.purge", {"by": by, **detail})
        if changed:
            log.info(
                "retention%s: %d events, %d invitations, %d notifications older than %d days",
                " (dry run)" if dry_run else "",
                result["events"],
                invitations,
                notifications,
                days,
            )
        return result

    @staticmethod
    def _purge_events(
        conn: Connection, key: bytes, cutoff: int, now: int, dry_run: bool
    ) -> dict[str, list[int]]:
        # Events already looked at by an earlier purge are below its cutoff (the watermark):
        # only the newly old ones are read, through the received_at_ms index.
        mark = conn.execute(
            "SELECT value FROM meta WHERE key = 'retention_events_cutoff'"
        ).fetchone()
        # (Five minutes back: several central processes' clocks differ a little.)
        low = int(str(mark["value"])) - 300_000 if mark is not None else -(2**62)
        purged: dict[str, list[int]] = {}
        rows = conn.execute(
            "SELECT device_id, seq, payload FROM events WHERE received_at_ms >= ? AND "
            "received_at_ms < ? AND purged_at_ms IS NULL AND payload IS NOT NULL",
            (low, cutoff),
        ).fetchall()
        for row in rows:
            try:
                payload = json.loads(row["payload"])
            except ValueError:
                continue
            new, changed = pseudonymise(payload, key)
            if not changed:
                continue
            purged.setdefault(row["device_id"], []).append(row["seq"])
            if not dry_run:
                conn.execute(
                    "UPDATE events SET payload = ?, purged_at_ms = ? WHERE device_id = ? AND "
                    "seq = ?",
                    (canonical_json(new), now, row["device_id"], row["seq"]),
                )
        if not dry_run and (mark is None or cutoff > int(str(mark["value"]))):
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('retention_events_cutoff', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(cutoff),),
            )
        return purged

    @staticmethod
    def _purge_invitations(
        conn: Connection, key: bytes, cutoff: int, now: int, dry_run: bool
    ) -> int:
        rows = conn.execute(
            "SELECT id, data FROM invitations WHERE purged_at_ms IS NULL AND expires < ?",
            (cutoff // 1000,),
        ).fetchall()
        if dry_run:
            return len(rows)
        for row in rows:
            data, _ = pseudonymise(json.loads(row["data"]), key)
            conn.execute(
                "UPDATE invitations SET data = ?, host_email = NULL, visitor_email = NULL, "
                "purged_at_ms = ? WHERE id = ?",
                (dumps(data), now, row["id"]),
            )
            # What a door that polls from the start would still be sent.
            for change in conn.execute(
                "SELECT seq, data FROM changes WHERE kind = 'invitation' AND key = ? "
                "AND data IS NOT NULL",
                (row["id"],),
            ).fetchall():
                new, changed = pseudonymise(json.loads(change["data"]), key)
                if changed:
                    conn.execute(
                        "UPDATE changes SET data = ? WHERE seq = ?", (dumps(new), change["seq"])
                    )
        if rows:
            conn.execute(
                "UPDATE invitation_groups SET label = '-' WHERE label <> '-' AND NOT EXISTS "
                "(SELECT 1 FROM invitations i WHERE i.group_id = invitation_groups.id "
                "AND i.purged_at_ms IS NULL)"
            )
        return len(rows)

    @staticmethod
    def _purge_technical(
        conn: Connection, cutoff: int, tech_cutoff: int, dry_run: bool
    ) -> dict[str, int]:
        """The alarm notes older than the visitors' *cutoff* emptied; the technical log
        older than *tech_cutoff* deleted (the module's docstring says what and why).
        Returns the count of each."""
        # The alarms still raised, by each device's latest heartbeat: their ack stays (matched
        # as acknowledge_alarm matches them, within SAME_RAISE_MS).
        raised: dict[tuple[str, str], list[int]] = {}
        for device in conn.execute(
            "SELECT device_id, last_heartbeat FROM devices WHERE last_heartbeat IS NOT NULL"
        ).fetchall():
            try:
                alarms = json.loads(device["last_heartbeat"]).get("alarms") or []
            except (ValueError, AttributeError):
                continue
            for alarm in alarms if isinstance(alarms, list) else []:
                if isinstance(alarm, dict) and isinstance(alarm.get("since_ms"), int):
                    key = (device["device_id"], str(alarm.get("code")))
                    raised.setdefault(key, []).append(alarm["since_ms"])
        old_acks = [
            (row["device_id"], row["code"], row["since_ms"])
            for row in conn.execute(
                "SELECT device_id, code, since_ms FROM alarm_acks WHERE acked_at_ms < ?",
                (tech_cutoff,),
            ).fetchall()
            if not any(
                abs(since - row["since_ms"]) <= SAME_RAISE_MS
                for since in raised.get((row["device_id"], row["code"]), [])
            )
        ]
        counts = {
            "selftest_log": "SELECT count(*) AS n FROM selftest_log WHERE received_at_ms < ?",
            "alarm_notes": "SELECT count(*) AS n FROM alarm_acks WHERE acked_at_ms < ? "
            "AND note <> ''",
            "device_contact": "SELECT count(*) AS n FROM device_contact WHERE quarter < ?",
            "event_packs": "SELECT count(*) AS n FROM event_packs WHERE not_after_ms < ? "
            "AND serial < (SELECT max(serial) FROM event_packs)",
        }
        args = {
            "selftest_log": tech_cutoff,
            "alarm_notes": cutoff,
            "device_contact": tech_cutoff // QUARTER_MS,
            "event_packs": tech_cutoff,
        }
        result = {
            name: int(conn.execute(sql, (args[name],)).fetchone()["n"])
            for name, sql in counts.items()
        }
        result["alarm_acks"] = len(old_acks)
        if dry_run:
            return result
        conn.execute(
            "UPDATE alarm_acks SET note = '' WHERE acked_at_ms < ? AND note <> ''", (cutoff,)
        )
        for ack in old_acks:
            conn.execute(
                "DELETE FROM alarm_acks WHERE device_id = ? AND code = ? AND since_ms = ?", ack
            )
        conn.execute("DELETE FROM selftest_log WHERE received_at_ms < ?", (tech_cutoff,))
        conn.execute("DELETE FROM device_contact WHERE quarter < ?", (tech_cutoff // QUARTER_MS,))
        conn.execute(
            "DELETE FROM event_packs WHERE not_after_ms < ? "
            "AND serial < (SELECT max(serial) FROM event_packs)",
            (tech_cutoff,),
        )
        return result

    @staticmethod
    def _purge_notifications(
        conn: Connection, key: bytes, cutoff: int, now: int, dry_run: bool
    ) -> int:
        rows = conn.execute(
            "SELECT device_id, event_id, channel, status, data FROM notifications "
            "WHERE purged_at_ms IS NULL AND created_ms < ?",
            (cutoff,),
        ).fetchall()
        if dry_run:
            return len(rows)
        for row in rows:
            data, _ = pseudonymise(json.loads(row["data"]), key)
            pending = row["status"] == "pending"
            conn.execute(
                "UPDATE notifications SET data = ?, purged_at_ms = ?, status = ?, "
                "last_error = ?, done_ms = coalesce(done_ms, ?) "
                "WHERE device_id = ? AND event_id = ? AND channel = ?",
                (
                    dumps(data),
                    now,
                    "failed" if pending else row["status"],
                    "purged by retention before it was sent" if pending else None,
                    now,
                    row["device_id"],
                    row["event_id"],
                    row["channel"],
                ),
            )
        return len(rows)
