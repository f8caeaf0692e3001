"""Uplink: the journal's events to the central, each exactly once, in order.

The journal hands out batches (READY -> IN_FLIGHT, oldest first); the uplink
posts a batch and records each event's ack durably before it asks for the next
batch::

    accepted, duplicate   -> journal.mark_acked   (the central has it)
    rejected              -> journal.mark_dead    (kept with its reason; alarm)
    retry_later (gap)     -> kept in the batch; the events the central lacks
                             (from its next_seq) are read back and resent first

A failed attempt -- timeout, reset, 429, 5xx -- resends **the same batch**:
the same events, the same ids (the idempotency keys), so the central acks
what it had already committed as ``duplicate``. 413 (and 400) halve the
batch, resending a subset of the same events; a single event the central
still refuses is dead-lettered. 401 and 403 pause the uplink (the events
stay READY). Nothing is ever dropped: a crash at any point leaves events
IN_FLIGHT, which the store puts back to READY when it opens, and they are
sent again with their ids.

The status -> action table is in ``docs/sync.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.store import Event, Journal, SyncStatus
from edge_agent.sync.alarms import ALARM_EVENT, Alarms
from edge_agent.sync.client import Backoff, CentralClient, CentralRefused, CentralUnreachable

log = logging.getLogger(__name__)

__all__ = ["Paused", "Stopped", "Uplink", "UplinkStats"]

#: Bytes one event adds to a request beyond its payload (ids, hashes, keys).
_EVENT_OVERHEAD_BYTES = 360
#: Successful batches at a reduced size before the size doubles again.
_GROW_AFTER = 8
#: Dead letters listed in one alarm event.
_LISTED_DEAD = 20


class Stopped(Exception):
    """The uplink was asked to stop while waiting."""


class Paused(Exception):
    """The uplink cannot go on until something changes.

    ``reason`` is the alarm code (``enrollment_needed``, ``device_disabled``,
    ``gap_unrecoverable``); ``delay_s`` how long to wait before trying again
    (None: until the device credential changes).
    """

    def __init__(self, reason: str, delay_s: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s


@dataclass
class UplinkStats:
    """Counters since the uplink was created (status page, bench)."""

    requests: int = 0
    failures: int = 0
    acked: int = 0
    duplicates: int = 0
    dead: int = 0
    halvings: int = 0
    gap_repairs: int = 0
    last_upload_ms: int | None = None


class Uplink:
    """Sends the journal's backlog to the central.

    Args:
        journal: the store's journal.
        client: the central client (with the device credential).
        alarms: where alarms are raised.
        batch_size: events per request at most (the configured size, capped by the
            central's ``max_batch_events``).
        backoff: the retry schedule.
        wait: ``wait(seconds) -> stop_requested``; returns True at once when the
            uplink must stop (a ``threading.Event.wait`` of the stop event).
        max_batch_bytes: the central's ``max_batch_bytes`` (None: no limit known).
        on_contact: called with True after every answer from the central, False
            after every attempt without one (the agent's "online" flag).
        wall_ms: the wall clock in Unix ms.
    """

    def __init__(
        self,
        journal: Journal,
        client: CentralClient,
        alarms: Alarms,
        *,
        batch_size: int,
        backoff: Backoff,
        wait: Callable[[float], bool],
        max_batch_bytes: int | None = None,
        on_contact: Callable[[bool], None] | None = None,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError(f"batch_size: {batch_size} must be between 1 and 10000")
        self.journal = journal
        self.client = client
        self.alarms = alarms
        self.max_batch_size = batch_size
        self.batch_size = batch_size
        self.backoff = backoff
        self.max_batch_bytes = max_batch_bytes
        self.stats = UplinkStats()
        self._wait = wait
        self._on_contact = on_contact or (lambda ok: None)
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._batch: list[Event] = []
        self._good_batches = 0
        self._gap_seq: int | None = None

    # -- public ---------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Events of the batch being sent."""
        return len(self._batch)

    @property
    def oldest_pending_wall_ms(self) -> int | None:
        """Wall time of the oldest event being sent (None when idle)."""
        return self._batch[0].wall_ms if self._batch else None

    def drain(self) -> int:
        """Upload until no event is READY; return how many events were acknowledged.

        Waits (through ``wait``) between failed attempts. Raises :class:`Stopped`
        when asked to stop while waiting, :class:`Paused` when the central refuses
        the device (401/403) or lacks events this journal no longer holds; in both
        cases the batch is kept and resent on the next call. Store errors propagate.
        """
        acked_before = self.stats.acked + self.stats.duplicates
        while True:
            if not self._batch:
                self._batch = self._next_batch()
                if not self._batch:
                    return self.stats.acked + self.stats.duplicates - acked_before
            self._attempt()

    def release(self) -> int:
        """Put the batch being sent back to READY (a clean stop); return how many."""
        batch, self._batch = self._batch, []
        ids = [e.id for e in batch if e.status is SyncStatus.IN_FLIGHT]
        return self.journal.requeue(ids) if ids else 0

    # -- one attempt ------------------------------------------------------------------

    def _next_batch(self) -> list[Event]:
        batch = self.journal.next_batch(self.batch_size)
        if self.max_batch_bytes is None or not batch:
            return batch
        budget = self.max_batch_bytes - 1024  # the {"events": [...]} envelope
        size = 0
        for index, event in enumerate(batch):
            size += len(event.payload_json.encode("utf-8")) + _EVENT_OVERHEAD_BYTES
            if size > budget and index > 0:
                self.journal.requeue([e.id for e in batch[index:]])
                return batch[:index]
        return batch

    def _attempt(self) -> None:
        batch = self._batch
        self.stats.requests += 1
        try:
            result = self.client.upload([e.to_wire() for e in batch])
        except CentralUnreachable as exc:
            self._on_contact(False)
            if exc.tls:
                self.alarms.raise_("tls", str(exc))
            self._failed(f"upload of {len(batch)} events: {exc}")
            return
        except CentralRefused as exc:
            self._on_contact(exc.status < 500)
            self._refused(exc)
            return
        self._on_contact(True)
        self.alarms.clear("tls")
        self.alarms.clear("api_mismatch")
        self.alarms.clear("enrollment_needed")
        self.alarms.clear("device_disabled")
        self._acks(result)

    def _failed(self, what: str, retry_after_s: float | None = None) -> None:
        self.stats.failures += 1
        delay = self.backoff.next_delay(retry_after_s)
        log.info("sync: %s; retrying the same batch in %.2f s", what, delay)
        if self._wait(delay):
            raise Stopped

    def _refused(self, exc: CentralRefused) -> None:
        if exc.transient:  # 429, 5xx: maybe stored, maybe not; same batch again
            self._failed(f"central answered {exc}", exc.retry_after_s)
        elif exc.status in (400, 413):
            self._shrink(exc)
        elif exc.status == 401:
            self.alarms.raise_("enrollment_needed", exc.detail)
            self.release()
            raise Paused("enrollment_needed", None)
        elif exc.status == 403:
            self.alarms.raise_("device_disabled", exc.detail)
            self.release()
            raise Paused("device_disabled", 3600.0)
        else:
            self.alarms.raise_("api_mismatch", f"events upload: {exc}")
            self.backoff.attempt = max(self.backoff.attempt, 8)  # a long wait: nothing to gain
            self._failed(f"unexpected answer {exc}", exc.retry_after_s)

    def _shrink(self, exc: CentralRefused) -> None:
        batch = self._batch
        if len(batch) > 1:
            limit = len(batch) // 2
            body = exc.body or {}
            max_events = body.get("max_events")
            if exc.status == 413 and isinstance(max_events, int) and 1 <= max_events < limit:
                limit = max_events
            keep, back = batch[:limit], batch[limit:]
            requeue = [e.id for e in back if e.status is SyncStatus.IN_FLIGHT]
            if requeue:
                self.journal.requeue(requeue)
            self._batch = keep
            self.batch_size = max(1, min(self.batch_size, limit))
            self._good_batches = 0
            self.stats.halvings += 1
            log.info("sync: central answered %s; resending the first %d events", exc, limit)
            return
        event = batch[0]
        why = "too_large" if exc.status == 413 else "bad_request"
        self._dead([(event, f"{why}: {exc.detail}")])
        self._batch = []

    def _acks(self, result: dict[str, Any]) -> None:
        batch = self._batch
        acks = result.get("acks")
        if not isinstance(acks, list):
            self._failed("answer without acks (unknown outcome)")
            return
        by_id = {e.id: e for e in batch}
        done: list[str] = []
        dead: list[tuple[Event, str]] = []
        duplicates = 0
        for ack in acks:
            if not isinstance(ack, dict):
                continue
            event = by_id.get(ack.get("id"))  # type: ignore[arg-type]
            if event is None:
                continue
            status = ack.get("status")
            if status in ("accepted", "duplicate"):
                done.append(event.id)
                duplicates += status == "duplicate"
            elif status == "rejected":
                reason = ack.get("reason") or "rejected"
                dead.append((event, f"{reason}: {ack.get('detail') or ''}".rstrip(": ")))
        if done:
            # One transaction: the acks are durable before anything else is sent.
            self.journal.mark_acked(done)
            self.stats.acked += len(done) - duplicates
            self.stats.duplicates += duplicates
            self.stats.last_upload_ms = self._wall_ms()
            self.alarms.clear("gap_unrecoverable")
        if dead:
            self._dead(dead)
        handled = set(done) | {e.id for e, _ in dead}
        remaining = [e for e in batch if e.id not in handled]
        if not remaining:
            self._batch = []
            self.backoff.reset()
            self._grow()
            return
        next_seq = result.get("next_seq")
        if isinstance(next_seq, int) and not isinstance(next_seq, bool):
            if next_seq < remaining[0].seq:
                again = self._gap_seq == next_seq and not handled
                self._gap_seq = next_seq
                self._batch = self._with_missing(next_seq, remaining)
                if again:  # the same gap twice without progress: do not spin
                    self._failed(f"the central still lacks seq {next_seq}")
                return
            if next_seq > remaining[0].seq:
                # The central is past these events without having acked them (a
                # rebuilt central with journal_head, or acks lost in a bug): ask
                # again with only what it still wants.
                log.warning(
                    "sync: central expects seq %d, batch starts at %d", next_seq, remaining[0].seq
                )
        self._gap_seq = None
        self._batch = remaining
        if handled:
            self.backoff.reset()
            return
        self._failed(f"{len(remaining)} events not acknowledged (next_seq {next_seq})")

    def _with_missing(self, next_seq: int, remaining: list[Event]) -> list[Event]:
        """Prepend the events the central lacks (from ``next_seq``) to the batch."""
        count = min(remaining[0].seq - next_seq, self.batch_size)
        missing = self.journal.events(from_seq=next_seq, limit=count)
        why = None
        if not missing or missing[0].seq != next_seq:
            why = f"the central expects seq {next_seq}, which this journal no longer holds"
        elif missing[0].status is SyncStatus.DEAD:
            # Dead-lettered here without the central placing it (a 400 on that one
            # event): events are stored in order, so the rest waits for an operator
            # to fix the cause and requeue the dead letter (journal.requeue_dead).
            why = (
                f"the central expects seq {next_seq}, dead-lettered here "
                f"({missing[0].dead_reason}); the events after it wait"
            )
        if why is not None:
            self.alarms.raise_("gap_unrecoverable", why, next_seq=next_seq)
            self.release()
            raise Paused("gap_unrecoverable", self.backoff.cap_s)
        self.stats.gap_repairs += 1
        log.warning(
            "sync: central lacks seq %d..%d; resending them first", next_seq, missing[-1].seq
        )
        return [*missing, *remaining]

    def _dead(self, dead: list[tuple[Event, str]]) -> None:
        for event, reason in dead:
            self.journal.mark_dead(event.id, reason)
        self.stats.dead += len(dead)
        listed = [{"seq": e.seq, "id": e.id, "reason": why} for e, why in dead[:_LISTED_DEAD]]
        # An alarm about a rejected alarm would be rejected in turn: stop there.
        if all(e.type == ALARM_EVENT for e, _ in dead):
            log.error("sync: the central rejected alarm events: %s", listed)
            return
        self.alarms.note(
            "dead_letter",
            f"{len(dead)} event(s) rejected by the central, first seq {dead[0][0].seq}: "
            f"{dead[0][1]}",
            events=listed,
        )

    def _grow(self) -> None:
        if self.batch_size >= self.max_batch_size:
            return
        self._good_batches += 1
        if self._good_batches >= _GROW_AFTER:
            self._good_batches = 0
            self.batch_size = min(self.max_batch_size, self.batch_size * 2)
