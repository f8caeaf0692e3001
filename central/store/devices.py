"""Enrollment and devices: enroll tokens, enrollment, device credentials, heartbeats and
self-test reports.

A device enrolls once with a one-time token an administrator minted for its door
(:meth:`DevicesMixin.enroll`) and gets a bearer credential; the central keeps hashes
only, of the token and of the credential. The rules are in docs/central-api.yaml.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from portier_common.eventpack import public_key_from_text

from ..errors import (
    BadRequest,
    DeviceDisabled,
    DeviceEnrolled,
    NotFound,
    TokenExpired,
    TokenInvalid,
    TokenScope,
    TokenUsed,
    Unauthorized,
)
from .base import StoreBase, dumps, sha256
from .db import Row
from .deltas import head_seq
from .events import GENESIS_HEX
from .keys import public_delta_key
from .stats import QUARTER_MS
from .validate import HASH_RE, MAX_SEQ, checked_bool, checked_name, checked_names

__all__ = ["DevicesMixin", "device_summary"]

log = logging.getLogger(__name__)


def device_summary(row: Row, verified: bool | None) -> dict[str, Any]:
    """Return a ``devices`` row as the ``DeviceSummary`` of the admin API."""
    heartbeat = row["last_heartbeat"]
    return {
        "device_id": row["device_id"],
        "site": row["site"],
        "door": row["door"],
        "enabled": bool(row["enabled"]),
        "guard_console": bool(row["guard_console"]),
        "reset_pending": bool(row["reset_allowed"]),
        "unique_events": row["unique_events"],
        "duplicates_seen": row["duplicates"],
        "rejected": row["rejected"],
        "gaps_answered": row["gaps"],
        "next_seq": row["next_seq"],
        "chain_ok": bool(row["chain_ok"]),
        "chain_broken_at": row["chain_broken_at"],
        "chain_break_reason": row["chain_break_reason"],
        "chain_verified": verified,
        "anchor_seq": row["anchor_seq"],
        "enrolled_at_ms": row["enrolled_at_ms"],
        "last_event_at_ms": row["last_event_at_ms"],
        "last_heartbeat_at_ms": row["last_heartbeat_at_ms"],
        "last_heartbeat": None if heartbeat is None else json.loads(heartbeat),
    }


class DevicesMixin(StoreBase):
    """Enroll tokens, enrollment, device credentials, heartbeats, self-test reports."""

    # -- enrollment -------------------------------------------------------------

    def create_enroll_token(
        self,
        *,
        door: str,
        site: str | None = None,
        ttl_s: int | None = None,
        zones: object = None,
    ) -> dict[str, Any]:
        """Create a one-time enrollment token for *door* of *site*.

        *zones* are the zones that door is in, as the administrator declares them:
        the device enrolled with the token gets them, and the central accepts its
        ``invitation.used`` / ``badge.counter`` claims for zone-wide credentials of
        those zones only (what the device's own configuration says is not trusted).

        Returns:
            ``{"enroll_token", "site", "door", "zones", "expires_at"}``; the token
            text is not stored (only its hash), so this is the only time it is shown.

        Raises:
            BadRequest: a bad name or ttl.
        """
        site = checked_name("site", site if site is not None else self.settings.site)
        door = checked_name("door", door)
        zone_list = checked_names("zones", zones)
        if ttl_s is None:
            ttl_s = self.settings.enroll_token_ttl_s
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 60 <= ttl_s <= 31_536_000:
            raise BadRequest("ttl_s: must be an integer from 60 to 31536000")
        token = "pe1_" + secrets.token_urlsafe(24)
        now = self.now_ms()
        expires_at = now // 1000 + ttl_s
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO enroll_tokens (token_hash, site, door, created_ms, expires_at, "
                "zones) VALUES (?, ?, ?, ?, ?, ?)",
                (sha256(token), site, door, now, expires_at, dumps(zone_list)),
            )
        return {
            "enroll_token": token,
            "site": site,
            "door": door,
            "zones": zone_list,
            "expires_at": expires_at,
        }

    def enroll(self, body: Mapping[str, Any], credential: str | None = None) -> dict[str, Any]:
        """Consume an enrollment token and issue the device's credential.

        *body* is an ``EnrollRequest``; *credential* the ``Authorization: Bearer``
        credential sent with it, if any. The rules (docs/central-api.yaml):

        * the token is bound to its site and door and enrolls a **new** device id;
        * an existing device id is enrolled again only with that device's current
          credential (*credential*), or once after an admin reset
          (:meth:`reset_device`); otherwise ``device_enrolled`` (409);
        * a used token is accepted again only within the retry window, for the same
          device id, and with the ``retry_secret`` sent with the first use (or the
          device's current credential): an answer lost on the way can be asked for
          again, by that device only.

        Returns:
            an ``EnrollResponse`` dict (with the central's ``delta_key`` to pin).

        Raises:
            BadRequest, TokenInvalid, TokenExpired, TokenScope, TokenUsed, DeviceEnrolled.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        token = body.get("enroll_token")
        if not isinstance(token, str) or not 1 <= len(token) <= 128:
            raise BadRequest("enroll_token: must be text of 1 to 128 characters")
        device_id = body.get("device_id")
        if device_id is not None:
            checked_name("device_id", device_id)
        asked_site = body.get("site")
        asked_door = body.get("door")
        if asked_site is not None:
            checked_name("site", asked_site)
        if asked_door is not None:
            checked_name("door", asked_door)
        hardware = body.get("hardware", {})
        versions = body.get("versions", {})
        if not isinstance(hardware, dict):
            raise BadRequest("hardware: must be an object")
        if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
            raise BadRequest("versions: must be an object of strings")
        guard_console = checked_bool("guard_console", body.get("guard_console", False))
        retry_secret = body.get("retry_secret")
        if retry_secret is not None and (
            not isinstance(retry_secret, str)
            or not 22 <= len(retry_secret) <= 128
            or not retry_secret.isascii()
            or not retry_secret.isprintable()
        ):
            raise BadRequest("retry_secret: must be 22 to 128 printable ASCII characters")
        pack_key = None
        if body.get("event_pack_key") is not None:
            # The device's X25519 public key: event packs are encrypted to it (eventpacks.py).
            try:
                pack_key = public_key_from_text(body["event_pack_key"])
            except ValueError:
                raise BadRequest(
                    "event_pack_key: must be a 32-byte X25519 public key in base64url"
                ) from None
        head = body.get("journal_head")
        if head is not None:
            if not isinstance(head, dict):
                raise BadRequest("journal_head: must be an object")
            seq = head.get("next_seq")
            prev = head.get("prev_hash")
            if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
                raise BadRequest("journal_head.next_seq: must be an integer >= 1")
            if not isinstance(prev, str) or not HASH_RE.match(prev):
                raise BadRequest("journal_head.prev_hash: must be 64 lower-case hex digits")

        now = self.now_ms()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM enroll_tokens WHERE token_hash = ?", (sha256(token),)
            ).fetchone()
            if row is None:
                raise TokenInvalid("enrollment token is unknown")
            if asked_site not in (None, row["site"]) or asked_door not in (None, row["door"]):
                raise TokenScope(
                    f"enrollment token is for site {row['site']!r} door {row['door']!r}"
                )
            device = None
            if device_id is not None:
                device = conn.execute(
                    "SELECT * FROM devices WHERE device_id = ?" + self._db.for_update,
                    (device_id,),
                ).fetchone()
            # Proof that the caller is the device itself: its current credential.
            holds_credential = (
                device is not None
                and bool(credential)
                and device["credential_hash"] is not None
                and secrets.compare_digest(device["credential_hash"], sha256(credential or ""))
            )
            retry = False
            if row["used_by"] is not None:
                window_ms = self.settings.enroll_retry_window_s * 1000
                same_secret = (
                    row["retry_hash"] is not None
                    and retry_secret is not None
                    and secrets.compare_digest(row["retry_hash"], sha256(retry_secret))
                )
                if (
                    device_id != row["used_by"]
                    or now - row["used_at_ms"] > window_ms
                    or not (same_secret or holds_credential)
                ):
                    raise TokenUsed("enrollment token was already used")
                retry = True
            elif now // 1000 >= row["expires_at"]:
                raise TokenExpired("enrollment token has expired")
            if device is not None and not retry:
                if device["reset_allowed"]:
                    log.info("device %s enrolls again after an admin reset", device_id)
                elif not holds_credential or not device["enabled"]:
                    raise DeviceEnrolled(
                        f"device {device_id!r} is already enrolled: enroll it again with its "
                        "current credential (Authorization: Bearer), or after "
                        f"`portier-central device reset {device_id}`"
                    )
            if device_id is None:
                device_id = "dev-" + secrets.token_hex(6)
            issued = "pd1_" + secrets.token_urlsafe(32)
            if device is None:
                next_seq, last_hash, anchor_seq, anchor_prev = 1, GENESIS_HEX, None, None
                if head is not None and head["next_seq"] != 1:
                    next_seq, last_hash = head["next_seq"], head["prev_hash"]
                    anchor_seq, anchor_prev = next_seq, last_hash
                conn.execute(
                    "INSERT INTO devices (device_id, site, door, credential_hash, enrolled_at_ms, "
                    "hardware, versions, next_seq, last_hash, anchor_seq, anchor_prev_hash, "
                    "zones, guard_console, pack_key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        device_id,
                        row["site"],
                        row["door"],
                        sha256(issued),
                        now,
                        dumps(hardware),
                        dumps(versions),
                        next_seq,
                        last_hash,
                        anchor_seq,
                        anchor_prev,
                        row["zones"],
                        int(guard_console),
                        pack_key,
                    ),
                )
            else:
                # Re-enrollment keeps the event history and the chain state.
                conn.execute(
                    "UPDATE devices SET site = ?, door = ?, credential_hash = ?, enabled = 1, "
                    "hardware = ?, versions = ?, zones = ?, guard_console = ?, "
                    "reset_allowed = 0, pack_key = coalesce(?, pack_key) WHERE device_id = ?",
                    (
                        row["site"],
                        row["door"],
                        sha256(issued),
                        dumps(hardware),
                        dumps(versions),
                        row["zones"],
                        int(guard_console),
                        pack_key,
                        device_id,
                    ),
                )
            conn.execute(
                "UPDATE enroll_tokens SET used_by = ?, used_at_ms = coalesce(used_at_ms, ?), "
                "retry_hash = coalesce(retry_hash, ?) WHERE token_hash = ?",
                (
                    device_id,
                    now,
                    None if retry_secret is None else sha256(retry_secret),
                    sha256(token),
                ),
            )
            next_seq = conn.execute(
                "SELECT next_seq FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()["next_seq"]
        log.info("device %s enrolled for %s/%s", device_id, row["site"], row["door"])
        return {
            "device_id": device_id,
            "device_token": issued,
            "token_type": "Bearer",
            "site": row["site"],
            "door": row["door"],
            "zones": json.loads(row["zones"]),
            "guard_console": guard_console,
            "next_seq": next_seq,
            "server_time_ms": self.now_ms(),
            "limits": self.settings.limits(),
            "delta_key": public_delta_key(self._delta_key),
        }

    def reset_device(self, device_id: str) -> dict[str, Any]:
        """Allow *device_id* one new enrollment without its credential (a re-installed
        device); its current credential stops working at once.

        Raises:
            NotFound: no such device.
        """
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE devices SET reset_allowed = 1, credential_hash = NULL WHERE device_id = ?",
                (device_id,),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no device {device_id!r}")
            row = conn.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        log.warning("device %s reset: it may enroll once more with a new token", device_id)
        return device_summary(row, None)

    def authenticate(self, credential: str | None) -> dict[str, Any]:
        """Return ``{"device_id", "site", "door", "guard_console"}`` of the device holding
        *credential*.

        Raises:
            Unauthorized: no credential, or an unknown one.
            DeviceDisabled: the device is disabled.
        """
        if not credential:
            raise Unauthorized("missing device credential (Authorization: Bearer ...)")
        with self._read() as conn:
            row = conn.execute(
                "SELECT device_id, site, door, enabled, guard_console FROM devices "
                "WHERE credential_hash = ?",
                (sha256(credential),),
            ).fetchone()
        if row is None:
            raise Unauthorized("unknown device credential: enroll again")
        if not row["enabled"]:
            raise DeviceDisabled(f"device {row['device_id']} is disabled")
        return {
            "device_id": row["device_id"],
            "site": row["site"],
            "door": row["door"],
            "guard_console": bool(row["guard_console"]),
        }

    def disable_device(self, device_id: str) -> dict[str, Any]:
        """Disable *device_id* (its calls then get 403); return its summary.

        Raises:
            NotFound: no such device.
        """
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE devices SET enabled = 0 WHERE device_id = ?", (device_id,)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no device {device_id!r}")
            row = conn.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return device_summary(row, None)

    # -- heartbeat --------------------------------------------------------------

    def heartbeat(
        self, device_id: str, body: Mapping[str, Any], received_at_ms: int
    ) -> dict[str, Any]:
        """Record a health report; return the ``HeartbeatResponse``.

        Raises:
            BadRequest: *body* is not an object with an integer ``sent_at_ms``.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        sent = body.get("sent_at_ms")
        if isinstance(sent, bool) or not isinstance(sent, int):
            raise BadRequest("sent_at_ms: must be an integer (Unix ms)")
        for field, kind in (
            ("backlog", dict),
            ("disk", dict),
            ("versions", dict),
            ("alarms", list),
            ("doors", list),
        ):
            if field in body and not isinstance(body[field], kind):
                raise BadRequest(f"{field}: must be {'an object' if kind is dict else 'a list'}")
        # Device traffic: the UPDATE locks the device row; nothing is read, then written.
        with self._tx(rules_lock=False) as conn:
            dev = conn.execute(
                "SELECT next_seq, chain_ok FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            if dev is None:
                raise NotFound(f"no device {device_id!r}")
            conn.execute(
                "UPDATE devices SET last_heartbeat_at_ms = ?, last_heartbeat = ? "
                "WHERE device_id = ?",
                (received_at_ms, dumps(dict(body)), device_id),
            )
            # Its availability over time (the statistics, central/store/stats.py): one row
            # per quarter hour the device was heard in, kept when the heartbeat is replaced.
            conn.execute(
                "INSERT INTO device_contact (device_id, quarter) VALUES (?, ?) "
                "ON CONFLICT (device_id, quarter) DO NOTHING",
                (device_id, received_at_ms // QUARTER_MS),
            )
            head = head_seq(conn)
        return {
            "sent_at_ms": sent,
            "received_at_ms": received_at_ms,
            "deltas_cursor": str(head),
            "next_seq": dev["next_seq"],
            "chain_ok": bool(dev["chain_ok"]),
            "heartbeat_interval_s": self.settings.heartbeat_interval_s,
            "poll_interval_s": self.settings.poll_interval_s,
            # Last, as close to the answer leaving as possible (t2).
            "server_time_ms": self.now_ms(),
        }

    # -- self-test reports -------------------------------------------------------

    def put_selftest(
        self, device_id: str, body: Mapping[str, Any], received_at_ms: int
    ) -> dict[str, Any]:
        """Keep *body* (a ``SelfTestReport``) as the latest report of *device_id*.

        Returns:
            a ``SelfTestStored`` dict (``device_id``, ``received_at_ms``, ``ok``).

        Raises:
            BadRequest: *body* is not an object with a boolean ``ok`` and a list
                ``results``. NotFound: no such device.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        ok = body.get("ok")
        if not isinstance(ok, bool):
            raise BadRequest("ok: must be true or false")
        results = body.get("results")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise BadRequest("results: must be a list of objects")
        with self._tx(rules_lock=False) as conn:  # one upsert: device traffic
            if (
                conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone()
                is None
            ):
                raise NotFound(f"no device {device_id!r}")
            conn.execute(
                "INSERT INTO selftest_reports (device_id, received_at_ms, ok, report) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                "received_at_ms = excluded.received_at_ms, ok = excluded.ok, "
                "report = excluded.report",
                (device_id, received_at_ms, int(ok), dumps(dict(body))),
            )
            # Every report, for the console's technical log (schema 9).
            conn.execute(
                "INSERT INTO selftest_log (device_id, received_at_ms, ok, report) "
                "VALUES (?, ?, ?, ?)",
                (device_id, received_at_ms, int(ok), dumps(dict(body))),
            )
        return {"device_id": device_id, "received_at_ms": received_at_ms, "ok": ok}

    def selftest(self, device_id: str) -> dict[str, Any]:
        """Return the ``StoredSelfTest`` of *device_id*: its latest report and when it came.

        Raises:
            NotFound: no such device, or it never sent a report.
        """
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM selftest_reports WHERE device_id = ?", (device_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no self-test report from device {device_id!r}")
        return {
            "device_id": device_id,
            "received_at_ms": row["received_at_ms"],
            "ok": bool(row["ok"]),
            "report": json.loads(row["report"]),
        }
