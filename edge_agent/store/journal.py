"""The append-only, hash-chained journal and its sync state.

Every event gets, in one durable transaction: a per-device sequence number
(gapless, from 1, but for events lost with a damaged WAL: see
:meth:`Journal.start` and ``edge_agent/store/highwater.py``; a number is never
used twice), a time-ordered UUIDv7 id, wall and monotonic time, its
type and canonical JSON payload, and ``hash = SHA-256(preimage)`` where the
preimage starts with the previous event's hash (see
:func:`portier_common.encoding.event_preimage`).

Concurrent appends share commits (group commit, leader/follower): a caller
that finds no commit in progress becomes the leader and writes everything
queued so far in one transaction -- one fsync -- then wakes the callers whose
events it wrote. A lone caller writes at once, with no thread hand-off, so a
single append costs one commit and nothing more.

Sync state per event, for the uplink::

    READY --next_batch()--> IN_FLIGHT --mark_acked()--> ACKED --trim()--> (deleted)
      ^                         |
      +------requeue()----------+--mark_dead()--> DEAD --requeue_dead()--> READY

Events still IN_FLIGHT when the process died are READY again at start-up.
Only ACKED events are ever deleted, and only as a prefix of the chain, whose
last hash is kept as the anchor that the next event's ``prev_hash`` links to.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

from edge_agent.store.db import Database, rollback
from edge_agent.store.errors import InvalidEvent, StoreError, StoreFull, StoreIOError, translate
from edge_agent.store.highwater import HighWater
from portier_common.encoding import (
    _KNOWN_TYPES,
    GENESIS_HASH,
    HASH_TAG,
    Clock,
    SystemClock,
    UUIDv7Generator,
    _pack_header,
    _pack_tagged_header,
    _pack_u32,
    _sha256,
    _sha256_one,
    canonical_json,
    canonical_json_utf8,
    check_type,
    event_hash,
    id_to_bytes,
    id_to_text,
)

log = logging.getLogger(__name__)

_time_ns = time.time_ns
_monotonic_ns = time.monotonic_ns

#: Largest batch :meth:`Journal.next_batch` hands out.
MAX_BATCH = 10_000

#: Attempts of one commit on a full disk (one relief step before each retry).
_FULL_RETRIES = 6

_META_ANCHOR_SEQ = "journal.anchor_seq"
_META_ANCHOR_HASH = "journal.anchor_hash"
_META_ANCHOR_ID = "journal.anchor_id"
#: The chain head at the last start-up check: later events are re-hashed at the next.
_META_CHECKED_SEQ = "journal.checked_seq"
#: Seqs whose damage was already journaled (journal.damaged), so it is reported once.
_META_REPORTED = "journal.reported_damage"
#: Seq ranges lost with a damaged WAL, each recorded by a journal.gap event (JSON).
_META_GAPS = "journal.gaps"
_MAX_FINDINGS = 20
_MAX_REPORTED = 1000

_START_PENDING = (
    "journal append: the journal's start-up findings are not written yet (disk full at start)"
)

_COLUMNS = (
    "seq, id, wall_ms, mono_ns, type, payload, prev_hash, hash, status, attempts, dead_reason"
)
_INSERT = (
    "INSERT INTO events (seq, id, wall_ms, mono_ns, type, payload, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class SyncStatus(IntEnum):
    """Where an event is on its way to the central."""

    READY = 0
    IN_FLIGHT = 1
    ACKED = 2
    DEAD = 3


class Event(NamedTuple):
    """One journaled event, as stored (immutable).

    ``payload_json`` is the canonical JSON text that was hashed; send it to
    the central verbatim. ``prev_hash`` and ``hash`` are 32 raw bytes.
    A named tuple rather than a dataclass: bursts create tens of thousands
    per second and a tuple is built four times faster.
    """

    seq: int
    id: str
    wall_ms: int
    mono_ns: int
    type: str
    payload_json: str
    prev_hash: bytes
    hash: bytes
    status: SyncStatus = SyncStatus.READY
    attempts: int = 0
    dead_reason: str | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """Return the payload parsed from :attr:`payload_json` (a new dict)."""
        return json.loads(self.payload_json)

    def to_wire(self) -> dict[str, Any]:
        """Return the fields the central needs to store and re-hash the event
        (hashes in lower-case hex, payload as the canonical JSON text)."""
        return {
            "seq": self.seq,
            "id": self.id,
            "wall_ms": self.wall_ms,
            "mono_ns": self.mono_ns,
            "type": self.type,
            "payload_json": self.payload_json,
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
        }


#: The sync fields of a new event (status, attempts, dead_reason).
_READY_TAIL = (SyncStatus.READY, 0, None)


@dataclass(frozen=True)
class ChainHead:
    """The last event of the chain (or the trim anchor, or genesis)."""

    seq: int
    hash: bytes
    id: str | None


@dataclass(frozen=True)
class VerifyResult:
    """What :meth:`Journal.verify_chain` found.

    ``ok`` is False at the first broken link: ``broken_seq`` is the sequence
    number where the chain stops verifying and ``reason`` says why.
    ``checked`` counts the events that verified before it.
    """

    ok: bool
    checked: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str
    broken_seq: int | None = None
    reason: str | None = None
    #: Ranges of events the journal lost, each declared by a ``journal.gap`` event
    #: (the chain goes on across them: the links still verify).
    gaps: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class SyncCounts:
    """Events per sync status, plus the trim anchor."""

    ready: int
    in_flight: int
    acked: int
    dead: int
    trimmed_through: int

    @property
    def backlog(self) -> int:
        """Events not yet acknowledged and not dead-lettered."""
        return self.ready + self.in_flight


class _Request:
    """Events submitted together, and how their submitter is woken.

    A submitter that has to wait gets a held ``wake`` lock; releasing it
    wakes the submitter, either because its events were written (``done``)
    or because it was chosen to lead the next commit (``lead``). A submitter
    that leads at once never needs one.
    """

    __slots__ = ("claim", "claimed", "done", "error", "events", "items", "lead", "refused", "wake")

    def __init__(
        self,
        items: list[tuple[str, str]],
        claim: Callable[[sqlite3.Connection], bool] | None = None,
        refused: list[tuple[str, str]] | None = None,
    ) -> None:
        self.items = items
        self.claim = claim
        self.refused = refused
        self.claimed = claim is None
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self.done = False
        self.lead = False
        self.wake: threading.Lock | None = None


def _event(row: Sequence[Any]) -> Event:
    return Event(
        row[0],
        id_to_text(row[1]),
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        SyncStatus(row[8]),
        row[9],
        row[10],
    )


class Journal:
    """Append-only event journal; see the module docstring.

    Obtained as ``store.journal``; all methods are thread-safe. Write methods
    raise :class:`StoreReadOnly` on a read-only store and
    :class:`StoreClosed` after close.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        max_payload_bytes: int,
        keep_acked: int,
        trim_batch: int,
        on_full: Callable[[sqlite3.Connection], bool] | None = None,
        on_commit: Callable[[int], None] | None = None,
        high_water: HighWater | None = None,
    ) -> None:
        self._db = db
        self._high_water = high_water
        #: Events the start-up checks journal before anything else (journal.gap,
        #: journal.damaged): written by resume(); appends are refused until then.
        self._start_items: list[tuple[str, str]] = []
        #: What the start-up checks found (one line each); the agent's status shows
        #: it and the central link raises the ``journal_damaged`` alarm.
        self.damage: list[str] = []
        #: The lost range the pending journal.gap event records ([first, last]).
        self._gap: list[int] | None = None
        self._clock = clock
        #: The real clocks: the lone append reads them without two Python calls.
        self._system_clock = type(clock) is SystemClock
        self._max_payload = max_payload_bytes
        self._keep_acked = keep_acked
        self._trim_batch = trim_batch
        self._on_full = on_full
        self._on_commit = on_commit
        self._ids = UUIDv7Generator()
        # Group commit state: requests waiting for the next commit (the mutex
        # guards the queue), and leadership: held while some thread leads
        # (commits). Taken with acquire(blocking=False) only, it is the flag
        # "a leader is busy" set and tested in one atomic step, so that a lone
        # caller takes it without the mutex; handed from leader to successor
        # held, released when nobody is queued.
        self._mutex = threading.Lock()
        self._pending: list[_Request] = []
        self._leading = threading.Lock()
        # Writer-side state, guarded by db.write_lock and loaded by start().
        self._head_seq = 0
        self._head_hash = GENESIS_HASH
        self._anchor_seq = 0
        # Every event with seq < _low is ACKED (or trimmed): scans for work
        # start here instead of at the beginning of the table.
        self._low = 1
        #: Why the latest append (or start-up write) failed for lack of space or
        #: an I/O error; None once one succeeds. The agent's status reports it.
        self.unavailable: str | None = None
        #: True until :meth:`resume` wrote the start-up state (a full disk at start).
        self.start_pending = False
        self._reported: list[int] = []
        #: Numbering never goes below this (the high-water mark of a damaged journal).
        self._seq_floor = 0
        self._head_id: bytes | None = None

    # -- start-up ------------------------------------------------------------

    def start(self) -> int:
        """Load the writer state and put IN_FLIGHT events back to READY.

        Called once by the store when opened for writing; returns how many
        events were resumed. Loading the chain head only reads, so appends
        number correctly even when the second step, a write, fails on a full
        disk: then :class:`StoreFull` is raised, :attr:`start_pending` stays
        True and :meth:`resume` is to be called again once there is room.
        """
        with self._db.write_lock:
            conn = self._db.check_writable()
            try:
                self._load_head(conn)
                self._low = self._anchor_seq + 1
                self._advance_low(conn)
                self._check_high_water()
                self._check_chain(conn)
            except sqlite3.Error as exc:
                raise translate(exc, "journal start-up") from exc
        self.start_pending = True
        if self._high_water is not None:
            self._high_water.open()
            if self._head_id is not None and not self._start_items:
                # The mark follows the head from now on (a store older than the
                # mark, or a mark the last power cut kept from the disk).
                self._high_water.record(self._head_seq, self._head_hash, self._head_id)
        return self.resume()

    def _check_high_water(self) -> None:
        """Compare the chain head with the high-water mark kept apart from the WAL.

        A head below the mark means committed events were lost (the WAL rolled
        back): numbering goes on above the mark -- no sequence number is ever
        used twice -- and a ``journal.gap`` event, chained to the last event
        kept, records what was lost.
        """
        if self._high_water is None:
            return
        mark = HighWater.read(self._high_water.path)
        if mark is None or mark.seq <= self._head_seq:
            return
        first, last = self._head_seq + 1, mark.seq
        line = (
            f"seq {first}..{last} lost: the journal ends at seq {self._head_seq}, "
            f"below its high-water mark {last}"
        )
        log.error("journal: %s", line)
        self.damage.append(line)
        payload = {
            "from_seq": first,
            "to_seq": last,
            "lost": last - first + 1,
            "detected_by": "high_water_mark",
            "last_lost_hash": mark.hash.hex(),
            "last_lost_id": id_to_text(mark.id),
            "kept_head_seq": self._head_seq,
        }
        self._start_items.append(("journal.gap", canonical_json(payload)))
        self._gap = [first, last]
        # The gap event is last + 1, chained to the kept head.
        self._seq_floor = self._head_seq = last
        self._ids.advance_past(mark.id)

    def _check_chain(self, conn: sqlite3.Connection) -> None:
        """The start-up chain check: cheap, and where it matters.

        Links (``prev_hash``, consecutive seq or a declared ``journal.gap``) are
        checked for every kept event; hashes are recomputed for acknowledged
        events (the central has them: a bit flip there is found nowhere else)
        and for events after the last point checked at a previous start
        (``journal.checked_seq`` in meta). Unacknowledged events checked before
        are re-hashed by the central when they are uploaded. A finding is
        journaled once (``journal.damaged``), never again at later starts.
        """
        checked = int(Database.meta_get(conn, _META_CHECKED_SEQ, 0))
        reported = set(json.loads(Database.meta_get(conn, _META_REPORTED, "[]")))
        findings = [
            (seq, why)
            for seq, why in _chain_problems(conn, hash_after=checked)
            if seq not in reported
        ]
        for seq, why in findings[:_MAX_FINDINGS]:
            line = f"seq {seq}: {why}"
            log.error("journal: start-up check: %s", line)
            self.damage.append(line)
            payload = {"seq": seq, "reason": why, "detected_by": "start_up_check"}
            self._start_items.append(("journal.damaged", canonical_json(payload)))
        self._reported = sorted(reported | {seq for seq, _ in findings})[-_MAX_REPORTED:]

    def resume(self) -> int:
        """The writing half of :meth:`start`: IN_FLIGHT events back to READY."""
        try:
            with self._db.write_lock, self._db.transaction("journal start-up") as conn:
                resumed = conn.execute(
                    "UPDATE events SET status = 0 WHERE status <> 0 AND status = 1"
                ).rowcount
                rows: list[tuple[Any, ...]] = []
                seq, prev = self._head_seq, self._head_hash
                if self._start_items:
                    # What the start-up checks found, first, in the same commit as the
                    # record of the gap (counts() relies on it).
                    rows, seq, prev = self._rows([_Request(list(self._start_items))])
                    conn.executemany(_INSERT, rows)
                    if self._gap is not None:
                        gaps = json.loads(Database.meta_get(conn, _META_GAPS, "[]"))
                        Database.meta_set(conn, _META_GAPS, json.dumps([*gaps, self._gap]))
                Database.meta_set(conn, _META_CHECKED_SEQ, seq)
                Database.meta_set(conn, _META_REPORTED, json.dumps(self._reported))
            if rows:
                self._head_seq, self._head_hash = seq, prev
                self._start_items, self._gap = [], None
                if self._high_water is not None:
                    self._high_water.record(seq, prev, rows[-1][1])
        except (StoreFull, StoreIOError) as exc:
            self.unavailable = str(exc)
            raise
        self.start_pending = False
        if resumed:
            log.info("journal: %d events in flight at the last stop are ready again", resumed)
        return resumed

    def _load_head(self, conn: sqlite3.Connection) -> None:
        anchor_seq = int(Database.meta_get(conn, _META_ANCHOR_SEQ, 0))
        anchor_hash = Database.meta_get(conn, _META_ANCHOR_HASH, GENESIS_HASH)
        anchor_id = Database.meta_get(conn, _META_ANCHOR_ID)
        row = conn.execute("SELECT seq, hash, id FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        self._anchor_seq = anchor_seq
        if row is None:
            self._head_seq, self._head_hash = anchor_seq, anchor_hash
            last_id = anchor_id
        else:
            self._head_seq, self._head_hash, last_id = row
        # Lost events' numbers stay lost (the journal.gap event takes the next one).
        self._head_seq = max(self._head_seq, self._seq_floor)
        self._head_id = last_id
        if last_id is not None:
            # Ids must keep increasing with seq even if the clock went back
            # across a restart.
            self._ids.advance_past(last_id)

    # -- appending -------------------------------------------------------------

    def append(self, event_type: str, payload: Mapping[str, Any] | None = None) -> Event:
        """Journal one event durably and return it.

        When this returns, the event is committed with ``synchronous=FULL``
        (survives a crash or power cut); only then may the door act on it.
        Concurrent callers share commits.

        Raises :class:`InvalidEvent` (bad type or payload: nothing written),
        :class:`StoreFull` (no space even after evicting media and trimming
        acknowledged events: nothing written), :class:`StoreIOError`,
        :class:`StoreClosed`, :class:`StoreReadOnly`.
        """
        if type(event_type) is not str or event_type not in _KNOWN_TYPES:
            check_type(event_type)
        payload_bytes = canonical_json_utf8({} if payload is None else payload, self._max_payload)
        payload_json = payload_bytes.decode("utf-8")
        if not self._leading.acquire(False):
            return self._submit(_Request([(event_type, payload_json)])).events[0]
        # Nobody was committing: lead at once.
        # The lone caller's path: _submit, _lead and _write for one event
        # without a _Request, a batch or a list -- the same commit, less Python.
        request = None
        try:
            with self._db.write_lock:
                if not self._pending:
                    return self._write_one(event_type, payload_json, payload_bytes)
                # Callers queued while this one waited for the write lock (another
                # transaction held it): they share this commit, as _lead does.
                request = _Request([(event_type, payload_json)])
                request.lead = True
                with self._mutex:
                    self._pending.insert(0, request)
                self._lead(request)  # the lock is re-entrant; _lead hands on
        except BaseException as exc:
            if request is None and isinstance(exc, StoreFull | StoreIOError):
                self.unavailable = str(exc)
            raise
        finally:
            if request is None:
                # Give leadership up first, then look for callers queued meanwhile
                # (without the mutex: after the fsync, on cold caches, each lock
                # costs). One that queued before the release is seen here; one that
                # queues after it finds leadership free and takes it (see _submit).
                self._leading.release()
                if self._pending:
                    self._hand_on_released()
            elif not request.done:
                # Pass leadership on (or give it up), the request out of the queue first.
                with self._mutex:
                    if request is not None and request in self._pending:
                        self._pending.remove(request)
                    successor = self._choose_leader()
                if successor is not None:
                    successor.wake.release()  # type: ignore[union-attr]
        assert request is not None  # the lock-free branch returned above
        if request.error is not None:
            raise request.error
        return request.events[0]

    def _choose_leader(self) -> _Request | None:
        """Make the first caller queued the leader, or give leadership up; return the
        caller to wake (call with the mutex and leadership held, wake it after releasing
        the mutex)."""
        successor = self._pending[0] if self._pending else None
        if successor is None:
            self._leading.release()
        else:
            successor.lead = True
        return successor

    def _hand_on_released(self) -> None:
        """A lone caller released leadership and then saw callers queued: take it back
        and hand it to the first of them, unless another thread leads already (it will
        take them in its commit, or hand on to them when it is done)."""
        while self._pending and self._leading.acquire(False):
            with self._mutex:
                successor = self._choose_leader()
            if successor is not None:
                successor.wake.release()  # type: ignore[union-attr]
                return

    def _write_one(self, event_type: str, payload_json: str, payload_bytes: bytes) -> Event:
        """:meth:`_write` for one event of a lone caller; write lock held.

        Everything the caller gets back (the event) and the high-water record
        are built before the commit: the thread sleeps in the fsync and comes
        back on cold caches, where each line of Python costs several times
        what it did before it (about 15 us for the first few). After the
        commit only the chain head and the mark are written.
        """
        conn = self._db.writer
        if conn is None:
            conn = self._db.check_writable()  # raises StoreClosed or StoreReadOnly
        if self._start_items:
            raise StoreFull(_START_PENDING)
        seq, prev = self._head_seq + 1, self._head_hash
        if self._system_clock:  # SystemClock's two methods written out
            wall_ms = _time_ns() // 1_000_000
            mono_ns = _monotonic_ns()
        else:
            clock = self._clock
            wall_ms = clock.wall_ms()
            mono_ns = clock.mono_ns()
        raw_id = self._ids.next_bytes_serialised(wall_ms)  # write lock held
        # event_hash() written out (the same preimage, the tag packed with the
        # header; CPython's SHA-256, quicker than OpenSSL's on cold caches), and
        # id_to_text() below: each call is a few microseconds here.
        type_bytes = event_type.encode("utf-8")
        digest = _sha256_one(
            b"".join(
                (
                    _pack_tagged_header(
                        HASH_TAG, prev, seq, raw_id, wall_ms, mono_ns, len(type_bytes)
                    ),
                    type_bytes,
                    _pack_u32(len(payload_bytes)),
                    payload_bytes,
                )
            )
        ).digest()
        row = (seq, raw_id, wall_ms, mono_ns, event_type, payload_json, prev, digest)
        h = raw_id.hex()
        # tuple.__new__ straight away: the named tuple's own __new__ is a
        # Python function.
        event = tuple.__new__(
            Event,
            (
                seq,
                f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
                wall_ms,
                mono_ns,
                event_type,
                payload_json,
                prev,
                digest,
                *_READY_TAIL,
            ),
        )
        mark = self._high_water
        record = None if mark is None else mark.prepare(seq, digest, raw_id)
        try:
            # One statement in autocommit mode is its own transaction: the same
            # commit (and fsync: synchronous=FULL) as BEGIN IMMEDIATE / COMMIT
            # around it, two statements fewer; on error SQLite rolls it back.
            conn.execute(_INSERT, row)
        except sqlite3.Error as exc:
            self._insert_after_error(conn, [row], exc)
        self._head_seq = seq
        self._head_hash = digest
        if record is not None:
            mark.write(seq, record)  # type: ignore[union-attr]
        self.unavailable = None
        if self._on_commit is not None:
            self._on_commit(1)
        return event

    def append_claimed(
        self,
        claim: Callable[[sqlite3.Connection], bool],
        granted: Iterable[tuple[str, Mapping[str, Any] | None]],
        refused: Iterable[tuple[str, Mapping[str, Any] | None]],
    ) -> tuple[list[Event], bool]:
        """Run ``claim`` and journal its outcome in one transaction (one fsync).

        ``claim`` is a replay-ledger change (``store.replay.invitation_claim``
        or ``counter_claim``). If it takes effect, the ``granted`` events are
        journaled, else the ``refused`` ones: the ledger and the journal can
        never disagree (no invitation used up by a decision that was not
        written), and a grant costs one commit, not two. Returns the events
        written and whether the claim took effect. Raises like :meth:`append`.
        """
        yes, no = self._prepare(granted), self._prepare(refused)
        if not yes or not no:
            raise InvalidEvent("append_claimed needs events for both outcomes")
        request = self._submit(_Request(yes, claim=claim, refused=no))
        return request.events, request.claimed

    def _prepare(
        self, items: Iterable[tuple[str, Mapping[str, Any] | None]]
    ) -> list[tuple[str, str]]:
        prepared = []
        for index, (event_type, payload) in enumerate(items):
            try:
                prepared.append(
                    (
                        check_type(event_type),
                        canonical_json({} if payload is None else payload, self._max_payload),
                    )
                )
            except InvalidEvent as exc:
                raise InvalidEvent(f"item {index}: {exc}") from None
        return prepared

    def append_many(self, items: Iterable[tuple[str, Mapping[str, Any] | None]]) -> list[Event]:
        """Journal several events in one transaction (one fsync); return them.

        All or nothing: every item is validated first, and either all events
        are committed, in order and with consecutive sequence numbers, or
        none. Raises like :meth:`append`.
        """
        prepared = self._prepare(items)
        if not prepared:
            return []
        return self._submit(_Request(prepared)).events

    def _submit(self, request: _Request) -> _Request:
        if self._db.writer is None:
            self._db.check_writable()  # raises StoreClosed or StoreReadOnly
        with self._mutex:
            # Queued before trying leadership: a leader that gives it up after this
            # finds the request queued (under the mutex, or in _hand_on_released).
            self._pending.append(request)
            follow = not self._leading.acquire(False)
            if follow:
                request.wake = threading.Lock()
                request.wake.acquire()
            else:
                request.lead = True
        if follow:
            try:
                request.wake.acquire()  # type: ignore[union-attr]
            except BaseException:
                self._abandon(request)
                raise
        if not request.done:
            self._lead(request)
        if request.error is not None:
            raise request.error
        return request

    def _lead(self, request: _Request) -> None:
        """Commit everything pending -- ``request`` included -- in one
        transaction, wake its submitters, hand leadership on."""
        batch: list[_Request] = []
        try:
            with self._db.write_lock:
                with self._mutex:
                    batch, self._pending = self._pending, []
                self._write(batch)
        except BaseException as exc:
            if isinstance(exc, StoreFull | StoreIOError):
                self.unavailable = str(exc)
            if not batch:  # interrupted before taking anything
                with self._mutex:
                    if request in self._pending:
                        self._pending.remove(request)
                batch = [request]
            for req in batch:
                req.error = exc
        finally:
            with self._mutex:
                for req in batch:
                    req.done = True
                successor = self._choose_leader()
            for req in batch:
                if req.wake is not None and req is not request:
                    req.wake.release()
            if successor is not None:
                successor.wake.release()  # type: ignore[union-attr]

    def _abandon(self, request: _Request) -> None:
        # The submitter was interrupted (KeyboardInterrupt) while waiting.
        with self._mutex:
            if request.done or request not in self._pending:
                return  # already written, or being written: nobody to tell
            self._pending.remove(request)
            if not request.lead:
                return
            # It had just been chosen to lead: pass that on, or nobody would.
            successor = self._choose_leader()
        if successor is not None:
            successor.wake.release()  # type: ignore[union-attr]

    def _write(self, batch: list[_Request]) -> None:
        """Write ``batch`` in one transaction; caller holds the write lock."""
        conn = self._db.writer
        if conn is None:
            conn = self._db.check_writable()  # raises StoreClosed or StoreReadOnly
        if self._start_items:
            # Nothing is numbered before the start-up findings are journaled (resume()).
            raise StoreFull(_START_PENDING)
        if any(req.claim is not None for req in batch):
            rows, seq, prev = self._write_claimed(conn, batch)
        else:
            rows, seq, prev = self._rows(batch)
            try:
                self._insert(conn, rows)
            except sqlite3.Error as exc:
                self._insert_after_error(conn, rows, exc)
        self._head_seq, self._head_hash = seq, prev
        self.unavailable = None
        if self._high_water is not None and rows:
            self._high_water.record(seq, prev, rows[-1][1])
        new, text, ready = tuple.__new__, id_to_text, _READY_TAIL
        events = [new(Event, (row[0], text(row[1]), *row[2:], *ready)) for row in rows]
        if len(batch) == 1:
            batch[0].events = events
        else:
            position = 0
            for req in batch:
                count = len(req.items)
                req.events = events[position : position + count]
                position += count
        if self._on_commit is not None:
            self._on_commit(len(rows))

    def _rows(self, batch: list[_Request]) -> tuple[list[tuple[Any, ...]], int, bytes]:
        """Number, time-stamp and chain the batch's events (not yet written).

        :func:`portier_common.encoding.event_hash` written out in the loop
        (the same preimage: it runs per event), with each type's bytes and
        length encoded once per batch.
        """
        wall_clock, mono_clock = self._clock.wall_ms, self._clock.mono_ns
        next_id = self._ids.next_bytes_serialised  # write lock held
        pack_header, pack_u32, sha256, tag = _pack_header, _pack_u32, _sha256, HASH_TAG
        join = b"".join
        types: dict[str, tuple[bytes, int]] = {}
        seq, prev = self._head_seq, self._head_hash
        rows: list[tuple[Any, ...]] = []
        add = rows.append
        for req in batch:
            for event_type, payload_json in req.items:
                seq += 1
                wall_ms = wall_clock()
                mono_ns = mono_clock()
                raw_id = next_id(wall_ms)
                encoded = types.get(event_type)
                if encoded is None:
                    type_bytes = event_type.encode("utf-8")
                    encoded = types[event_type] = (type_bytes, len(type_bytes))
                payload_bytes = payload_json.encode("utf-8")
                digest = sha256(
                    join(
                        (
                            tag,
                            pack_header(prev, seq, raw_id, wall_ms, mono_ns, encoded[1]),
                            encoded[0],
                            pack_u32(len(payload_bytes)),
                            payload_bytes,
                        )
                    )
                ).digest()
                add((seq, raw_id, wall_ms, mono_ns, event_type, payload_json, prev, digest))
                prev = digest
        return rows, seq, prev

    def _write_claimed(
        self, conn: sqlite3.Connection, batch: list[_Request]
    ) -> tuple[list[tuple[Any, ...]], int, bytes]:
        """Run the batch's claims and insert the events they choose, in one
        transaction; retried whole after each relief step while the disk is full."""
        chosen = {id(req): req.items for req in batch}
        for attempt in range(1, _FULL_RETRIES + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for req in batch:
                    if req.claim is not None:
                        req.claimed = bool(req.claim(conn))
                        req.items = chosen[id(req)] if req.claimed else (req.refused or [])
                rows, seq, prev = self._rows(batch)
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
                return rows, seq, prev
            except sqlite3.Error as exc:
                rollback(conn)
                error = translate(exc, "journal append")
                if not isinstance(error, StoreFull):
                    self._reload_head(conn)
                    raise error from exc
                if attempt == _FULL_RETRIES or not self._relieve(conn, attempt):
                    raise error from exc
                log.warning("journal: disk full, retrying the claimed append after freeing space")
            except BaseException:
                rollback(conn)
                raise
        raise AssertionError("unreachable")  # the loop returns or raises

    @staticmethod
    def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) == 1:
            # One statement in autocommit mode is its own transaction: the same
            # commit (and fsync, synchronous=FULL) as BEGIN IMMEDIATE / COMMIT
            # around it, two statements fewer; on error SQLite rolls it back.
            conn.execute(_INSERT, rows[0])
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise

    def _insert_after_error(
        self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], first: sqlite3.Error
    ) -> None:
        """Retry a failed commit after each relief step while the disk is
        full; raise the typed error when no step helps or it is not "full"."""
        exc = first
        for attempt in range(1, _FULL_RETRIES + 1):
            error = translate(exc, "journal append")
            if not isinstance(error, StoreFull):
                # The commit may or may not have reached the disk (an I/O
                # error in fsync): trust only what the file says.
                self._reload_head(conn)
                raise error from exc
            if attempt == _FULL_RETRIES or not self._relieve(conn, attempt):
                raise error from exc
            log.warning("journal: disk full, retrying the append after freeing space")
            try:
                self._insert(conn, rows)
                return
            except sqlite3.Error as again:
                exc = again

    def _relieve(self, conn: sqlite3.Connection, attempt: int = 1) -> bool:
        """Free space for the journal, losing as little as possible; return
        True if this step freed something. Write lock held, no transaction.

        1. checkpoint and truncate the WAL (nothing lost: each commit wrote
           whole pages to the WAL, the database needs only the last copy);
        2. trim every acknowledged event (the central has them);
        3. ``on_full``: the store evicts photos, then releases its reserve.

        Step 1 counts as progress on the first ``attempt`` only: on a disk
        that something else keeps full, the truncated WAL always gives back a
        few pages that the retried commit then needs again, and the reserve
        would never be reached.
        """
        wal_before = self._db.file_sizes()[1]
        self._truncate_wal(conn)
        if attempt == 1 and self._db.file_sizes()[1] < wal_before:
            return True
        try:
            with self._db.locked_transaction(conn, "journal emergency trim"):
                trimmed = self._trim_locked(conn, 0)
        except StoreError:
            trimmed = 0
        if trimmed:
            log.warning("journal: disk full, trimmed %d acknowledged events", trimmed)
            return True
        freed = False
        if self._on_full is not None:
            try:
                freed = self._on_full(conn)
            except StoreError:
                log.exception("journal: freeing space for the journal failed")
        if freed:
            self._truncate_wal(conn)
        return freed

    @staticmethod
    def _truncate_wal(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("journal: WAL checkpoint on a full disk failed: %s", exc)

    def _reload_head(self, conn: sqlite3.Connection) -> None:
        try:
            self._load_head(conn)
        except sqlite3.Error:
            log.exception("journal: could not re-read the chain head")

    # -- reading --------------------------------------------------------------------

    def head(self) -> ChainHead:
        """Return the chain head as committed in the file."""
        with self._db.snapshot() as conn:
            return self._read_head(conn)

    @staticmethod
    def _read_head(conn: sqlite3.Connection) -> ChainHead:
        row = conn.execute("SELECT seq, hash, id FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None:
            return ChainHead(row[0], row[1], id_to_text(row[2]))
        anchor_id = Database.meta_get(conn, _META_ANCHOR_ID)
        return ChainHead(
            int(Database.meta_get(conn, _META_ANCHOR_SEQ, 0)),
            Database.meta_get(conn, _META_ANCHOR_HASH, GENESIS_HASH),
            None if anchor_id is None else id_to_text(anchor_id),
        )

    def get(self, seq: int) -> Event | None:
        """Return the event with sequence number ``seq``, or None (never
        written, or trimmed)."""
        with self._db.reader() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else _event(row)

    def get_by_id(self, event_id: str) -> Event | None:
        """Return the event with id ``event_id``, or None. Raises
        :class:`ValueError` if ``event_id`` is not a UUID."""
        raw = id_to_bytes(event_id)
        with self._db.reader() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (raw,)).fetchone()
        return None if row is None else _event(row)

    def events(self, from_seq: int = 1, limit: int = 1000) -> list[Event]:
        """Return up to ``limit`` events with ``seq >= from_seq``, in order."""
        with self._db.reader() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE seq >= ? ORDER BY seq LIMIT ?",
                (from_seq, limit),
            ).fetchall()
        return [_event(row) for row in rows]

    def counts(self) -> SyncCounts:
        """Return how many events are in each sync status."""
        with self._db.snapshot() as conn:
            by_status = dict(
                conn.execute(
                    "SELECT status, count(*) FROM events WHERE status <> 0 GROUP BY status"
                ).fetchall()
            )
            head = self._read_head(conn)
            anchor = int(Database.meta_get(conn, _META_ANCHOR_SEQ, 0))
            gaps = json.loads(Database.meta_get(conn, _META_GAPS, "[]"))
        in_flight = by_status.get(SyncStatus.IN_FLIGHT, 0)
        acked = by_status.get(SyncStatus.ACKED, 0)
        dead = by_status.get(SyncStatus.DEAD, 0)
        # Rows are gapless from anchor + 1 to head but for the seqs lost with a damaged
        # WAL (journal.gap, recorded in meta), so READY needs no scan.
        lost = sum(last - first + 1 for first, last in gaps if first > anchor)
        ready = head.seq - anchor - lost - in_flight - acked - dead
        return SyncCounts(ready, in_flight, acked, dead, anchor)

    def backlog_count(self) -> int:
        """Return the number of events not yet acknowledged by the central
        (READY + IN_FLIGHT; dead-lettered events are counted by
        :meth:`counts`)."""
        return self.counts().backlog

    def dead_letters(self, limit: int = 100) -> list[Event]:
        """Return up to ``limit`` dead-lettered events, oldest first."""
        with self._db.reader() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE status <> 0 AND status = 3 "
                "ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [_event(row) for row in rows]

    # -- sync state ---------------------------------------------------------------------

    def next_batch(self, limit: int = 500) -> list[Event]:
        """Mark up to ``limit`` READY events IN_FLIGHT and return them, oldest
        first, with ``attempts`` counting this hand-out.

        Raises :class:`ValueError` if ``limit`` is not in 1..10000.
        """
        if not 1 <= limit <= MAX_BATCH:
            raise ValueError(f"limit: {limit} must be between 1 and {MAX_BATCH}")
        with self._db.transaction("journal next_batch") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE seq >= ? AND status = 0 ORDER BY seq LIMIT ?",
                (self._low, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE events SET status = 1, attempts = attempts + 1 WHERE seq = ?",
                [(row[0],) for row in rows],
            )
        return [_event((*row[:8], SyncStatus.IN_FLIGHT, row[9] + 1, None)) for row in rows]

    def mark_acked(self, ids: Iterable[str]) -> int:
        """Mark the events with these ids ACKED; return how many were not
        ACKED before (ids already acknowledged, trimmed or unknown count 0).

        Trims old acknowledged events when more than ``keep_acked +
        trim_batch`` have piled up. Raises :class:`ValueError` for a malformed
        id (nothing is marked).
        """
        raws = [(id_to_bytes(event_id),) for event_id in ids]
        if not raws:
            return 0
        with self._db.transaction("journal mark_acked") as conn:
            changed = conn.executemany(
                "UPDATE events SET status = 2, dead_reason = NULL WHERE id = ? AND status <> 2",
                raws,
            ).rowcount
            self._advance_low(conn)
            if self._low - 1 - self._anchor_seq > self._keep_acked + self._trim_batch:
                self._trim_locked(conn, self._keep_acked)
        return changed

    def requeue(self, ids: Iterable[str]) -> int:
        """Put IN_FLIGHT events back to READY (their upload failed and will
        be retried); return how many changed."""
        raws = [(id_to_bytes(event_id),) for event_id in ids]
        if not raws:
            return 0
        with self._db.transaction("journal requeue") as conn:
            return conn.executemany(
                "UPDATE events SET status = 0 WHERE id = ? AND status = 1", raws
            ).rowcount

    def mark_dead(self, event_id: str, reason: str) -> bool:
        """Dead-letter one event the central refused for good, with the
        reason; return False if it is unknown or already ACKED.

        Dead events are never trimmed: they stay, with their reason, until
        :meth:`requeue_dead` or an acknowledgement. Raises
        :class:`ValueError` for an empty reason or a malformed id.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("reason: a dead-lettered event needs a reason")
        raw = id_to_bytes(event_id)
        with self._db.transaction("journal mark_dead") as conn:
            return (
                conn.execute(
                    "UPDATE events SET status = 3, dead_reason = ? WHERE id = ? AND status <> 2",
                    (reason, raw),
                ).rowcount
                == 1
            )

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Put dead-lettered events (all, or these ids) back to READY; return
        how many changed."""
        with self._db.transaction("journal requeue_dead") as conn:
            if ids is None:
                return conn.execute(
                    "UPDATE events SET status = 0, dead_reason = NULL "
                    "WHERE status <> 0 AND status = 3"
                ).rowcount
            raws = [(id_to_bytes(event_id),) for event_id in ids]
            return conn.executemany(
                "UPDATE events SET status = 0, dead_reason = NULL WHERE id = ? AND status = 3",
                raws,
            ).rowcount

    def trim(self, keep_acked: int | None = None) -> int:
        """Delete acknowledged events beyond the newest ``keep_acked`` (the
        setting by default); return how many were deleted.

        Only a prefix of the chain goes, up to the first event that is not
        ACKED; the last deleted event's seq, hash and id become the anchor.
        """
        keep = self._keep_acked if keep_acked is None else keep_acked
        if keep < 0:
            raise ValueError(f"keep_acked: {keep} must be >= 0")
        with self._db.transaction("journal trim") as conn:
            return self._trim_locked(conn, keep)

    def _advance_low(self, conn: sqlite3.Connection) -> None:
        row = conn.execute(
            "SELECT seq FROM events WHERE seq >= ? AND status <> 2 ORDER BY seq LIMIT 1",
            (self._low,),
        ).fetchone()
        if row is not None:
            self._low = row[0]
        else:
            top = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
            self._low = max(self._low, (top or self._anchor_seq) + 1)

    def _trim_locked(self, conn: sqlite3.Connection, keep: int) -> int:
        self._advance_low(conn)
        through = self._low - 1 - keep
        if through <= self._anchor_seq:
            return 0
        # The last event at or below ``through``: never a seq lost in a journal gap.
        last = conn.execute(
            "SELECT seq, hash, id FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1",
            (through,),
        ).fetchone()
        if last is not None and last[0] <= self._anchor_seq:
            return 0
        through, row = (through, None) if last is None else (last[0], last[1:])
        unacked = conn.execute(
            "SELECT count(*) FROM events WHERE seq > ? AND seq <= ? AND status <> 2",
            (self._anchor_seq, through),
        ).fetchone()[0]
        if row is None or unacked:
            # Never expected: it would mean the low-water mark is wrong.
            raise StoreError(f"journal trim through seq {through} refused: chain not all acked")
        deleted = conn.execute(
            "DELETE FROM events WHERE seq > ? AND seq <= ?", (self._anchor_seq, through)
        ).rowcount
        Database.meta_set(conn, _META_ANCHOR_SEQ, through)
        Database.meta_set(conn, _META_ANCHOR_HASH, row[0])
        Database.meta_set(conn, _META_ANCHOR_ID, row[1])
        self._anchor_seq = through
        return deleted

    # -- verification -------------------------------------------------------------------

    def verify_chain(self) -> VerifyResult:
        """Re-hash every stored event and check the links; return the result.

        Checks, in sequence order from the trim anchor: sequence numbers are
        consecutive, each ``prev_hash`` equals the previous event's hash (or
        the anchor's), each stored hash equals the hash recomputed from the
        event's fields, and ids increase. Stops at the first broken link.
        Deleting the *newest* events cannot be detected here (nothing
        follows them); the central detects it against what it received.
        """
        with self._db.snapshot() as conn:
            anchor_seq = int(Database.meta_get(conn, _META_ANCHOR_SEQ, 0))
            prev_hash = Database.meta_get(conn, _META_ANCHOR_HASH, GENESIS_HASH)
            prev_id = Database.meta_get(conn, _META_ANCHOR_ID)
            expected = anchor_seq + 1
            checked = 0
            first_seq = None
            gaps: list[tuple[int, int]] = []
            cursor = conn.execute(
                "SELECT seq, id, wall_ms, mono_ns, type, payload, prev_hash, hash "
                "FROM events ORDER BY seq"
            )

            def broken(seq: int, why: str) -> VerifyResult:
                return VerifyResult(
                    False, checked, first_seq, expected - 1, prev_hash.hex(), seq, why, tuple(gaps)
                )

            while rows := cursor.fetchmany(2048):
                for seq, raw_id, wall_ms, mono_ns, event_type, payload, stored_prev, stored in rows:
                    if first_seq is None:
                        first_seq = seq
                    if seq > expected and _declares_gap(event_type, payload, expected, seq):
                        gaps.append((expected, seq - 1))
                        expected = seq
                    if seq != expected:
                        if seq > expected:
                            return broken(
                                seq, f"events {expected}..{seq - 1} are missing before seq {seq}"
                            )
                        return broken(seq, f"seq {seq} is out of order (expected {expected})")
                    if stored_prev != prev_hash:
                        return broken(
                            seq,
                            "prev_hash does not match the hash of "
                            + (f"seq {seq - 1}" if seq > 1 else "genesis"),
                        )
                    if not isinstance(payload, str) or not isinstance(event_type, str):
                        return broken(seq, "type or payload is not text")
                    try:
                        digest = event_hash(
                            stored_prev, seq, raw_id, wall_ms, mono_ns, event_type, payload
                        )
                    except (TypeError, ValueError, OverflowError) as exc:
                        return broken(seq, f"fields cannot be encoded: {exc}")
                    if digest != stored:
                        return broken(
                            seq,
                            "hash does not match the event's content "
                            "(type, payload, time or id was altered)",
                        )
                    if prev_id is not None and raw_id <= prev_id:
                        return broken(seq, "id is not greater than the previous event's id")
                    prev_hash, prev_id = stored, raw_id
                    expected += 1
                    checked += 1
        return VerifyResult(
            True,
            checked,
            first_seq,
            expected - 1 if checked else None,
            prev_hash.hex(),
            gaps=tuple(gaps),
        )


