"""The agent: one object that ties the store, the policy, the door and the reader together.

Everything the local API (and the CLI) can ask of a door goes through
:class:`Agent`'s methods; the HTTP layer in :mod:`edge_agent.api` only
translates. The order of work for a credential is the design's promise:

1. decide (pure policy over the cache),
2. claim single-use invitations / NTAG 424 counters atomically in the store,
3. journal the decision durably (``synchronous=FULL``),
4. only then command the door, and
5. publish the outcome to the kiosk's event stream.

The jobs beside that are classes it composes: :class:`~edge_agent.events.EventBus`,
:class:`~edge_agent.cacheview.StoreCacheView`, :class:`~edge_agent.grants.OpenGrants`,
:class:`~edge_agent.door.DoorController`, :class:`~edge_agent.guarddesk.GuardDesk`
(guard logins and sessions), :class:`~edge_agent.visitors.VisitorDesk` (check-ins,
the expected-today list) and :class:`~edge_agent.visitors.HelpCall`; the simulator's
actions are :meth:`~edge_agent.devices.Devices.simulate`. The local API calls the
agent's methods only: where the work is a composed class's, the method delegates.
The link to the central is given at
construction (``link``); refusals are :class:`ActionError` with a reason code, whose
HTTP status :mod:`edge_agent.api` chooses (docs/architecture.md, "Inside the agent").
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from edge_agent.cacheview import StoreCacheView
from edge_agent.cardpin import CardPin, PinOutcome
from edge_agent.config import AgentConfig
from edge_agent.devices import Devices
from edge_agent.door import (
    DoorController,
    DoorMode,
    DoorSettings,
    GrantRefused,
    Scheduler,
)
from edge_agent.errors import ActionError
from edge_agent.events import EventBus
from edge_agent.grants import OpenGrants
from edge_agent.guarddesk import MODE_OF_ACTION, GuardDesk, action_refusal
from edge_agent.guards import Session
from edge_agent.onsite import OnSite
from edge_agent.passdesk import PassDesk
from edge_agent.policy import (
    Credential,
    Decision,
    DoorPolicy,
    decide,
)
from edge_agent.store import Store, StoreError, StoreFull
from edge_agent.timefloor import ClockTrust, TimeFloor, os_clock_synchronised
from edge_agent.visitors import HelpCall, VisitorDesk, grant_pass_fields
from portier_common.reasons import Reason

log = logging.getLogger(__name__)

#: Durable agent state (store ``meta`` table, ``synchronous=FULL``): the door's mode as
#: last set by a guard or the central, ``{"mode", "by", "why", "at_ms"}`` (JSON) ...
STATE_DOOR_MODE = "agent.door_mode"
#: ... and the last mode of the central's door settings this door applied,
#: ``{"mode": str | None, "version", "command"?}`` (JSON): see :meth:`Agent.apply_central_mode`.
STATE_CENTRAL_MODE = "agent.central_mode"
#: The modes a guard or the central can set (emergency follows the fire input).
SETTABLE_MODES = (DoorMode.NORMAL, DoorMode.LOCKDOWN, DoorMode.FREE_ACCESS)
#: The alarm raised (``alarm.raised``) while the wall clock is below the time floor.
CLOCK_ALARM = "clock_untrusted"
#: The values ``POST /v1/present`` accepts for ``open``.
OPEN_MODES = ("now", "on_request")
#: The smallest tolerance below the time floor, whatever ``max_clock_skew_s`` says:
#: the central's time in a heartbeat is only known to within its round trip.
MIN_CLOCK_TOLERANCE_S = 1.0


class Link(Protocol):
    """The agent's link to the central (:class:`edge_agent.sync.CentralLink`) as the
    agent sees it: its status is part of the agent's."""

    @property
    def online(self) -> bool:
        """True while the central answers."""

    def status(self) -> dict[str, Any]:
        """The link's state (JSON-ready)."""


