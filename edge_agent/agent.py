"""The agent: one object that ties the store, the policy, the door and the reader together.

Everything the local API (and the CLI) can ask of a door goes through
:class:`Agent`'s methods; the HTTP layer in :mod:`edge_agent.api` only
translates. The order of work for a credential is the design's promise:

1. decide (pure policy over the cache),
2. claim single-use invitations / NTAG 424 counters atomically in the store,
3. journal the decision durably (``synchronous=FULL``),
4. only then command the door, and
5. publish the outcome to the kiosk's event stream.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from edge_agent.config import AgentConfig
from edge_agent.devices import Devices
from edge_agent.door import Alarm, DoorController, DoorMode, GrantRefused, Scheduler
from edge_agent.guards import Guard, GuardDenied, GuardSessions, Session
from edge_agent.ntag424 import DiversifiedKeys, SunSettings, SunVerifier
from edge_agent.policy import BadgeRecord, Credential, Decision, DoorPolicy, Schedule, decide
from edge_agent.reasons import Reason
from edge_agent.store import Store, StoreError
from edge_agent.timefloor import ClockTrust, TimeFloor, os_clock_synchronised
from edge_agent.tokens import Keyring, TrustedKey

log = logging.getLogger(__name__)

#: Guard actions the local API accepts, and the door mode each one sets.
GUARD_ACTIONS = ("open_once", "lockdown", "free_access", "normal", "acknowledge")
_MODE_OF_ACTION = {
    "lockdown": DoorMode.LOCKDOWN,
    "free_access": DoorMode.FREE_ACCESS,
    "normal": DoorMode.NORMAL,
}
#: A visitor may self check-in (with a photo) this long after their QR was granted.
CHECKIN_WINDOW_S = 300.0
#: The alarm raised (``alarm.raised``) while the wall clock is below the time floor.
CLOCK_ALARM = "clock_untrusted"
#: The smallest tolerance below the time floor, whatever ``max_clock_skew_s`` says:
#: the central's time in a heartbeat is only known to within its round trip.
MIN_CLOCK_TOLERANCE_S = 1.0


class ActionError(Exception):
    """A guard action or check-in that cannot be done; ``code`` says why."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class EventBus:
    """Fan-out of live events to subscribers (the kiosk's event stream).

    Each subscriber has a bounded queue; a subscriber that stops reading loses
    the oldest events (and is told with a ``stream.gap`` event) rather than
    slowing the door down.
    """

    def __init__(self, maxsize: int = 256) -> None:
        self._subscribers: set[queue.Queue[dict[str, Any]]] = set()
        self._callbacks: set[Callable[[dict[str, Any]], None]] = set()
        self._lock = threading.Lock()
        self._maxsize = maxsize

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send one event to every subscriber."""
        event = {"type": kind, "at": time.time(), **data}
        with self._lock:
            subscribers = list(self._subscribers)
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed")
        for q in subscribers:
            try:
                q.put_nowait(event)
            except queue.Full:
                # A subscriber that stopped reading loses its oldest event, and is told.
                with contextlib.suppress(queue.Empty, queue.Full):
                    q.get_nowait()
                    q.put_nowait({"type": "stream.gap", "at": time.time()})

    @contextmanager
    def subscribe(self) -> Iterator[queue.Queue[dict[str, Any]]]:
        """A queue receiving events while the ``with`` block lasts."""
        q: queue.Queue[dict[str, Any]] = queue.Queue(self._maxsize)
        with self._lock:
            self._subscribers.add(q)
        try:
            yield q
        finally:
            with self._lock:
                self._subscribers.discard(q)

    @contextmanager
    def subscribe_callback(self, callback: Callable[[dict[str, Any]], None]) -> Iterator[None]:
        """Call ``callback(event)`` from the publishing thread while the block lasts.

        For consumers with their own queue (the API's asyncio loop); the
        callback must be quick and must not raise.
        """
        with self._lock:
            self._callbacks.add(callback)
        try:
            yield
        finally:
            with self._lock:
                self._callbacks.discard(callback)

    @property
    def subscriber_count(self) -> int:
        """How many streams are open."""
        with self._lock:
            return len(self._subscribers) + len(self._callbacks)


class StoreCacheView:
    """The policy's :class:`~edge_agent.policy.CacheView` over the SQLite store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._keyring_lock = threading.Lock()
        self._keyring: tuple[object, Keyring] | None = None

    def keyring(self) -> Keyring:
        """Pinned keys, rebuilt only when the set of keys changes (rotation, no restart)."""
        keys = self._store.cache.signing_keys()
        fingerprint = tuple((k.kid, k.public_key, k.not_before, k.not_after) for k in keys)
        with self._keyring_lock:
            if self._keyring is None or self._keyring[0] != fingerprint:
                trusted = []
                for k in keys:
                    if k.alg not in ("EdDSA", "Ed25519"):
                        log.warning("signing key %s: algorithm %s not supported", k.kid, k.alg)
                        continue
                    trusted.append(TrustedKey(k.kid, k.public_key, k.not_before, k.not_after))
                self._keyring = (fingerprint, Keyring(trusted))
            return self._keyring[1]

    def is_revoked(self, kind: str, ident: str) -> bool:
        """True if the invitation id or badge UID is revoked."""
        return self._store.cache.is_revoked(kind, ident.lower() if kind == "badge" else ident)

    def badge(self, uid_hex: str) -> BadgeRecord | None:
        """The cached badge as the policy sees it."""
        b = self._store.cache.badge(uid_hex)
        if b is None:
            return None
        data = dict(b.data or {})
        return BadgeRecord(
            uid=b.uid.hex().upper(),
            holder=b.holder,
            kind="ntag424" if b.kind == "ntag424" else "uid",
            doors=("*",) if b.doors is None else tuple(b.doors),
            zones=tuple(data.get("zones", ())),
            enabled=bool(data.get("enabled", True)),
            valid_from=b.not_before,
            valid_until=b.not_after,
            schedule=data.get("schedule"),
        )

    def invitation_used(self, invitation_id: str) -> bool:
        """True if the single-use invitation was used here or (synced) elsewhere."""
        return self._store.replay.is_used(invitation_id)

    def last_counter(self, uid_hex: str) -> int | None:
        """Last accepted SUN counter of the badge."""
        return self._store.replay.last_counter(uid_hex)

    def schedule(self, name: str) -> Schedule | None:
        """The named schedule from the cache."""
        s = self._store.cache.schedule(name)
        if s is None:
            return None
        try:
            return Schedule.from_dict({"name": name, **dict(s.data)})
        except ValueError:
            log.error("schedule %s in the cache is invalid: refusing by it", name)
            return None

    def staleness_s(self, now: float) -> float | None:
        """Seconds since the last applied delta, or None if never synced."""
        ms = self._store.cache.downlink().staleness_ms(int(now * 1000))
        return None if ms is None else ms / 1000.0

    def guard(self, uid_hex: str) -> Guard | None:
        """The guard holding this badge (badge data role = guard), or None."""
        try:
            b = self._store.cache.badge(uid_hex)
        except ValueError:  # not a UID at all: no guard holds it
            return None
        if b is None or not b.data or b.data.get("role") != "guard":
            return None
        pin_hash = b.data.get("pin_hash")
        if not isinstance(pin_hash, str):
            return None
        return Guard(
            str(b.data.get("guard_id", b.uid.hex())), b.holder, b.uid.hex().upper(), pin_hash
        )


def _sun_verifier(config: AgentConfig) -> SunVerifier | None:
    keys = config.ntag424
    if not keys.configured:
        return None
    file_key: Any
    if keys.file_read_master_key:
        file_key = DiversifiedKeys(bytes.fromhex(keys.file_read_master_key))
    else:
        file_key = bytes.fromhex(keys.file_read_key or "")
    meta = bytes.fromhex(keys.meta_read_key) if keys.meta_read_key else None
    settings = SunSettings(picc_param=keys.picc_param, mac_param=keys.mac_param)
    return SunVerifier(file_read_key=file_key, meta_read_key=meta, settings=settings)


class Agent:
    """The door controller. Thread-safe; create with an open store and devices.

    ``devices.door_io`` may be None only for tools that never open the door
    (tests of the decision path); the real service always has one.
    """

    def __init__(
        self,
        config: AgentConfig,
        store: Store,
        devices: Devices,
        *,
        scheduler: Scheduler | None = None,
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
        ntp_synced: Callable[[], bool] | None = os_clock_synchronised,
    ) -> None:
        self.config = config
        self.store = store
        self.devices = devices
        self.bus = EventBus()
        self.cache = StoreCacheView(store)
        self._wall = wall_clock
        self._mono = mono_clock
        self._started_mono = mono_clock()
        self._journal_lock = threading.Lock()
        self._recent_grants: dict[str, float] = {}
        self._grants_lock = threading.Lock()
        door_cfg = config.door
        self.policy = DoorPolicy(
            site=config.device.site,
            door=door_cfg.id,
            zones=tuple(door_cfg.zones),
            accept_qr=door_cfg.accept_qr,
            accept_ntag424=door_cfg.accept_ntag424,
            accept_uid=door_cfg.accept_uid,
            max_offline_staleness_s=door_cfg.max_offline_staleness_s,
            visitor_schedule=door_cfg.visitor_schedule,
            max_skew_s=door_cfg.max_clock_skew_s,
        )
        #: The latest trusted time (journal, central, NTP): a clock set back below it
        #: refuses time-bounded credentials (edge_agent.timefloor).
        self.time_floor = TimeFloor(
            store,
            wall=wall_clock,
            mono=mono_clock,
            tolerance_s=max(MIN_CLOCK_TOLERANCE_S, door_cfg.max_clock_skew_s),
            ntp_synced=ntp_synced,
        )
        # Before this start is journaled: the newest event is the previous run's.
        self.time_floor.observe_journal()
        self._clock_lock = threading.Lock()
        self._clock_alarm = False
        self.sun = _sun_verifier(config)
        self.guards = GuardSessions(
            self.cache.guard,
            mono_clock,
            max_failures=config.guard.max_pin_failures,
            lockout_s=config.guard.lockout_s,
            session_timeout_s=config.guard.session_timeout_s,
        )
        self.door = (
            DoorController(
                devices.door_io,
                door_cfg.timings(),
                scheduler=scheduler,
                emit=self._door_event,
                mode=DoorMode(door_cfg.mode),
            )
            if devices.door_io is not None
            else None
        )
        self._reader_stop = threading.Event()
        self._reader_thread: threading.Thread | None = None
        self._closed = False
        #: The central link (edge_agent.sync.CentralLink) when one runs: status reads it.
        self.link: Any = None
        self.journal(
            "agent.started",
            {"device": config.device.id, "door": door_cfg.id, "mode": door_cfg.mode},
        )
        self.check_clock()  # a clock behind the floor at boot raises the alarm now
        if self.door is not None:
            self.door.attach()

    # -- journaling -----------------------------------------------------------------
    def journal(self, kind: str, payload: dict[str, Any]) -> Any:
        """Append one event durably (returns the store's Event) and publish it live."""
        event = self.store.journal.append(kind, payload)
        self.bus.publish(kind, {"seq": event.seq, "event_id": event.id, **payload})
        return event

    def _journal_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Append several events in one durable commit and publish them live."""
        events = self.store.journal.append_many(items)
        for event, (kind, payload) in zip(events, items, strict=True):
            self.bus.publish(kind, {"seq": event.seq, "event_id": event.id, **payload})
        return events

    def _shared_claim(self, decision: Decision) -> tuple[str, dict[str, Any]] | None:
        """The event that tells the central about a claim (single use, SUN counter).

        Only with a central to tell: these events exist for the sync protocol.
        """
        if not decision.granted or decision.claim is None or not self.config.central.url:
            return None
        what, ident, value = decision.claim
        if what == "invitation":
            payload = {"invitation_id": ident, "door": self.config.door.id, "expires": int(value)}
            return ("invitation.used", payload)
        return ("badge.counter", {"uid": ident.lower(), "counter": int(value)})

    def _door_event(self, kind: str, payload: dict[str, Any]) -> None:
        # Door events come from input/timer threads with the door's lock held:
        # journal them in order, and never let a full disk stop the door.
        try:
            self.journal(kind, {"door": self.config.door.id, **payload})
        except StoreError:
            log.exception("cannot journal door event %s", kind)
            self.bus.publish(kind, {"door": self.config.door.id, "journaled": False, **payload})

    # -- access decisions -------------------------------------------------------
    def present(self, credential: Credential, source: str = "api") -> dict[str, Any]:
        """Decide on a credential, journal it durably, then act on the door.

        Returns the decision as a JSON-ready dict with the journal ``seq``.
        Raises :class:`StoreError` only if the decision could not be journaled;
        in that case the door did not open (durable first, then act).
        """
        now = self._wall()
        trust = self.check_clock(now)
        mode = self.door.mode if self.door is not None else DoorMode(self.config.door.mode)
        decision = decide(
            credential,
            self.policy,
            mode,
            now,
            self.cache,
            self.sun,
            clock_floor=None if trust.trusted else trust.floor,
        )
        payload = {"door": self.config.door.id, "source": source, **decision.to_dict()}
        if decision.granted and decision.claim is not None:
            decision, payload, event = self._journal_claimed(decision, payload)
        else:
            event = self.journal("access.decision", payload)
        if decision.granted and self.door is not None:
            try:
                self.door.grant(by=f"{decision.kind}:{decision.credential_id}")
            except GrantRefused:
                # Lockdown arrived between decision and action: the door stays shut.
                self.journal(
                    "access.aborted",
                    {"door": self.config.door.id, "seq": event.seq, "why": "lockdown"},
                )
                payload = {**payload, "granted": False, "reason": Reason.LOCKDOWN.value}
        if decision.granted and decision.kind == "qr":
            self._remember_grant(decision.credential_id)
        return {**payload, "seq": event.seq, "event_id": event.id}

    # -- clock trust --------------------------------------------------------------
    def check_clock(self, now: float | None = None) -> ClockTrust:
        """Assess the wall clock against the time floor; raise or clear the alarm.

        ``alarm.raised {"alarm": "clock_untrusted"}`` is journaled when the clock falls
        below the floor (minus the tolerance), ``alarm.cleared`` when it is trusted
        again. A journal failure leaves the alarm state as it was, so the next check
        tries again.
        """
        trust = self.time_floor.assess(now)
        with self._clock_lock:
            if trust.trusted != self._clock_alarm:
                return trust  # no change
            payload: dict[str, Any] = {
                "door": self.config.door.id,
                "alarm": CLOCK_ALARM,
                "wall_ms": int(trust.wall * 1000),
                "floor_ms": None if trust.floor is None else int(trust.floor * 1000),
                "source": trust.source,
            }
            if trust.trusted:
                kind = "alarm.cleared"
            else:
                kind = "alarm.raised"
                payload["detail"] = (
                    f"wall clock {trust.behind_s:.0f} s behind the latest trusted time "
                    f"({trust.source}): time-bounded credentials refused"
                )
            try:
                self.journal(kind, payload)
            except StoreError:
                log.exception("could not journal the clock alarm")
                return trust
            self._clock_alarm = not trust.trusted
        if trust.trusted:
            log.warning("clock trusted again (floor %s from %s)", trust.floor, trust.source)
        else:
            log.error("clock untrusted: %s", payload["detail"])
        return trust

    def note_central_time(self, server_time_ms: int, offset_ms: float) -> None:
        """A central heartbeat answered at ``server_time_ms`` with our clock ``offset_ms``
        off (the central's minus ours): a trusted time, and a vouch for our clock when
        the offset is small (:meth:`TimeFloor.observe_central`)."""
        old = self.time_floor.observe_central(server_time_ms / 1000.0, offset_ms / 1000.0)
        if old is not None:
            try:
                self.journal(
                    "clock.floor_reset",
                    {
                        "from_ms": int(old * 1000),
                        "to_ms": int(server_time_ms),
                        "offset_ms": round(offset_ms),
                        "by": "central",
                    },
                )
            except StoreError:
                log.exception("could not journal the time floor reset")
        self.check_clock()

    def _remember_grant(self, invitation_id: str) -> None:
        # Only grants still inside the check-in window matter; forget the rest
        # so that a door open for months does not keep every invitation id.
        now = self._mono()
        with self._grants_lock:
            if len(self._recent_grants) >= 1024:
                self._recent_grants = {
                    i: t for i, t in self._recent_grants.items() if now - t <= CHECKIN_WINDOW_S
                }
            self._recent_grants[invitation_id] = now

    def _journal_claimed(
        self, decision: Decision, payload: dict[str, Any]
    ) -> tuple[Decision, dict[str, Any], Any]:
        """Claim the single-use invitation / SUN counter and journal the outcome
        in one commit: granted if the claim took effect, REPLAYED otherwise."""
        assert decision.claim is not None
        what, ident, value = decision.claim
        replay = self.store.replay
        if what == "invitation":
            claim = replay.invitation_claim(ident, int(value))
        else:
            claim = replay.counter_claim(ident, int(value))
        lost = replace(
            decision,
            granted=False,
            reason=Reason.REPLAYED,
            detail="claimed concurrently by another presentation",
            claim=None,
        )
        lost_payload = {**payload, **lost.to_dict()}
        granted_items = [("access.decision", payload)]
        shared = self._shared_claim(decision)
        if shared is not None:
            # Journaled with the decision, in the same commit, for the central to
            # share with every door of the site (docs/central-api.yaml, /v1/events).
            granted_items.append(shared)
        events, claimed = self.store.journal.append_claimed(
            claim, granted_items, [("access.decision", lost_payload)]
        )
        items = granted_items if claimed else [("access.decision", lost_payload)]
        for event, (kind, body) in zip(events, items, strict=True):
            self.bus.publish(kind, {"seq": event.seq, "event_id": event.id, **body})
        if claimed:
            return decision, payload, events[0]
        return lost, lost_payload, events[0]

    # -- NFC reader loop --------------------------------------------------------
    def start_reader(self) -> None:
        """Read badges in a thread and present each one (headless doors and kiosks)."""
        reader = self.devices.reader
        if reader is None or self._reader_thread is not None:
            return
        self._reader_thread = threading.Thread(
            target=self._reader_loop, name="nfc-reader", daemon=True
        )
        self._reader_thread.start()

    def _reader_loop(self) -> None:
        reader = self.devices.reader
        while not self._reader_stop.is_set():
            try:
                badge = reader.read(timeout=0.5)
            except Exception:
                log.exception("badge reader failed; retrying in 1 s")
                self._reader_stop.wait(1.0)
                continue
            if badge is None:
                continue
            try:
                self.present(Credential.badge(badge.uid, _sun_url(badge)), source="nfc")
            except StoreError:
                log.exception("badge decision could not be journaled; door stays shut")

    @property
    def reader_alive(self) -> bool:
        """False if the reader thread died (the watchdog stops pinging)."""
        thread = self._reader_thread
        return thread is None or thread.is_alive()

    # -- guards -----------------------------------------------------------------
    def guard_login(self, badge_uid: str, pin: str) -> Session:
        """Open a guard session; journals success and failure. Raises GuardDenied."""
        try:
            session = self.guards.login(badge_uid, pin)
        except GuardDenied as exc:
            self.journal("guard.login_failed", {"badge_uid": badge_uid.upper(), "why": exc.detail})
            raise
        self.journal("guard.login", {"guard_id": session.guard_id, "name": session.name})
        return session

    def guard_session(self, token: str) -> Session:
        """The live session for ``token``. Raises :class:`ActionError` (401) otherwise."""
        session = self.guards.check(token)
        if session is None:
            raise ActionError("not_logged_in", "guard session missing or expired", status=401)
        return session

    def guard_logout(self, token: str) -> None:
        """Close a guard session (journaled)."""
        session = self.guards.check(token, touch=False)
        if self.guards.logout(token) and session is not None:
            self.journal("guard.logout", {"guard_id": session.guard_id})

    def guard_action(
        self, token: str, action: str, reason: str, alarm: str | None = None
    ) -> dict[str, Any]:
        """Carry out a guard action with who and why journaled; return the door state."""
        session = self.guard_session(token)
        if action not in GUARD_ACTIONS:
            raise ActionError("unknown_action", f"action must be one of {GUARD_ACTIONS}")
        if not reason or not reason.strip():
            raise ActionError("reason_required", "every guard action needs a reason")
        if self.door is None:
            raise ActionError("no_door", "this agent has no door", status=409)
        if action == "acknowledge" and (alarm is None or alarm not in {a.value for a in Alarm}):
            raise ActionError("unknown_alarm", f"alarm must be one of {[a.value for a in Alarm]}")
        who = f"guard:{session.guard_id}"
        self.journal(
            "guard.action",
            {
                "guard_id": session.guard_id,
                "name": session.name,
                "action": action,
                "why": reason,
                "alarm": alarm,
            },
        )
        if action == "open_once":
            try:
                self.door.grant(by=who)
            except GrantRefused as exc:
                raise ActionError("lockdown", "lift the lockdown first", status=409) from exc
        elif action == "acknowledge":
            assert alarm is not None
            if not self.door.acknowledge(alarm, by=who, why=reason):
                raise ActionError("no_such_alarm", f"no unacknowledged {alarm} alarm", status=409)
        else:
            self.door.set_mode(_MODE_OF_ACTION[action], by=who, why=reason)
        return self.door.snapshot()

    # -- visitors ---------------------------------------------------------------
    def visitor_lookup(self, token: str, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Invitations whose visitor name starts with ``query`` (guard only)."""
        self.guard_session(token)
        found = self.store.cache.find_invitations(query, limit=limit)
        return [
            {
                "invitation_id": i.id,
                "visitor": i.visitor,
                "host": i.host,
                "doors": list(i.doors) if i.doors is not None else None,
                "not_before": i.not_before,
                "not_after": i.not_after,
                "single_use": i.single_use,
                "used": self.store.replay.is_used(i.id),
            }
            for i in found
        ]

    def checkin(
        self, invitation_id: str, *, consent: bool, photo: bytes | None, token: str | None = None
    ) -> dict[str, Any]:
        """Record a visitor's check-in, with a photo only if they consented.

        A visitor may check in themselves within :data:`CHECKIN_WINDOW_S` of
        their invitation being granted at this door; otherwise a guard
        session (``token``) is required (manual check-in).
        """
        by = "visitor"
        granted_at = self._recent_grants.get(invitation_id)
        if granted_at is None or self._mono() - granted_at > CHECKIN_WINDOW_S:
            if token is None:
                raise ActionError("guard_required", "manual check-in needs a guard", status=401)
            by = f"guard:{self.guard_session(token).guard_id}"
        if photo and not consent:
            raise ActionError("no_consent", "a photo is taken only with the visitor's consent")
        media_id = None
        if photo and consent:
            try:
                media_id = self.store.media.put(photo, content_type="image/jpeg").id
            except StoreError as exc:
                log.warning("photo not stored (%s); check-in goes on without it", exc)
        event = self.journal(
            "visitor.checked_in",
            {"invitation_id": invitation_id, "by": by, "photo": media_id, "consent": consent},
        )
        return {"checked_in": True, "seq": event.seq, "photo": media_id}

    def recent_events(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest journal events, newest first (the guard console's list)."""
        head = self.store.journal.head().seq
        events = self.store.journal.events(from_seq=max(1, head - limit + 1), limit=limit)
        return [
            {"seq": e.seq, "event_id": e.id, "at": e.wall_ms / 1000.0, "type": e.type, **e.payload}
            for e in reversed(events)
        ]

    # -- simulator ----------------------------------------------------------------
    def simulate(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Drive simulated hardware (the demo panel). Refused on real hardware."""
        sim = self.devices.door_sim
        reader = self.devices.reader
        if not self.devices.simulated:
            raise ActionError("not_simulated", "this agent runs on real hardware", status=403)
        on = bool(body.get("on", True))
        door_actions: dict[str, Callable[[], None]] = {}
        if sim is not None:
            door_actions = {
                "door_open": sim.open_door,
                "door_close": sim.close_door,
                "rex": sim.press_rex,
                "fire": lambda: sim.fire_alarm(on),
                "tamper": lambda: sim.tamper(on),
            }
        if action in door_actions:
            door_actions[action]()
        elif action == "badge" and reader is not None and hasattr(reader, "present"):
            uid = body.get("uid")
            if not isinstance(uid, str):
                raise ActionError("bad_request", "'uid' (hex) is required")
            records = []
            if isinstance(body.get("sun_url"), str):
                import ndef

                records.append(ndef.UriRecord(body["sun_url"]))
            try:
                reader.present(uid, ndef=records)
            except ValueError as exc:
                raise ActionError("bad_request", str(exc)) from exc
        else:
            raise ActionError("unknown_action", f"no simulated action {action!r}", status=404)
        return {"ok": True, "action": action}

    # -- status -----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The appliance's state for the kiosk, the guard screen and the CLI."""
        now = self._wall()
        trust = self.check_clock(now)
        counts = self.store.journal.counts()
        stale = self.cache.staleness_s(now)
        pressure = self.store.disk_pressure()
        return {
            "device": self.config.device.id,
            "site": self.config.device.site,
            "door": self.door.snapshot() if self.door is not None else None,
            "door_id": self.config.door.id,
            "online": bool(self.link is not None and self.link.online),
            "sync": self.link.status() if self.link is not None else None,
            "last_sync": self.store.cache.downlink().last_sync_ms,
            "cache_staleness_s": None if stale is None else round(stale, 1),
            "events_waiting": counts.backlog,
            "dead_letters": getattr(counts, "dead", 0),
            "clock": now,
            "clock_trusted": trust.trusted,
            "time_floor": trust.to_dict(),
            "uptime_s": round(self._mono() - self._started_mono, 1),
            "disk": {"level": pressure.level.name.lower(), "alarm": pressure.alarm},
            "reader": self.devices.reader is not None,
            "hardware_errors": dict(self.devices.errors),
            "event_streams": self.bus.subscriber_count,
        }

    def healthy(self) -> bool:
        """True while the agent can do its job (gates the systemd watchdog ping)."""
        return self.reader_alive and not self.store.closed

    # -- life cycle -------------------------------------------------------------
    def close(self) -> None:
        """Stop the reader, lock the door, journal the stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._reader_stop.set()
        if self._reader_thread is not None:
            self._reader_thread.join(timeout=2)
            self._reader_thread = None
        stopped: dict[str, Any] = {"device": self.config.device.id}
        if self.door is not None:
            self.door.safe_state()
            # Read back, so the journal shows the door was left locked.
            stopped["relay_energised"] = bool(self.door.io.lock_relay_energised)
        if not self.store.closed:
            try:
                self.journal("agent.stopped", stopped)
            except StoreError:
                log.exception("could not journal the stop")


def _sun_url(badge: Any) -> str | None:
    """The URL of the first NDEF URI record (an NTAG 424 DNA's SUN message), if any."""
    for record in getattr(badge, "ndef", ()) or ():
        uri = getattr(record, "iri", None) or getattr(record, "uri", None)
        if isinstance(uri, str) and uri:
            return uri
    return None