def _declares_gap(event_type: str, payload: object, first: int, seq: int) -> bool:
    """True if the event at ``seq`` is a ``journal.gap`` for exactly ``first..seq - 1``."""
    if event_type != "journal.gap" or not isinstance(payload, str):
        return False
    try:
        data = json.loads(payload)
    except ValueError:
        return False
    return (
        isinstance(data, dict) and data.get("from_seq") == first and data.get("to_seq") == seq - 1
    )


def _chain_problems(conn: sqlite3.Connection, *, hash_after: int) -> Iterable[tuple[int, str]]:
    """Yield (seq, why) for every broken link of the kept chain, in order.

    Links are checked for every event; hashes are recomputed only for
    acknowledged events and events after ``hash_after``. Like the central, the
    chain goes on from each event's stored hash, so one altered event is one
    finding, not one per later event.
    """
    expected = int(Database.meta_get(conn, _META_ANCHOR_SEQ, 0)) + 1
    prev_hash = Database.meta_get(conn, _META_ANCHOR_HASH, GENESIS_HASH)
    cursor = conn.execute(
        "SELECT seq, id, wall_ms, mono_ns, type, payload, prev_hash, hash, status "
        "FROM events ORDER BY seq"
    )
    acked = int(SyncStatus.ACKED)
    while rows := cursor.fetchmany(2048):
        for seq, raw_id, wall_ms, mono_ns, event_type, payload, stored_prev, stored, status in rows:
            if seq != expected and not _declares_gap(event_type, payload, expected, seq):
                yield seq, f"seq {seq} follows seq {expected - 1} with no journal.gap event"
            elif stored_prev != prev_hash:
                yield seq, "prev_hash does not match the previous event's hash"
            elif status == acked or seq > hash_after:
                try:
                    digest = event_hash(
                        stored_prev, seq, raw_id, wall_ms, mono_ns, event_type, payload
                    )
                except (TypeError, ValueError, OverflowError, AttributeError) as exc:
                    yield seq, f"fields cannot be encoded: {exc}"
                else:
                    if digest != stored:
                        yield seq, "hash does not match the event's content"
            prev_hash, expected = stored, seq + 1
