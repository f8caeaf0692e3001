"""Events and chains: ``POST /v1/events``, each device's hash chain, exactly once and in order.

A batch is one transaction. Events are placed at the device's cursor (``next_seq``)
only: an earlier seq is a duplicate or a conflict, a later one waits (``retry_later``),
and a device's declared ``journal.gap`` moves the cursor past events it lost. Each
placed event's link is checked (its ``prev_hash`` is the hash before it, its hash is
its content's); a broken link is recorded once per device (``chain_ok``). Event hashes
are checked with the journal's own functions (:mod:`portier_common.encoding`:
``canonical_json`` and ``event_hash``), so the device and the central can never
disagree on the encoding. Claims some events carry (a single-use invitation used, a
badge counter) are shared with the site's doors by :mod:`central.store.claims`.
Reading the events back and re-walking a chain: :mod:`central.store.audit`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from portier_common.encoding import GENESIS_HASH, canonical_json, check_type, event_hash
from portier_common.errors import InvalidEvent

from ..errors import NotFound
from .claims import EVENT_BADGE_COUNTER, EVENT_INVITATION_USED, ClaimsMixin
from .db import Connection, Row
from .notify import CHECKIN_EVENT, NotifyMixin
from .stats import record_visit
from .validate import HASH_RE, MAX_SEQ, hash_field, int_field

__all__ = ["GENESIS_HEX", "EventsMixin"]

log = logging.getLogger(__name__)

#: The ``prev_hash`` of a chain's first event, as stored (hex).
GENESIS_HEX = GENESIS_HASH.hex()
_I64 = 2**63


#: The events whose claims go to the deltas log (:mod:`central.store.claims`).
CLAIM_EVENTS = frozenset({EVENT_INVITATION_USED, EVENT_BADGE_COUNTER})


class EventsMixin(ClaimsMixin, NotifyMixin):
    """Event upload: placement, the chain check, the claims events carry, and the host
    notifications a check-in queues (:mod:`central.store.notify`)."""

    def upload_events(self, device_id: str, events: Sequence[object]) -> dict[str, Any]:
        """Store a batch of events for *device_id*; return the ``EventsResponse``.

        The whole batch is one transaction. Each event is acked ``accepted``,
        ``duplicate``, ``rejected`` or ``retry_later`` (docs/central-api.yaml).

        Raises:
            NotFound: no such device (a caller bug: authenticate first).
        """
        now = self.now_ms()
        acks: list[dict[str, Any] | None] = [None] * len(events)
        placeable: list[tuple[int, int, str, Mapping[str, Any], bytes]] = []
        for index, raw in enumerate(events):
            event_id, id_bytes, seq, problem = self._identify(raw)
            if problem is not None:
                sent_id = raw.get("id") if isinstance(raw, Mapping) else None
                acks[index] = {
                    "id": sent_id if isinstance(sent_id, str) else None,
                    "seq": seq,
                    "status": "rejected",
                    "reason": "invalid",
                    "detail": problem,
                }
                continue
            placeable.append((seq, index, event_id, raw, id_bytes))  # type: ignore[arg-type]
        placeable.sort(key=lambda item: (item[0], item[1]))
        # A claim is shared through the deltas log, which only the rules lock appends to;
        # a batch without one (nearly all) locks its device row only, so devices' uploads
        # run side by side (docs/central-store.md, "Concurrency").
        claims = any(item[3].get("type") in CLAIM_EVENTS for item in placeable)

        with self._tx(rules_lock=claims) as conn:
            # The device row orders the device's batches: its cursor (next_seq, last_hash)
            # is read, checked and moved by one upload at a time.
            dev = conn.execute(
                "SELECT * FROM devices WHERE device_id = ?" + self._db.for_update, (device_id,)
            ).fetchone()
            if dev is None:
                raise NotFound(f"no device {device_id!r}")
            state = _ChainState(dev)
            known = self._known_ids(conn, device_id, [item[2] for item in placeable])
            counts = {
                "duplicates": 0,
                "rejected": len(events) - len(placeable),
                "gaps": 0,
                "new": 0,
            }
            rows: list[tuple[Any, ...]] = []
            for seq, index, event_id, raw, id_bytes in placeable:
                ack = {"id": event_id, "seq": seq}
                acks[index] = ack
                claimed = raw.get("hash")
                if event_id in known:
                    stored_seq, stored_hash, status, reason = known[event_id]
                    if status == "rejected":
                        assert reason is not None  # a rejection always has its reason
                        ack.update(status="rejected", reason=reason.split(":", 1)[0], detail=reason)
                        counts["rejected"] += 1
                    elif stored_hash == claimed and stored_seq == seq:
                        ack["status"] = "duplicate"
                        counts["duplicates"] += 1
                    else:
                        ack.update(
                            status="rejected",
                            reason="id_conflict",
                            detail=f"id already stored at seq {stored_seq} with another hash",
                        )
                        counts["rejected"] += 1
                    continue
                if raw.get("type") == "journal.gap" and seq >= state.next_seq:
                    self._skip_declared_gap(conn, device_id, state, seq, raw, rows)
                if seq < state.next_seq:
                    ack.update(
                        status="rejected",
                        reason="seq_conflict",
                        detail=f"seq {seq} is already held by another event id",
                    )
                    counts["rejected"] += 1
                    continue
                if seq > state.next_seq:
                    ack.update(
                        status="retry_later",
                        reason="gap",
                        detail=f"waiting for seq {state.next_seq} first",
                    )
                    counts["gaps"] += 1
                    continue
                stored = self._place(conn, dev, state, seq, event_id, id_bytes, raw, now, rows)
                known[event_id] = (seq, stored["hash"], stored["status"], stored["reason"])
                if stored["status"] == "stored":
                    ack["status"] = "accepted"
                    counts["new"] += 1
                else:
                    ack.update(status="rejected", reason="invalid", detail=stored["reason"])
                    counts["rejected"] += 1
            conn.executemany(
                "INSERT INTO events (device_id, seq, id, wall_ms, mono_ns, type, payload, "
                "prev_hash, hash, received_at_ms, link_ok, status, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute(
                "UPDATE devices SET next_seq = ?, last_hash = ?, chain_ok = ?, "
                "chain_broken_at = ?, chain_break_reason = ?, unique_events = unique_events + ?, "
                "duplicates = duplicates + ?, rejected = rejected + ?, gaps = gaps + ?, "
                "last_event_at_ms = CASE WHEN ? > 0 THEN ? ELSE last_event_at_ms END "
                "WHERE device_id = ?",
                (
                    state.next_seq,
                    state.last_hash,
                    int(state.chain_ok),
                    state.broken_at,
                    state.break_reason,
                    counts["new"],
                    counts["duplicates"],
                    counts["rejected"],
                    counts["gaps"],
                    counts["new"],
                    now,
                    device_id,
                ),
            )
        return {
            "acks": acks,
            "next_seq": state.next_seq,
            "chain_ok": state.chain_ok,
            "server_time_ms": self.now_ms(),
        }

    @staticmethod
    def _identify(raw: object) -> tuple[str | None, bytes, int | None, str | None]:
        """Return (canonical id, id bytes, seq, problem): what is needed to place an event."""
        if not isinstance(raw, Mapping):
            return None, b"", None, "event: must be a JSON object"
        seq = raw.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
            return None, b"", None, f"seq: must be an integer >= 1, got {seq!r}"
        text = raw.get("id")
        try:
            if not isinstance(text, str):
                raise ValueError
            parsed = uuid.UUID(text)
        except ValueError:
            return None, b"", seq, f"id: must be a UUID, got {text!r}"
        return str(parsed), parsed.bytes, seq, None

    def _known_ids(
        self, conn: Connection, device_id: str, ids: list[str]
    ) -> dict[str, tuple[int, str | None, str, str | None]]:
        known: dict[str, tuple[int, str | None, str, str | None]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = self._db.marks(len(chunk))
            for row in conn.execute(
                f"SELECT id, seq, hash, status, reason FROM events "
                f"WHERE device_id = ? AND id IN ({marks})",
                (device_id, *chunk),
            ):
                known[row["id"]] = (row["seq"], row["hash"], row["status"], row["reason"])
        return known

    @staticmethod
    def _skip_declared_gap(
        conn: Connection,
        device_id: str,
        state: _ChainState,
        seq: int,
        raw: Mapping[str, Any],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Let a device's ``journal.gap`` event continue its chain past events it lost.

        The device lost events ``from_seq..to_seq`` (its WAL was damaged) and journaled
        the gap at ``to_seq + 1``, chained to its last surviving event (``from_seq - 1``).
        Accepted when ``from_seq <= next_seq <= seq``: the central moves its cursor to
        the gap event and checks its ``prev_hash`` against the hash it holds for
        ``from_seq - 1`` -- the lost events it already received stay as they are, and
        the ones it never received are gone for good (the gap event says how many).
        Anything else is left to the usual checks (``gap``, ``seq_conflict``).
        """
        try:
            payload = json.loads(raw.get("payload_json") or "")
            first, last = payload["from_seq"], payload["to_seq"]
        except (TypeError, ValueError, KeyError):
            return
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (first, last)):
            return
        if last != seq - 1 or not 1 <= first <= state.next_seq <= seq:
            return
        if first < state.next_seq:
            anchor = first - 1
            pending = [row[8] for row in rows if row[1] == anchor]
            dev = conn.execute(
                "SELECT anchor_seq, anchor_prev_hash FROM devices WHERE device_id = ?",
                (device_id,),
            ).fetchone()
            if pending:
                state.last_hash = pending[-1]
            elif anchor == 0:
                state.last_hash = GENESIS_HEX
            elif dev is not None and dev["anchor_seq"] == anchor + 1:
                state.last_hash = dev["anchor_prev_hash"]
            else:
                row = conn.execute(
                    "SELECT hash FROM events WHERE device_id = ? AND seq = ?", (device_id, anchor)
                ).fetchone()
                state.last_hash = row["hash"] if row is not None else None
        log.warning(
            "device %s lost journal events %d..%d (%d never received here)",
            device_id,
            first,
            last,
            seq - state.next_seq,
        )
        state.next_seq = seq

    def _place(
        self,
        conn: Connection,
        dev: Row,
        state: _ChainState,
        seq: int,
        event_id: str,
        id_bytes: bytes,
        raw: Mapping[str, Any],
        now: int,
        rows: list[tuple[Any, ...]],
    ) -> dict[str, Any]:
        """Queue the event's row at ``state.next_seq`` (stored or rejected) in *rows*, and
        advance the chain."""
        claimed = raw.get("hash") if isinstance(raw.get("hash"), str) else None
        prev_claimed = raw.get("prev_hash") if isinstance(raw.get("prev_hash"), str) else None
        values: dict[str, Any] = {}
        payload: dict[str, Any] = {}
        reason: str | None = None
        computed: str | None = None
        try:
            values["wall_ms"] = int_field(raw, "wall_ms", -_I64, _I64 - 1)
            values["mono_ns"] = int_field(raw, "mono_ns", -_I64, _I64 - 1)
            type_ = raw.get("type")
            if not isinstance(type_, str):
                raise InvalidEvent(f"type: must be a string, got {type_!r}")
            values["type"] = check_type(type_)
            values["payload"], payload = self._payload(raw.get("payload_json"))
            values["prev_hash"] = hash_field(raw, "prev_hash")
            values["hash"] = hash_field(raw, "hash")
            computed = event_hash(
                bytes.fromhex(values["prev_hash"]),
                seq,
                id_bytes,
                values["wall_ms"],
                values["mono_ns"],
                values["type"],
                values["payload"],
            ).hex()
            reason = self._apply_side_effects(conn, dev, values, payload)
        except InvalidEvent as exc:
            reason = f"invalid: {exc}"

        prev_ok = state.last_hash is not None and prev_claimed == state.last_hash
        hash_ok = computed is not None and computed == claimed
        link_ok = prev_ok and hash_ok
        if not link_ok:
            if computed is None:
                why = f"seq {seq}: event could not be hashed ({reason}); link unverifiable"
            elif not prev_ok:
                why = f"seq {seq}: prev_hash is not the hash of seq {seq - 1}"
            else:
                why = f"seq {seq}: hash does not match the event's content"
            state.broke(seq, why)
        # A claim the central does not believe is still the device's journal: stored,
        # with the reason it was not shared.
        status = "stored" if reason is None or reason.startswith("not_shared") else "rejected"
        if status == "stored" and values.get("type") == CHECKIN_EVENT:
            # Same transaction as the event: told once per stored check-in, never lost.
            self._enqueue_checkin(conn, dev, event_id, seq, values.get("wall_ms"), payload, now)
        if status == "stored":
            # Who is on site (the console's page, central/store/stats.py), as the door keeps it.
            record_visit(conn, dev["device_id"], seq, values.get("type"), payload)
        rows.append(
            (
                dev["device_id"],
                seq,
                event_id,
                values.get("wall_ms"),
                values.get("mono_ns"),
                values.get("type"),
                values.get("payload"),
                prev_claimed if prev_claimed is not None and HASH_RE.match(prev_claimed) else None,
                claimed if claimed is not None and HASH_RE.match(claimed) else None,
                now,
                int(link_ok),
                status,
                reason,
            ),
        )
        # The device chains on from its own hash: one altered event then shows
        # as one broken link, not as every link after it.
        state.advance(claimed if claimed is not None and HASH_RE.match(claimed) else None)
        return {"status": status, "reason": reason, "hash": claimed}

    def _payload(self, text: object) -> tuple[str, dict[str, Any]]:
        """Return the payload text as sent (what the hash covers) and its parsed object.

        Raises:
            InvalidEvent: not text, too long, not a JSON object, or not the
                canonical form the journal writes (docs/journal.md).
        """
        if not isinstance(text, str):
            raise InvalidEvent("payload_json: must be the payload's canonical JSON text")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidEvent("payload_json: not valid Unicode text") from None
        if size > self.settings.max_payload_bytes:
            raise InvalidEvent(
                f"payload_json: {size} bytes exceeds {self.settings.max_payload_bytes}"
            )
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise InvalidEvent(f"payload_json: not JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise InvalidEvent("payload_json: must hold a JSON object")
        # Same function the journal wrote it with: equal text for every allowed value.
        if canonical_json(payload) != text:
            raise InvalidEvent("payload_json: not in canonical form (docs/journal.md)")
        return text, payload


class _ChainState:
    """The per-device chain cursor while a batch is processed."""

    def __init__(self, dev: Row) -> None:
        self.next_seq: int = dev["next_seq"]
        self.last_hash: str | None = dev["last_hash"]
        self.chain_ok = bool(dev["chain_ok"])
        self.broken_at: int | None = dev["chain_broken_at"]
        self.break_reason: str | None = dev["chain_break_reason"]

    def broke(self, seq: int, reason: str) -> None:
        if self.chain_ok:
            self.chain_ok = False
            self.broken_at = seq
            self.break_reason = reason
            log.warning("hash chain broken: %s", reason)

    def advance(self, claimed_hash: str | None) -> None:
        self.next_seq += 1
        self.last_hash = claimed_hash