class Agent:
    """The door controller. Thread-safe; create with an open store and devices.

    ``devices.door_io`` may be None only for tools that never open the door
    (tests of the decision path); the real service always has one.

    ``link``: how to build the link to the central, given the agent (it uses the
    agent's store, journal and event bus), or None for a door without a central.
    The caller chooses it (:func:`edge_agent.service.run`: a
    :class:`~edge_agent.sync.CentralLink` when ``[central] url`` is set), and starts
    and stops it; the agent only reads its status.
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
        link: Callable[[Agent], Link] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.devices = devices
        self.bus = EventBus()
        self.cache = StoreCacheView(store)
        self._wall = wall_clock
        self._mono = mono_clock
        self._started_mono = mono_clock()
        #: Grants opened on request (the kiosk's welcome step).
        self.grants = OpenGrants(
            store,
            config.door,
            append_claimed=self._append_claimed,
            wall=wall_clock,
            mono=mono_clock,
        )
        #: Serialises mode changes: persisted and applied in the same order.
        self._mode_lock = threading.RLock()
        door_cfg = config.door
        # The durable mode comes back before anything can open the door: the door
        # controller starts in it, and service.run starts the reader and the local
        # API only once this constructor has returned.
        restored, restore_note = self._stored_mode()
        self._mode = restored or DoorMode(door_cfg.mode)
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
        self.sun = config.ntag424.verifier()
        #: Guard logins and sessions (badge, tap, PIN, lock-out), and guard actions' rules.
        self.guards = GuardDesk(
            config,
            store,
            self.cache,
            sun=self.sun,
            journal=self.journal,
            append_claimed=self._append_claimed,
            publish=self.bus.publish,
            share_counter=self._share_counter,
            check_clock=self.check_clock,
            wall=wall_clock,
            mono=mono_clock,
        )
        self.door = (
            DoorController(
                devices.door_io,
                door_cfg.timings(),
                scheduler=scheduler,
                emit=self._door_event,
                mode=self._mode,
            )
            if devices.door_io is not None
            else None
        )
        #: Who is on site (checked in, not checked out), from the journal: the muster list.
        self.onsite = OnSite(
            store,
            door=door_cfg.id,
            append_claimed=self._append_claimed,
            invitation=self._invitation_info,
            guard_session=self.guards.session,
            clock_trusted=lambda now: self.check_clock(now, upkeep=False).trusted,
            wall=wall_clock,
        )
        self.onsite.restore()
        #: Visitors' check-ins and the guard console's lists of invitations.
        self.visitors = VisitorDesk(
            store,
            self.cache,
            policy=lambda: self.policy,  # the central's door settings replace it
            trust=functools.partial(self.check_clock, upkeep=False),
            guard_session=self.guards.session,
            journal=self.journal,
            wall=wall_clock,
            mono=mono_clock,
            onsite=self.onsite,
        )
        #: The kiosk's Help button.
        self.help = HelpCall(self.door, door_cfg, journal=self.journal)
        #: The visitor pass printer (edge_agent.passdesk).
        self.passes = PassDesk(
            devices.printer,
            self.door,
            journal=self.journal,
            guard_session=self.guards.session,
            mono=mono_clock,
            pass_belongs=self.onsite.pass_belongs,
        )
        self._reader_stop = threading.Event()
        self._reader_thread: threading.Thread | None = None
        self._wall_thread: threading.Thread | None = None
        #: Card + PIN at wall readers with ``require_pin`` (the guards' PIN lock-out limits).
        self.card_pin = CardPin(store, self.cache, config.guard)
        self._closed = False
        # Built before anything is journaled: a link that cannot be built stops the start.
        self._link = link(self) if link is not None else None
        #: Start-up events a full disk kept out of the journal (flush_deferred).
        self._deferred: list[tuple[str, dict[str, Any]]] = []
        self._journal_at_start(
            "agent.started",
            {"device": config.device.id, "door": door_cfg.id, "mode": self._mode.value},
        )
        if restore_note is not None:
            self._journal_at_start("door.mode_restored", {"door": door_cfg.id, **restore_note})
        self.grants.end_previous_run()
        self.check_clock()  # a clock behind the floor at boot raises the alarm now
        if self.door is not None:
            self.door.attach()
        self.onsite.start()  # auto check-out at the end of each invitation's validity

    # -- the door's durable mode --------------------------------------------------------
    def _stored_mode(self) -> tuple[DoorMode | None, dict[str, Any] | None]:
        """The persisted mode and what to journal about restoring it (None, None: nothing
        persisted, the configuration's ``[door] mode`` applies)."""
        raw = self.store.agent_state(STATE_DOOR_MODE)
        if raw is None:
            return None, None
        try:
            record = json.loads(raw)
            mode = DoorMode(record["mode"])
            if mode not in SETTABLE_MODES:
                raise ValueError(f"{mode.value} is not a settable mode")
        except (TypeError, ValueError, KeyError) as exc:
            # Whether the door was locked down cannot be told: fail closed. A guard
            # (or the central) lifts it, and the journal says why it happened.
            log.error("persisted door mode %r unreadable (%s): starting in lockdown", raw, exc)
            return DoorMode.LOCKDOWN, {
                "mode": DoorMode.LOCKDOWN.value,
                "by": "agent",
                "why": f"persisted door mode unreadable ({exc}): failing closed",
            }
        return mode, {
            "mode": mode.value,
            "by": str(record.get("by", "")),
            "why": str(record.get("why", "")),
            "set_at_ms": record.get("at_ms"),
        }

    @property
    def link(self) -> Link | None:
        """The link to the central given at construction, or None."""
        return self._link

    @property
    def mode(self) -> DoorMode:
        """The mode in force (emergency while the fire input is asserted)."""
        return self.door.mode if self.door is not None else self._mode

    def set_mode(self, mode: DoorMode | str, *, by: str, why: str) -> DoorMode:
        """Set the door's mode durably, then on the door; return the mode in force.

        The mode is committed to the store (``synchronous=FULL``) before the door
        acts, so a crash, ``kill -9``, watchdog restart or power cut at any point
        brings the door back in it (:meth:`_stored_mode`). ``by`` and ``why`` are
        journaled with the change (``mode.changed``). The central's changes go
        through :meth:`apply_central_mode`. Raises :class:`ValueError` for emergency
        or an unknown mode, :class:`StoreError` if it cannot be persisted (then
        nothing changed).
        """
        return self._set_mode(mode, by=by, why=why, also={})

    def _set_mode(
        self,
        mode: DoorMode | str,
        *,
        by: str,
        why: str,
        also: dict[str, Any],
        central: dict[str, Any] | None = None,
    ) -> DoorMode:
        """:meth:`set_mode`, committing the ``also`` agent-state values with the mode
        (*central*: who set it at the central, kept with the mode for the status)."""
        mode = DoorMode(mode)
        if mode not in SETTABLE_MODES:
            raise ValueError("emergency mode follows the fire-alarm input; it cannot be set")
        record: dict[str, Any] = {
            "mode": mode.value,
            "by": by,
            "why": why,
            "at_ms": int(self._wall() * 1000),
        }
        if central is not None:
            record["central"] = central
        values = {STATE_DOOR_MODE: json.dumps(record, sort_keys=True), **also}
        with self._mode_lock:
            self.store.set_agent_state(values)  # durable first ...
            self._mode = mode
            if self._wall_thread is not None:
                self._show_mode_on_wall_readers(mode)
            if self.door is None:
                return mode
            return self.door.set_mode(mode, by=by, why=why)  # ... then the door acts

    def apply_central_mode(
        self, mode: str | None, version: object = None, mode_set: object = None
    ) -> bool:
        """Apply the ``mode`` of the central's door settings if the central means it.

        The latest deliberate command wins: the central's mode is applied only when
        it differs from the last central mode this door applied (kept durably), so
        settings re-sent at start-up or after a resync, or changed in something else
        (``unlock_s``...), never undo a guard's lockdown; a guard's command stands
        until the central sends a *different* mode. ``mode`` None (the settings have
        no mode, or were removed) changes nothing on the door but is recorded, so the
        central's next mode, whatever it is, applies. Returns True if applied.

        *mode_set* (the settings' ``mode_set``: the operator who set the mode at the
        central, the reason, when, for the door or a zone) makes each operator's command
        deliberate: a new one (another operator or time) applies even when its mode is the
        central's last one (a lockdown set again from the console after a guard lifted
        it); the same one re-sent does not. It is journaled with the change
        (``mode.changed`` ``by`` ``central:NAME``, ``why`` the reason) and kept with the
        durable mode, which the status shows (``mode_set``).
        """
        central = _central_mode_set(mode_set)
        with self._mode_lock:
            raw = self.store.agent_state(STATE_CENTRAL_MODE)
            try:
                last = json.loads(raw).get("mode") if raw is not None else None
            except (TypeError, ValueError, AttributeError):
                last = None
            command = _command_of(central)
            same = command is None or command == _last_command(raw or "")
            if raw is not None and mode == last and same:
                log.info("central door mode %s already applied (version %s)", mode, version)
                return False
            central_state: dict[str, Any] = {"mode": mode, "version": _json_safe(version)}
            if command is not None:
                central_state["command"] = command
            state = {STATE_CENTRAL_MODE: json.dumps(central_state, sort_keys=True)}
            if mode is None:
                self.store.set_agent_state(state)
                return False
            # The door's mode and the central's last mode in one commit.
            if central is None:
                by, why = "central", f"door settings version {version}"
            else:
                by, why = f"central:{central['by']}", central["reason"]
            self._set_mode(mode, by=by, why=why, also=state, central=central)
            return True

    # -- the central's door settings ----------------------------------------------------
    def apply_door_settings(self, settings: DoorSettings, version: object = None) -> bool:
        """Apply a door's settings (the central's over the configuration's,
        :meth:`DoorSettings.with_central`): the only way they change the door.

        The access rules go to the policy (if they cannot, nothing is applied), the
        times to the door (:meth:`DoorController.apply_settings`; invalid ones are
        logged and the door keeps its own), the ``mode`` to the durable mode through
        :meth:`apply_central_mode`: applied only when it differs from the last mode the
        central set here, so re-sent or unrelated settings never lift a guard's lockdown
        (docs/sync.md, "Door mode"). Returns False if nothing was applied.
        """
        try:
            self.policy = replace(
                self.policy,
                max_offline_staleness_s=settings.max_offline_staleness_s,
                accept_qr=settings.accept_qr,
                accept_uid=settings.accept_uid,
                accept_ntag424=settings.accept_ntag424,
            )
        except (TypeError, ValueError) as exc:
            log.error("sync: door settings not applied: %s", exc)
            return False
        if self.door is not None:
            try:
                self.door.apply_settings(settings)
            except (TypeError, ValueError) as exc:
                log.error("sync: door timings not applied: %s", exc)
        mode = settings.mode
        if mode is not None and (not isinstance(mode, str) or mode == "emergency"):
            log.error("sync: door mode %r not applied: not a mode the central can set", mode)
            return True
        try:
            self.apply_central_mode(mode, version, settings.mode_set)
        except ValueError as exc:
            log.error("sync: door mode %r not applied: %s", mode, exc)
        except StoreError as exc:
            # Not persisted, so not applied: the next settings (or restart) try again.
            log.error("sync: door mode %r not applied (store): %s", mode, exc)
        return True

    # -- journaling -----------------------------------------------------------------
    def journal(self, kind: str, payload: dict[str, Any]) -> Any:
        """Append one event durably (returns the store's Event) and publish it live."""
        event = self.store.journal.append(kind, payload)
        self.bus.publish(kind, {"seq": event.seq, "event_id": event.id, **payload})
        return event

    def _journal_at_start(self, kind: str, payload: dict[str, Any]) -> None:
        """Journal a start-up event, or keep it for :meth:`flush_deferred` on a full disk.

        A door stopped on a full disk must still start: it then refuses every
        decision (the local API answers ``journal_unavailable``: nothing can be journaled) until
        there is room, and its start is journaled late, in order, at that moment.
        """
        if self._deferred:
            self._deferred.append((kind, payload))
            return
        try:
            self.journal(kind, payload)
        except StoreFull as exc:
            log.error("%s not journaled yet (disk full): %s", kind, exc)
            self._deferred.append((kind, payload))

    def flush_deferred(self) -> int:
        """Journal the start-up events a full disk held back; return how many were
        written (0 when none wait or there is still no room)."""
        if not self._deferred:
            return 0
        items = [(kind, {**payload, "journaled_late": True}) for kind, payload in self._deferred]
        try:
            self._journal_many(items)
        except StoreError as exc:
            log.warning("start-up events still not journaled: %s", exc)
            return 0
        self._deferred.clear()
        return len(items)

    @property
    def deferred_events(self) -> int:
        """Start-up events waiting for room in the journal."""
        return len(self._deferred)

    def _journal_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Append several events in one durable commit and publish them live."""
        events = self.store.journal.append_many(items)
        for event, (kind, payload) in zip(events, items, strict=True):
            self.bus.publish(kind, {"seq": event.seq, "event_id": event.id, **payload})
        return events

    def _append_claimed(
        self,
        claim: Callable[[Any], bool],
        granted: list[tuple[str, dict[str, Any]]],
        refused: list[tuple[str, dict[str, Any]]],
    ) -> tuple[list[Any], bool]:
        """Run ``claim`` and journal ``granted`` or ``refused`` in one commit; publish them."""
        events, ok = self.store.journal.append_claimed(claim, granted, refused)
        for event, (kind, body) in zip(events, granted if ok else refused, strict=True):
            self.bus.publish(kind, {"seq": event.seq, "event_id": event.id, **body})
        return events, ok

    def _shared_claim(
        self, decision: Decision, credential: Credential
    ) -> tuple[str, dict[str, Any]] | None:
        """The event that tells the central about a claim (single use, SUN counter).

        A pure builder from the decision's claim (the caller decides when the claim
        took effect). Only with a central to tell: these events exist for the sync
        protocol. ``badge.counter`` carries this door and the SUN message as read
        (*credential*'s ``sun_url``): the central verifies it before it shares the
        counter with the other doors of the site.
        """
        # A deny that spends a verified counter is shared like a grant (Decision.consumes).
        spent = decision.claim if decision.granted else decision.consumes
        if spent is None or not self.config.central.url:
            return None
        what, ident, value = spent
        door = self.config.door.id
        if what == "invitation":
            payload = {"invitation_id": ident, "door": door, "expires": int(value)}
            return ("invitation.used", payload)
        return self._share_counter(ident, int(value), credential.sun_url or "")

    def _share_counter(
        self, uid_hex: str, counter: int, sun_url: str
    ) -> tuple[str, dict[str, Any]] | None:
        """The ``badge.counter`` event of an NTAG 424 counter spent here (a decision's or a
        guard's tap), or None without a central to tell."""
        if not self.config.central.url:
            return None
        return ("badge.counter", _counter_event(self.config.door.id, uid_hex, counter, sun_url))

    def _door_event(self, kind: str, payload: dict[str, Any]) -> None:
        # Door events come from input/timer threads with the door's lock held:
        # journal them in order, and never let a full disk stop the door.
        try:
            self.journal(kind, {"door": self.config.door.id, **payload})
        except StoreError:
            log.exception("cannot journal door event %s", kind)
            self.bus.publish(kind, {"door": self.config.door.id, "journaled": False, **payload})

    # -- access decisions -------------------------------------------------------
    def present(
        self,
        credential: Credential,
        source: str = "api",
        open_mode: str = "now",
        *,
        left_s: float | None = None,
        second_factor: Callable[[Decision], PinOutcome] | None = None,
    ) -> dict[str, Any]:
        """Decide on a credential, journal it durably, then act on the door.

        Returns the decision as a JSON-ready dict with the journal ``seq``.
        Raises :class:`StoreError` only if the decision could not be journaled;
        in that case the door did not open (durable first, then act).

        ``open_mode="on_request"`` (the kiosk's welcome step): a grant is decided and
        journaled now (a single-use invitation is spent now) but the door does not
        open; the answer's ``grant`` holds the handle that opens it later through
        :meth:`open_grant`, within ``[door] grant_hold_s``.

        ``left_s``: seconds until the caller gives up (the local API's
        ``Portier-Deadline-Ms``). A request whose caller has given up -- the agent
        hung (stopped, swapping, a slow disk) while it waited -- is never acted on:
        refused before the decision (``access.request_expired`` journaled, nothing
        spent, :class:`ActionError` ``request_expired``), and a grant whose caller gave up while it
        was decided does not unlock (``access.aborted``, why ``request_expired``).

        ``second_factor``: called with the policy's decision before anything is journaled
        (card + PIN, :class:`~edge_agent.cardpin.CardPin`); its decision replaces the
        policy's and its claim is committed with the ``access.decision`` event.
        """
        if open_mode not in OPEN_MODES:
            raise ActionError("bad_request", f"'open' must be one of {OPEN_MODES}")
        deadline = None if left_s is None else self._mono() + left_s
        self._refuse_expired(deadline, "present", {"source": source, "kind": credential.kind})
        if open_mode == "on_request" and self.door is not None:
            if second_factor is not None:
                raise ActionError("bad_request", "card + PIN opens the door at once")
            with self.grants.lock:  # the grants' ledger changes one at a time
                return self._present(credential, source, on_request=True, deadline=deadline)
        return self._present(
            credential, source, on_request=False, deadline=deadline, second_factor=second_factor
        )

    def _refuse_expired(self, deadline: float | None, request: str, about: dict[str, Any]) -> None:
        """Journal ``access.request_expired`` and raise ``request_expired`` when ``deadline``
        has passed."""
        if deadline is None:
            return
        late = self._mono() - deadline
        if late < 0:
            return
        self.journal(
            "access.request_expired",
            {
                "door": self.config.door.id,
                "request": request,
                "late_ms": round(late * 1000),
                **about,
            },
        )
        raise ActionError(
            "request_expired",
            f"the caller gave up {late:.1f} s ago: not acted on",
        )

    def _present(
        self,
        credential: Credential,
        source: str,
        *,
        on_request: bool,
        deadline: float | None,
        second_factor: Callable[[Decision], PinOutcome] | None = None,
    ) -> dict[str, Any]:
        """:meth:`present`; ``on_request``: hold the door for :meth:`open_grant`."""
        now = self._wall()
        # No store write or OS call on a decision's path: the service's clock check
        # (every CLOCK_CHECK_S) and the heartbeats keep the floor written.
        trust = self.check_clock(now, upkeep=False)
        decision = decide(
            credential,
            self.policy,
            self.mode,
            now,
            self.cache,
            self.sun,
            clock_floor=None if trust.trusted else trust.floor,
        )
        factor_claim = None
        if second_factor is not None:
            outcome = second_factor(decision)
            decision, factor_claim = outcome.decision, outcome.claim
        payload = {"door": self.config.door.id, "source": source, **decision.to_dict()}
        held: Callable[[sqlite3.Connection], bool] | None = None
        if on_request and decision.granted:
            # The grant's reference and its ledger entry go in the decision's commit:
            # a restart after it journals the grant as unused, exactly once.
            ref = secrets.token_hex(8)
            payload = {**payload, "open": "on_request", "grant_ref": ref}
            held = self.grants.ledger_claim(ref, decision)
        if factor_claim is not None:
            held = factor_claim  # never with on_request (refused in present)
        if decision.granted and decision.claim is not None:
            decision, payload, event = self._journal_claimed(decision, payload, credential, held)
        elif decision.consumes is not None:
            event = self._journal_consumed(decision, payload, credential)
        elif held is not None:
            item = [("access.decision", payload)]
            event = self._append_claimed(held, item, item)[0][0]
        else:
            event = self.journal("access.decision", payload)
        if decision.granted and on_request and held is not None:
            grant = self.grants.hold(payload["grant_ref"], decision, event)
            if decision.kind == "qr":
                self.visitors.remember_grant(
                    decision.credential_id, grant_pass_fields(decision, self.config.device.site)
                )
            return {**payload, "seq": event.seq, "event_id": event.id, "grant": grant}
        if decision.granted and deadline is not None and self._mono() >= deadline:
            # Decided, but its caller gave up meanwhile: nobody stands at the door now.
            self.journal(
                "access.aborted",
                {"door": self.config.door.id, "seq": event.seq, "why": "request_expired"},
            )
            raise ActionError(
                "request_expired", "the caller gave up while it was decided: not opened"
            )
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
            self.visitors.remember_grant(
                decision.credential_id, grant_pass_fields(decision, self.config.device.site)
            )
        return {**payload, "seq": event.seq, "event_id": event.id}

    # -- grants opened on request (the kiosk's welcome step) ---------------------------
    def open_grant(self, handle: object, *, left_s: float | None = None) -> dict[str, Any]:
        """Open the door for a grant decided at the scan (``POST /v1/grants/{id}/open``).

        The door's mode is checked again now: in lockdown or emergency the opening is
        refused with that reason code and journaled ``access.open_refused``, so
        a fire alarm or a lockdown that came after the scan is obeyed. Within ``[door]
        grant_hold_s`` of the scan a grant opens the door as often as asked (each
        opening journaled ``door.unlocked`` with its ``grant_ref``, the door unlocked
        for ``[door] visitor_unlock_s``); after it, ``grant_expired``. A handle this
        agent does not hold (never issued, or issued before a restart: handles live
        in memory only) is ``grant_unknown``. ``left_s`` as for :meth:`present`:
        an opening whose caller gave up is refused (``request_expired``, journaled).
        """
        if self.door is None:
            raise ActionError("no_door", "this agent has no door")
        deadline = None if left_s is None else self._mono() + left_s
        self._refuse_expired(deadline, "open_grant", {})
        with self.grants.lock:
            grant = self.grants.pending(handle)
            if grant is None:
                if self.grants.ended(handle):
                    raise ActionError("grant_expired", "this grant can no longer open the door")
                raise ActionError(
                    "grant_unknown",
                    "no such grant here (a restart of the agent ends every grant)",
                )
            if self._mono() >= grant.expires_mono:
                self.grants.end(grant, "not_opened")
                raise ActionError(
                    "grant_expired",
                    f"a grant opens the door within {self.config.door.grant_hold_s:g} s "
                    "of the scan",
                )
            about = {
                "door": self.config.door.id,
                "grant_ref": grant.ref,
                "kind": grant.kind,
                "credential_id": grant.credential_id,
                "decision_seq": grant.decision_seq,
            }
            with self._mode_lock:
                mode = self.door.mode
                if mode in (DoorMode.LOCKDOWN, DoorMode.EMERGENCY):
                    self.journal("access.open_refused", {**about, "reason_code": mode.value})
                    why = (
                        "the door is locked down"
                        if mode is DoorMode.LOCKDOWN
                        else "a fire alarm is on: do not enter"
                    )
                    raise ActionError(mode.value, why)
                self._refuse_expired(deadline, "open_grant", {"grant_ref": grant.ref})
                if grant.openings == 0:
                    # Durable first: from now on this grant is not "unused".
                    self.grants.drop_from_ledger(grant.ref)
                grant.openings += 1
                try:
                    self.door.grant(
                        seconds=self.config.door.visitor_unlock_s,
                        by=f"{grant.kind}:{grant.credential_id}",
                        grant=grant.ref,
                    )
                except GrantRefused as exc:  # cannot happen under the mode lock; fail shut
                    self.journal("access.open_refused", {**about, "reason_code": "lockdown"})
                    raise ActionError("lockdown", "the door is locked down") from exc
            left = max(0.0, grant.expires_mono - self._mono())
            return {
                "opened": True,
                "grant_ref": grant.ref,
                "openings": grant.openings,
                "expires_in_s": round(left, 1),
                "unlock_s": self.config.door.visitor_unlock_s,
                "door": self.door.snapshot(),
            }

    def sweep_grants(self) -> int:
        """End every grant past ``[door] grant_hold_s``; return how many ended."""
        return self.grants.sweep()

    # -- clock trust --------------------------------------------------------------
    def check_clock(self, now: float | None = None, *, upkeep: bool = True) -> ClockTrust:
        """Assess the wall clock against the time floor; raise or clear the alarm.

        ``upkeep=False`` (a decision's path) reads the floor from memory only: see
        :meth:`edge_agent.timefloor.TimeFloor.assess`.

        ``alarm.raised {"alarm": "clock_untrusted"}`` is journaled when the clock falls
        below the floor (minus the tolerance), ``alarm.cleared`` when it is trusted
        again. A journal failure leaves the alarm state as it was, so the next check
        tries again.
        """
        trust = self.time_floor.assess(now, upkeep=upkeep)
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

    def _journal_consumed(
        self, decision: Decision, payload: dict[str, Any], credential: Credential
    ) -> Any:
        """Journal a deny that spends a verified NTAG 424 counter, in one commit with the
        counter's claim (see :attr:`Decision.consumes`). If a concurrent tap already
        spent a counter as high, the deny is journaled all the same."""
        assert decision.consumes is not None
        _, ident, value = decision.consumes
        claim = self.store.replay.counter_claim(ident, int(value))
        items = [("access.decision", payload)]
        shared = self._shared_claim(decision, credential)
        if shared is not None:
            items.append(shared)  # the other doors of the site refuse it too
        events, claimed = self.store.journal.append_claimed(
            claim, items, [("access.decision", payload)]
        )
        published = items if claimed else [("access.decision", payload)]
        for event, (kind, body) in zip(events, published, strict=True):
            self.bus.publish(kind, {"seq": event.seq, "event_id": event.id, **body})
        return events[0]

    def _journal_claimed(
        self,
        decision: Decision,
        payload: dict[str, Any],
        credential: Credential,
        also: Callable[[sqlite3.Connection], bool] | None = None,
    ) -> tuple[Decision, dict[str, Any], Any]:
        """Claim the single-use invitation / SUN counter and journal the outcome
        in one commit: granted if the claim took effect, REPLAYED otherwise.

        ``also`` runs in the same transaction once the claim took effect (the ledger
        of a grant opened on request)."""
        assert decision.claim is not None
        what, ident, value = decision.claim
        replay = self.store.replay
        if what == "invitation":
            spend = replay.invitation_claim(ident, int(value))
        else:
            spend = replay.counter_claim(ident, int(value))

        def claim(conn: sqlite3.Connection) -> bool:
            return spend(conn) and (also is None or also(conn))

        lost = replace(
            decision,
            granted=False,
            reason=Reason.REPLAYED,
            detail="claimed concurrently by another presentation",
            claim=None,
        )
        lost_payload = {
            k: v for k, v in {**payload, **lost.to_dict()}.items() if k not in ("open", "grant_ref")
        }
        granted_items = [("access.decision", payload)]
        shared = self._shared_claim(decision, credential)
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
        """Read badges in a thread and present each one (headless doors and kiosks); the
        same for the door's wall readers (OSDP, Wiegand) in a thread of their own."""
        self._start_wall_readers()
        reader = self.devices.reader
        if reader is None or self._reader_thread is not None:
            return
        self._reader_thread = threading.Thread(
            target=self._reader_loop, name="nfc-reader", daemon=True
        )
        self._reader_thread.start()

    # -- wall readers (hardware.reader) ---------------------------------------------------
    def _start_wall_readers(self) -> None:
        readers = self.devices.door_reader
        if readers is None or self._wall_thread is not None:
            return
        readers.set_alarm_callback(self._wall_reader_alarm)
        self._show_mode_on_wall_readers(self.mode)
        self._wall_thread = threading.Thread(
            target=self._wall_reader_loop, name="wall-readers", daemon=True
        )
        self._wall_thread.start()

    def _wall_reader_loop(self) -> None:
        readers = self.devices.door_reader
        while not self._reader_stop.is_set():
            try:
                presented = readers.read(timeout=0.5)
            except Exception:
                log.exception("wall readers failed; retrying in 1 s")
                self._reader_stop.wait(1.0)
                continue
            if presented is None:
                continue
            try:
                self.present_wall_card(presented)
            except StoreError:
                log.exception("card decision could not be journaled; door stays shut")
                readers.feedback(presented.reader, "deny")

    def present_wall_card(self, presented: Any) -> dict[str, Any]:
        """A card at a wall reader (a :class:`hardware.reader.Presentation`): decide, then
        show the outcome on that reader (green and a beep, red and three beeps, or the
        lockdown signal).

        The card's bits as read are its UID for the credential cache: a Wiegand or OSDP
        card number is a UID-class credential (it can be cloned), accepted only where
        ``[door] accept_uid`` is true. A read the reader layer refused (parity, an unknown
        length) is journaled as ``reader.bad_read`` and denied without a decision. At a
        reader with card + PIN the PIN typed after the card is the second factor
        (:class:`~edge_agent.cardpin.CardPin`: ``pin_required``, ``wrong_pin``,
        ``pin_timeout``, ``pin_locked_out``); the PIN itself is never journaled. A card
        whose PIN a lockdown cut short (``pin_interrupted``) is refused ``lockdown``; one
        cut short by the end of a lockdown or by another card, ``pin_interrupted``.
        """
        readers = self.devices.door_reader
        card = presented.card
        if card.error is not None:
            payload = {
                "door": self.config.door.id,
                "reader": presented.reader,
                "bits": card.bit_length,
                "format": card.format,
                "error": card.error,
            }
            self.journal("reader.bad_read", payload)
            readers.feedback(presented.reader, "deny")
            return {**payload, "granted": False}
        second_factor: Callable[[Decision], PinOutcome] | None = None
        if readers.requires_pin(presented.reader):
            second_factor = functools.partial(
                self._card_pin,
                card.uid.hex().upper(),
                presented.pin,
                presented.pin_timed_out,
                presented.interrupted_by if presented.pin_interrupted else None,
            )
        result = self.present(
            Credential.badge(card.uid),
            source=f"reader:{presented.reader}",
            second_factor=second_factor,
        )
        if presented.pin_timed_out:
            return result  # the reader showed its deny when the PIN did not come
        if result.get("granted"):
            signal = "grant"
        elif result.get("reason") == Reason.LOCKDOWN.value:
            signal = "lockdown"
        else:
            signal = "deny"
        readers.feedback(presented.reader, signal)
        return result

    def _card_pin(
        self,
        uid_hex: str,
        pin: str | None,
        timed_out: bool,
        interrupted_by: str | None,
        decision: Decision,
    ) -> PinOutcome:
        now_ms = int(self._wall() * 1000)
        return self.card_pin.check(
            decision, uid_hex, pin, timed_out, now_ms, interrupted_by=interrupted_by
        )

    def _wall_reader_alarm(self, alarm: Any) -> None:
        """A wall reader's alarm (offline, tamper, insecure) into the journal, like the
        door's own: ``alarm.raised`` / ``alarm.cleared`` with the reader's name."""
        kind = "alarm.raised" if alarm.active else "alarm.cleared"
        payload = {"alarm": alarm.kind.value, "reader": alarm.reader}
        if alarm.active and alarm.detail:
            payload["detail"] = alarm.detail
        self._door_event(kind, payload)

    def _wall_reader_status(self) -> list[dict[str, Any]]:
        readers = self.devices.door_reader
        if readers is None:
            return []
        try:
            return list(readers.status())
        except Exception:  # a status call must not fail because a reader did
            log.exception("wall reader status failed")
            return []

    def _show_mode_on_wall_readers(self, mode: DoorMode) -> None:
        readers = self.devices.door_reader
        if readers is None:
            return
        signal = "lockdown" if mode is DoorMode.LOCKDOWN else "idle"
        for name in readers.reader_names():
            readers.feedback(name, signal)

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
                self.present_badge_tap(badge.uid, _sun_url(badge))
            except StoreError:
                log.exception("badge decision could not be journaled; door stays shut")

    def present_badge_tap(self, uid: bytes, sun_url: str | None) -> dict[str, Any]:
        """A badge tapped on this device's own reader: decide, or on a guard console
        take a guard's tap as the first step of a login.

        On a device with ``[guard] console = true`` a tap of a badge the cache holds
        as a guard's (role guard) is authentication, not an access request: it never
        reaches the policy and never unlocks the door (:meth:`GuardDesk.badge_tap`). On
        a door without a console a guard's badge is a staff badge like any other.
        """
        uid_hex = bytes(uid).hex().upper()
        if self.config.guard.console and uid_hex:
            guard = self.cache.guard(uid_hex)
            if guard is not None:
                return self.guards.badge_tap(guard, uid_hex, sun_url)
        return self.present(Credential.badge(uid, sun_url), source="nfc")

    @property
    def reader_alive(self) -> bool:
        """False if the reader thread died (the watchdog stops pinging)."""
        return all(
            thread is None or thread.is_alive()
            for thread in (self._reader_thread, self._wall_thread)
        )

    # -- guards (edge_agent.guarddesk) ----------------------------------------------
    def guard_login(self, badge_uid: object, pin: object, sun_url: object = None) -> Session:
        """Open a guard session (:meth:`GuardDesk.login`: the PIN checked in constant time,
        failures counted durably alike for any UID); raises :class:`GuardDenied`."""
        return self.guards.login(badge_uid, pin, sun_url)

    def guard_login_refused(self, why: str) -> None:
        """Journal a login refused before its body could be read (``too_large``)."""
        self.guards.login_refused(why)

    def guard_session(self, token: str) -> Session:
        """The live session for ``token``, its badge checked again now
        (:meth:`GuardDesk.session`); else :class:`ActionError` ``not_logged_in``."""
        return self.guards.session(token)

    def sweep_guard_sessions(self) -> int:
        """End every open session whose badge stopped being valid; return how many."""
        return self.guards.sweep()

    def guard_logout(self, token: str) -> None:
        """Close a guard session (journaled)."""
        self.guards.logout(token)

    def guard_action(
        self,
        token: str,
        action: str,
        reason: str,
        alarm: str | None = None,
        *,
        left_s: float | None = None,
    ) -> dict[str, Any]:
        """Carry out a guard action with who and why journaled; return the door state.

        The journal tells what happened, not what was asked: an action the door
        cannot carry out now (open once in lockdown or during a fire alarm, an alarm
        that is not pending) is journaled as ``guard.action_refused`` with its
        ``reason_code`` and raises :class:`ActionError` with that code; one it
        can is journaled as ``guard.action`` *before* the door acts (durable first).
        The check, the journal and the act run under the mode lock, so a guard's or
        the central's mode change cannot slip between them. A malformed request
        (unknown action or alarm, no reason) is not an action and is not journaled.
        ``left_s`` as for :meth:`present`: an action read after the guard's console
        gave up (it told the guard it failed) is refused, ``request_expired``.
        """
        deadline = None if left_s is None else self._mono() + left_s
        session = self.guards.action_session(
            token, action, reason, alarm, has_door=self.door is not None
        )
        assert self.door is not None
        who = f"guard:{session.guard_id}"
        payload = {
            "guard_id": session.guard_id,
            "name": session.name,
            "action": action,
            "why": reason,
            "alarm": alarm,
        }
        with self._mode_lock:
            self._refuse_expired(
                deadline, "guard_action", {"action": action, "guard_id": session.guard_id}
            )
            refusal = action_refusal(self.door, action, alarm)
            if refusal is not None:
                code, message = refusal
                self.journal("guard.action_refused", {**payload, "reason_code": code})
                raise ActionError(code, message)
            self.journal("guard.action", payload)
            if action == "open_once":
                try:
                    self.door.grant(by=who)
                except GrantRefused as exc:  # cannot happen under the mode lock; fail shut
                    self.journal("guard.action_refused", {**payload, "reason_code": "lockdown"})
                    raise ActionError("lockdown", "lift the lockdown first") from exc
            elif action == "acknowledge":
                assert alarm is not None
                if not self.door.acknowledge(alarm, by=who, why=reason):  # pragma: no cover
                    # Checked just before under the lock: only a bug gets here; say so.
                    self.journal(
                        "guard.action_refused", {**payload, "reason_code": "no_such_alarm"}
                    )
                    raise ActionError("no_such_alarm", f"no unacknowledged {alarm} alarm")
            else:
                self.set_mode(MODE_OF_ACTION[action], by=who, why=reason)
        return self.door.snapshot()

    # -- visitors (edge_agent.visitors) ---------------------------------------------
    def visitor_lookup(self, token: str, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Invitations whose visitor name starts with ``query`` (guard only):
        :meth:`VisitorDesk.lookup`."""
        return self.visitors.lookup(token, query, limit)

    def checkin(
        self,
        invitation_id: str,
        *,
        consent: bool,
        photo: bytes | None,
        token: str | None = None,
        override_reason: str | None = None,
    ) -> dict[str, Any]:
        """Record a visitor's check-in (self, or manual with a guard's ``token``):
        :meth:`VisitorDesk.checkin`."""
        return self.visitors.checkin(
            invitation_id,
            consent=consent,
            photo=photo,
            token=token,
            override_reason=override_reason,
        )

    def expected_today(self, token: str, limit: int = 100) -> dict[str, Any]:
        """The invitations valid today (guard only): :meth:`VisitorDesk.expected_today`."""
        return self.visitors.expected_today(token, limit)

    def _invitation_info(self, invitation_id: str) -> tuple[str, str, int | None, list[str]] | None:
        """What the cache knows of an invitation for the on-site list: (visitor, host,
        not_after, zones), or None."""
        cached = self.store.cache.invitation(invitation_id)
        if cached is None:
            return None
        zones = [str(z) for z in (cached.data or {}).get("zones") or ()]
        return cached.visitor, cached.host or "", cached.not_after, zones

    # -- who is on site (edge_agent.onsite) ------------------------------------------
    def muster(self) -> dict[str, Any]:
        """The visitors on site with host and time of entry, and whether the fire input is
        active: :meth:`OnSite.muster` (``GET /v1/muster``)."""
        answer = self.onsite.muster()
        answer["fire"] = self.mode is DoorMode.EMERGENCY
        answer["at"] = self._wall()
        answer["door_id"] = self.config.door.id
        return answer

    def checkout_by_pass(self, pass_id: str) -> dict[str, Any]:
        """A visitor checks out at the kiosk with their pass: :meth:`OnSite.checkout_by_pass`."""
        return self.onsite.checkout_by_pass(pass_id)

    def print_muster(self, pdf: bytes) -> dict[str, Any]:
        """Print the muster list the kiosk rendered: :meth:`PassDesk.print_muster`."""
        return self.passes.print_muster(pdf)

    def reissue_pass(self, token: str, invitation_id: object) -> dict[str, Any]:
        """A guard's reprint gets a new pass id: :meth:`OnSite.reissue_pass`."""
        return self.onsite.reissue_pass(token, invitation_id)

    def guard_checkout(self, token: str, invitation_id: str, reason: object) -> dict[str, Any]:
        """A guard checks a visitor out (session and reason): :meth:`OnSite.checkout_by_guard`."""
        return self.onsite.checkout_by_guard(token, invitation_id, reason)

    def recent_events(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest journal events, newest first (the guard console's list)."""
        head = self.store.journal.head().seq
        events = self.store.journal.events(from_seq=max(1, head - limit + 1), limit=limit)
        return [
            {"seq": e.seq, "event_id": e.id, "at": e.wall_ms / 1000.0, "type": e.type, **e.payload}
            for e in reversed(events)
        ]

    # -- visitor passes (edge_agent.passdesk) ----------------------------------------------
    def print_pass(
        self, pdf: bytes, *, pass_id: str, invitation_id: str, token: str | None = None
    ) -> dict[str, Any]:
        """Print a visitor pass the kiosk rendered: :meth:`PassDesk.print_pass`."""
        return self.passes.print_pass(
            pdf, pass_id=pass_id, invitation_id=invitation_id, token=token
        )

    # -- a visitor's call for help (edge_agent.visitors) --------------------------------
    def call_help(self, screen: str, lang: str) -> dict[str, Any]:
        """A visitor pressed Help on the kiosk: :meth:`HelpCall.call`."""
        return self.help.call(screen, lang)

    # -- simulator ----------------------------------------------------------------
    def simulate(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Drive simulated hardware (the demo panel): :meth:`Devices.simulate`."""
        return self.devices.simulate(action, body)

    # -- status -----------------------------------------------------------------
    def cache_state(self, now: float | None = None) -> dict[str, Any]:
        """How old the credential cache is against the door's bound (status, alarm).

        ``stale``: the door refuses cached decisions now (``cache_stale``), also when
        a bounded door never synced; ``warning``: past ``[door] stale_alarm_fraction``
        of the bound (the ``stale_cache`` alarm).
        """
        stale = self.cache.staleness_s(self._wall() if now is None else now)
        limit = self.policy.max_offline_staleness_s
        alarm_at = None if limit is None else limit * self.config.door.stale_alarm_fraction
        return {
            "staleness_s": None if stale is None else round(stale, 1),
            "max_staleness_s": limit,
            "alarm_at_s": alarm_at,
            "stale": limit is not None and (stale is None or stale > limit),
            "warning": alarm_at is not None and stale is not None and stale >= alarm_at,
        }

    def status(self) -> dict[str, Any]:
        """The appliance's state for the kiosk, the guard screen and the CLI."""
        now = self._wall()
        trust = self.check_clock(now)
        counts = self.store.journal.counts()
        cache = self.cache_state(now)
        pressure = self.store.disk_pressure()
        return {
            "device": self.config.device.id,
            "site": self.config.device.site,
            "door": self.door.snapshot() if self.door is not None else None,
            "door_id": self.config.door.id,
            "mode_set": self.mode_set(),
            "online": bool(self.link is not None and self.link.online),
            "sync": self.link.status() if self.link is not None else None,
            "last_sync": self.store.cache.downlink().last_sync_ms,
            # The off-site event this kiosk holds a pack for (None: none), issue #14.
            "event_pack": _event_pack(self.store, now),
            "cache_staleness_s": cache["staleness_s"],
            "cache": cache,
            "events_waiting": counts.backlog,
            "dead_letters": getattr(counts, "dead", 0),
            "clock": now,
            "clock_trusted": trust.trusted,
            "time_floor": trust.to_dict(),
            "uptime_s": round(self._mono() - self._started_mono, 1),
            "disk": {"level": pressure.level.name.lower(), "alarm": pressure.alarm},
            "journal": self._journal_state(),
            "reader": self.devices.reader is not None,
            "wall_readers": self._wall_reader_status(),
            "hardware_errors": dict(self.devices.errors),
            "printer": self.passes.status(),
            "event_streams": self.bus.subscriber_count,
        }

    def mode_set(self) -> dict[str, Any] | None:
        """Who set the door's mode last, why and when (the durable record): ``{mode, by,
        why, at_ms, central?}``, ``central`` ``{by, reason, at_ms, scope, name}`` when an
        operator set it at the central (the guard console's "Lockdown set by olivia from
        the security office"). None: never set (the configuration's mode)."""
        raw = self.store.agent_state(STATE_DOOR_MODE)
        if raw is None:
            return None
        try:
            record = json.loads(raw)
        except (TypeError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        keep = ("mode", "by", "why", "at_ms", "central")
        return {key: record[key] for key in keep if key in record}

    def _journal_state(self) -> dict[str, Any]:
        """Status ``journal``: whether decisions can be journaled (else they are refused)."""
        reason = self.store.journal_unavailable()
        return {
            "writable": reason is None,
            "reason": reason,
            "heap_mode": self.store.heap_mode,
            "deferred_events": len(self._deferred),
            "damage": list(self.store.journal.damage),
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
        self.guards.close()
        self.grants.close()
        self.onsite.close()
        for thread in (self._reader_thread, self._wall_thread):
            if thread is not None:
                thread.join(timeout=2)
        self._reader_thread = self._wall_thread = None
        stopped: dict[str, Any] = {"device": self.config.device.id}
        if self.door is not None:
            self.door.safe_state()
            # Read back, so the journal shows the door was left locked.
            stopped["relay_energised"] = bool(self.door.io.lock_relay_energised)
        if not self.store.closed:
            self.flush_deferred()  # a start journaled late still comes before its stop
            try:
                self.journal("agent.stopped", stopped)
            except StoreError:
                log.exception("could not journal the stop")


def _counter_event(door: str, uid_hex: str, counter: int, sun_url: str) -> dict[str, Any]:
    """The ``badge.counter`` payload: a spent NTAG 424 counter, for the central to check
    (the SUN message as read) and share with the other doors of the site."""
    return {"uid": uid_hex.lower(), "counter": int(counter), "door": door, "sun_url": sun_url}


def _json_safe(value: object) -> object:
    """``value`` if JSON can hold it as is, else its text (a door-settings version)."""
    return value if value is None or isinstance(value, int | float | str) else str(value)


def _sun_url(badge: Any) -> str | None:
    """The URL of the first NDEF URI record (an NTAG 424 DNA's SUN message), if any."""
    for record in getattr(badge, "ndef", ()) or ():
        uri = getattr(record, "iri", None) or getattr(record, "uri", None)
        if isinstance(uri, str) and uri:
            return uri
    return None


#: Longest operator name and reason from the central's ``mode_set`` kept on the door.
_MODE_SET_TEXT_MAX = 500


def _central_mode_set(value: object) -> dict[str, Any] | None:
    """The central's ``mode_set`` (who set a door mode there, and why) as the door keeps
    it, or None when it does not say (then the change is the central's, unnamed). Only
    text and integers, cut to length: it is shown on the guard console."""
    if not isinstance(value, dict):
        return None
    by, reason = value.get("by"), value.get("reason")
    if not isinstance(by, str) or not by or not isinstance(reason, str):
        return None
    kept: dict[str, Any] = {
        "by": by[:_MODE_SET_TEXT_MAX],
        "reason": reason[:_MODE_SET_TEXT_MAX],
    }
    at_ms = value.get("at_ms")
    if isinstance(at_ms, int) and not isinstance(at_ms, bool):
        kept["at_ms"] = at_ms
    for key in ("scope", "name"):
        if isinstance(value.get(key), str):
            kept[key] = value[key][:_MODE_SET_TEXT_MAX]
    return kept


def _command_of(central: dict[str, Any] | None) -> list[Any] | None:
    """What tells one operator's mode command at the central from another (None: the
    settings do not say who set the mode)."""
    if central is None:
        return None
    return [central.get("by"), central.get("at_ms"), central.get("scope"), central.get("name")]


def _last_command(raw: str) -> list[Any] | None:
    """The command of the central's last mode this door applied (``agent.central_mode``)."""
    try:
        command = json.loads(raw).get("command")
    except (TypeError, ValueError, AttributeError):
        return None
    return command if isinstance(command, list) else None


def _event_pack(store: Store, now: float) -> dict[str, Any] | None:
    """The installed event pack's summary (edge_agent/eventpack.py) with ``in_force``
    (the event is on at *now*, the agent's wall clock: the kiosk shows its name and welcome
    line then, and not before nor after), or None."""
    from edge_agent.eventpack import installed

    summary = installed(store)
    if not summary:
        return None
    try:
        in_force = float(summary["starts"]) <= now < float(summary["ends"])
    except (KeyError, TypeError, ValueError):
        in_force = False  # a summary from an older agent: never shown rather than wrong
    return {**summary, "in_force": in_force}
