"""The door state machine: relay timing, door contact alarms, REX, fire release, modes.

It sits on :class:`hardware.gpio.DoorIO` and decides nothing about *who* may
enter (that is :mod:`edge_agent.policy`); it only carries out grants and
watches the door. Time comes from an injectable :class:`Scheduler`, so tests
advance a fake clock instead of sleeping.

Modes:

* ``normal`` -- locked; a grant or REX unlocks for the unlock time.
* ``lockdown`` -- locked; grants are refused. REX still releases: egress is a
  life-safety matter and never blocked by software.
* ``free_access`` -- relay held energised (door unlocked) until back to normal.
* ``emergency`` -- entered by the fire-alarm input, relay energised; left when
  the fire input clears, back to the mode before. Fire egress never depends on
  this software: fail-safe locks are released by the fire loop in hardware.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # config imports this module: the type only
    from edge_agent.config import DoorSection

from portier_common.access import DoorMode
from portier_common.settings import seconds

log = logging.getLogger(__name__)


class Alarm(StrEnum):
    """Door alarms a guard can acknowledge."""

    FORCED_OPEN = "forced_open"
    HELD_OPEN = "held_open"
    TAMPER = "tamper"
    FIRE = "fire"
    #: A visitor pressed Help on the kiosk (raised by the agent, not by the door's inputs).
    HELP_REQUESTED = "help_requested"
    #: The visitor pass printer cannot print (stopped, out of labels, jammed, offline:
    #: raised and cleared by the agent's pass desk, edge_agent.passdesk).
    PRINTER_FAULT = "printer_fault"


#: Alarms whose condition ends when a guard acknowledges them (the guard came).
CLEARED_BY_ACK = frozenset({Alarm.HELP_REQUESTED})


@dataclass(frozen=True)
class DoorTimings:
    """Times of one door, validated."""

    unlock_s: float = 5.0
    held_open_s: float = 30.0
    #: A door opened this long after REX (or a grant ending) is not "forced".
    rex_grace_s: float = 2.0
    #: Whether REX energises the relay (strikes with no free-egress handle).
    rex_unlocks: bool = True
    #: Relock as soon as the door closes after being opened on a grant.
    relock_on_close: bool = True

    def __post_init__(self) -> None:
        seconds("unlock_s", self.unlock_s, 0.5, 300)
        seconds("held_open_s", self.held_open_s, 1, 3600)
        seconds("rex_grace_s", self.rex_grace_s, 0, 60)


@dataclass(frozen=True)
class DoorSettings:
    """What the central may set on one door (its ``door_settings``), whole.

    :meth:`with_central` lays the central's settings over the configuration's
    ``[door]`` values; :meth:`edge_agent.agent.Agent.apply_door_settings` applies them
    in one place: the access rules to the policy, the times to the door
    (:meth:`DoorController.apply_settings`), the mode to the agent's durable mode.
    """

    accept_qr: bool
    accept_uid: bool
    accept_ntag424: bool
    max_offline_staleness_s: float | None
    #: None: the central's value is not a number (the door keeps the times it has).
    unlock_s: float | None
    held_open_s: float | None
    #: The central's ``mode`` as sent (None: none), checked when applied.
    mode: object = None
    #: Who set that mode at the central, and why: ``{by, reason, at_ms, scope, name}``
    #: (None: not said, an older central or ``PUT /admin/doors/{door}/settings``).
    mode_set: object = None

    @classmethod
    def configured(cls, door: DoorSection) -> DoorSettings:
        """The settings as the configuration's ``[door]`` has them (no central's)."""
        return cls(
            accept_qr=door.accept_qr,
            accept_uid=door.accept_uid,
            accept_ntag424=door.accept_ntag424,
            max_offline_staleness_s=door.max_offline_staleness_s,
            unlock_s=door.unlock_s,
            held_open_s=door.held_open_s,
        )

    def with_central(self, settings: Mapping[str, Any] | None) -> DoorSettings:
        """These settings (the configuration's) with the central's ``settings`` over them
        (None: the central has none for this door, the configuration's apply).

        ``max_offline_staleness_s``: a positive value overrides the door's bound; null or 0
        leave the door's own: only the door's configuration can make it trust its cache
        for ever. ``accept``: a list of the credential kinds accepted.
        """
        settings = dict(settings or {})
        changes: dict[str, Any] = {
            "mode": settings.get("mode"),
            "mode_set": settings.get("mode_set"),
        }
        value = settings.get("max_offline_staleness_s")
        if value:
            changes["max_offline_staleness_s"] = float(value)
        if isinstance(settings.get("accept"), list):
            accept = set(settings["accept"])
            changes.update(
                accept_qr="qr" in accept,
                accept_uid="uid" in accept,
                accept_ntag424="ntag424" in accept,
            )
        for name in ("unlock_s", "held_open_s"):
            if name in settings:
                try:
                    changes[name] = float(settings[name])
                except (TypeError, ValueError):
                    changes[name] = None
        return replace(self, **changes)


class Handle(Protocol):
    """A scheduled call that can be cancelled."""

    def cancel(self) -> None:
        """Prevent the call if it has not run yet."""


class Scheduler(Protocol):
    """Time source and delayed calls."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""

    def call_later(self, delay: float, fn: Callable[[], None]) -> Handle:
        """Run ``fn`` after ``delay`` seconds (from another thread)."""


class ThreadScheduler:
    """Real time: ``threading.Timer`` per call."""

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Handle:
        """Start a daemon timer thread that calls ``fn``."""
        timer = threading.Timer(delay, fn)
        timer.daemon = True
        timer.start()
        return timer


class ManualScheduler:
    """Time that moves only when :meth:`advance` is called (tests, simulations)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._queue: list[tuple[float, int, _ManualHandle]] = []
        self._counter = itertools.count()
        self._lock = threading.RLock()

    def monotonic(self) -> float:
        """The manual clock's current time."""
        return self._now

    def call_later(self, delay: float, fn: Callable[[], None]) -> Handle:
        """Queue ``fn`` to run when the clock passes ``now + delay``."""
        handle = _ManualHandle(fn)
        with self._lock:
            heapq.heappush(self._queue, (self._now + delay, next(self._counter), handle))
        return handle

    def advance(self, seconds: float) -> None:
        """Move the clock forward, running due calls in time order."""
        with self._lock:
            target = self._now + seconds
            while self._queue and self._queue[0][0] <= target:
                when, _, handle = heapq.heappop(self._queue)
                self._now = max(self._now, when)
                if not handle.cancelled:
                    handle.fn()
            self._now = target


class _ManualHandle:
    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


#: Called with (event type, payload). The agent journals these.
EmitCallback = Callable[[str, dict[str, Any]], None]


class GrantRefused(RuntimeError):
    """A grant arrived while the door's mode forbids opening (lockdown)."""


class DoorController:
    """State machine over one door's lines.

    ``io`` is a :class:`hardware.gpio.DoorIO` (or anything with the same
    relay and input methods). Event payloads hold only JSON integers, strings
    and booleans (durations in milliseconds), as the journal requires. Input
    changes must be fed to :meth:`on_input`; :meth:`attach` wires that up.
    Every state change is reported through ``emit`` (from the thread that
    caused it) while the controller's lock is held, so events come out in the
    order they happened.
    """

    def __init__(
        self,
        io: Any,
        timings: DoorTimings | None = None,
        *,
        scheduler: Scheduler | None = None,
        emit: EmitCallback | None = None,
        mode: DoorMode = DoorMode.NORMAL,
    ) -> None:
        self.io = io
        self.timings = timings or DoorTimings()
        self.scheduler = scheduler or ThreadScheduler()
        self._emit_cb = emit
        self._lock = threading.RLock()
        self._mode = mode
        self._mode_before_emergency = mode
        self._relock_handle: Handle | None = None
        self._held_handle: Handle | None = None
        self._unlocked_until: float | None = None
        self._authorised_until = float("-inf")
        self._opened_on_grant = False
        self._door_open = bool(io.door_open)
        # alarm -> {"active": bool, "acknowledged": bool, "raised_at": float}
        self._alarms: dict[Alarm, dict[str, Any]] = {}
        io.lock()
        if io.is_asserted("fire"):
            self._enter_emergency()
        elif mode is DoorMode.FREE_ACCESS:
            io.unlock()
        if io.is_asserted("tamper"):
            self._raise(Alarm.TAMPER)

    def attach(self) -> None:
        """Route the DoorIO's input callbacks to this controller."""
        self.io.on_input = self.on_input

    # -- helpers (call with the lock held) ----------------------------------
    def _emit(self, kind: str, **payload: Any) -> None:
        if self._emit_cb is not None:
            try:
                self._emit_cb(kind, payload)
            except Exception:
                log.exception("door event handler failed for %s", kind)

    def _cancel(self, attr: str) -> None:
        handle = getattr(self, attr)
        if handle is not None:
            handle.cancel()
            setattr(self, attr, None)

    def _energise(self, seconds: float | None, by: str, grant: str | None = None) -> None:
        """Unlock now; relock after ``seconds`` (None: until told otherwise).

        ``grant``: the reference of the visitor's grant this opening serves; its
        ``door.unlocked`` is reported even when the door was unlocked already (the
        window is extended), so every opening of a grant is in the journal.
        """
        self._cancel("_relock_handle")
        was = self.io.lock_relay_energised
        self.io.unlock()
        now = self.scheduler.monotonic()
        if seconds is None:
            self._unlocked_until = None
        else:
            self._unlocked_until = now + seconds
            self._authorised_until = max(self._authorised_until, now + seconds)
            self._relock_handle = self.scheduler.call_later(seconds, self._relock_timer)
        if not was or grant is not None:
            extra: dict[str, Any] = {} if grant is None else {"grant_ref": grant, "extended": was}
            self._emit(
                "door.unlocked",
                by=by,
                unlock_ms=None if seconds is None else round(seconds * 1000),
                **extra,
            )

    def _relock(self, why: str) -> None:
        self._cancel("_relock_handle")
        self._unlocked_until = None
        if self._mode in (DoorMode.FREE_ACCESS, DoorMode.EMERGENCY):
            return
        if self.io.lock_relay_energised:
            self.io.lock()
            self._authorised_until = self.scheduler.monotonic() + self.timings.rex_grace_s
            self._emit("door.locked", why=why)

    def _relock_timer(self) -> None:
        with self._lock:
            self._relock_handle = None
            self._relock("unlock time over")

    def _raise(self, alarm: Alarm, **details: Any) -> None:
        state = self._alarms.get(alarm)
        if state is not None and state["active"]:
            return
        self._alarms[alarm] = {
            "active": True,
            "acknowledged": False,
            "raised_at": self.scheduler.monotonic(),
        }
        self._emit("alarm.raised", alarm=alarm.value, **details)

    def _clear(self, alarm: Alarm) -> None:
        state = self._alarms.get(alarm)
        if state is None or not state["active"]:
            return
        state["active"] = False
        state["cleared_at"] = self.scheduler.monotonic()
        self._emit("alarm.cleared", alarm=alarm.value)
        if state["acknowledged"]:
            del self._alarms[alarm]

    def _enter_emergency(self) -> None:
        if self._mode is not DoorMode.EMERGENCY:
            self._mode_before_emergency = self._mode
        self._mode = DoorMode.EMERGENCY
        self._cancel("_held_handle")
        self._energise(None, by="fire")
        self._raise(Alarm.FIRE)
        self._emit(
            "mode.changed",
            mode=self._mode.value,
            previous=self._mode_before_emergency.value,
            by="fire-input",
            why="fire alarm",
        )

    def _leave_emergency(self) -> None:
        if self._mode is not DoorMode.EMERGENCY:
            return
        self._mode = self._mode_before_emergency
        self._clear(Alarm.FIRE)
        if self._mode is not DoorMode.FREE_ACCESS:
            self._relock("fire alarm cleared")
        self._emit(
            "mode.changed",
            mode=self._mode.value,
            previous=DoorMode.EMERGENCY.value,
            by="fire-input",
            why="fire alarm cleared",
        )

    def _held_timer(self) -> None:
        with self._lock:
            self._held_handle = None
            if self._door_open and self._mode in (DoorMode.NORMAL, DoorMode.LOCKDOWN):
                self._raise(Alarm.HELD_OPEN, after_ms=round(self.timings.held_open_s * 1000))

    # -- inputs ---------------------------------------------------------------
    def on_input(self, name: str, asserted: bool, ts: float | None = None) -> None:
        """Handle a debounced input change from the DoorIO."""
        del ts  # the scheduler's clock is the one this machine reasons in
        with self._lock:
            if name == "door_contact":
                self._door_changed(asserted)
            elif name == "rex" and asserted:
                self._emit("rex.pressed")
                self._authorised_until = max(
                    self._authorised_until, self.scheduler.monotonic() + self.timings.rex_grace_s
                )
                if self.timings.rex_unlocks and self._mode in (DoorMode.NORMAL, DoorMode.LOCKDOWN):
                    self._energise(self.timings.unlock_s, by="rex")
            elif name == "fire":
                if asserted:
                    self._enter_emergency()
                else:
                    self._leave_emergency()
            elif name == "tamper":
                if asserted:
                    self._raise(Alarm.TAMPER)
                else:
                    self._clear(Alarm.TAMPER)

    def _door_changed(self, is_open: bool) -> None:
        if is_open == self._door_open:
            return
        self._door_open = is_open
        now = self.scheduler.monotonic()
        if is_open:
            authorised = self.io.lock_relay_energised or now <= self._authorised_until
            self._emit("door.opened", authorised=authorised)
            if self._mode in (DoorMode.NORMAL, DoorMode.LOCKDOWN):
                if not authorised:
                    self._raise(Alarm.FORCED_OPEN)
                self._opened_on_grant = authorised
                self._cancel("_held_handle")
                self._held_handle = self.scheduler.call_later(
                    self.timings.held_open_s, self._held_timer
                )
        else:
            self._emit("door.closed")
            self._cancel("_held_handle")
            self._clear(Alarm.HELD_OPEN)
            self._clear(Alarm.FORCED_OPEN)
            if (
                self._opened_on_grant
                and self.timings.relock_on_close
                and self._mode is DoorMode.NORMAL
                and self._unlocked_until is not None
            ):
                self._relock("door closed")
            self._opened_on_grant = False

    # -- commands -------------------------------------------------------------
    def grant(
        self, seconds: float | None = None, by: str = "credential", grant: str | None = None
    ) -> None:
        """Unlock for the unlock time (or ``seconds``) after an access decision.

        ``grant``: the reference of the visitor's grant opened on request (carried by
        ``door.unlocked``). Raises :class:`GrantRefused` in lockdown. In free access
        and emergency the door is already unlocked and nothing changes.
        """
        with self._lock:
            if self._mode is DoorMode.LOCKDOWN:
                raise GrantRefused("door is in lockdown")
            if self._mode is not DoorMode.NORMAL:
                return
            self._energise(seconds or self.timings.unlock_s, by=by, grant=grant)

    def apply_settings(self, settings: DoorSettings) -> None:
        """Take the times of ``settings`` (the central's ``unlock_s``, ``held_open_s``)
        for the next openings; raises :class:`ValueError` (nothing changed) when they
        are not valid times (:class:`DoorTimings`)."""
        if settings.unlock_s is None or settings.held_open_s is None:
            raise ValueError("unlock_s and held_open_s must be numbers")
        timings = replace(
            self.timings, unlock_s=settings.unlock_s, held_open_s=settings.held_open_s
        )
        with self._lock:
            self.timings = timings

    def set_mode(self, mode: DoorMode | str, by: str, why: str) -> DoorMode:
        """Switch to ``mode`` (a guard action). Returns the mode now in force.

        While the fire input is asserted the door stays in emergency; the
        requested mode is remembered and applied when the fire alarm clears.
        Emergency cannot be entered by hand: it follows the fire input.
        """
        mode = DoorMode(mode)
        if mode is DoorMode.EMERGENCY:
            raise ValueError("emergency mode follows the fire-alarm input; it cannot be set")
        with self._lock:
            if self._mode is DoorMode.EMERGENCY:
                self._mode_before_emergency = mode
                self._emit("mode.deferred", mode=mode.value, by=by, why=why)
                return self._mode
            previous = self._mode
            if mode is previous:
                return mode
            self._mode = mode
            if mode is DoorMode.FREE_ACCESS:
                self._cancel("_held_handle")
                self._clear(Alarm.HELD_OPEN)
                self._energise(None, by=by)
            else:
                self._relock(f"mode {mode.value}")
            self._emit("mode.changed", mode=mode.value, previous=previous.value, by=by, why=why)
            return mode

    def acknowledge(self, alarm: Alarm | str, by: str, why: str = "") -> bool:
        """Acknowledge an alarm. Returns False if no such alarm is pending.

        An acknowledged alarm whose condition has cleared disappears; one
        still active stays listed as acknowledged until it clears.
        """
        alarm = Alarm(alarm)
        with self._lock:
            state = self._alarms.get(alarm)
            if state is None or state["acknowledged"]:
                return False
            state["acknowledged"] = True
            self._emit("alarm.acknowledged", alarm=alarm.value, by=by, why=why)
            if alarm in CLEARED_BY_ACK:
                self._clear(alarm)
            if not state["active"]:
                self._alarms.pop(alarm, None)
            return True

    def raise_alarm(self, alarm: Alarm | str, **details: Any) -> bool:
        """Raise an alarm that does not come from the door's inputs (a visitor's call).

        Returns False when it is already active (raised once, however often asked).
        """
        alarm = Alarm(alarm)
        with self._lock:
            state = self._alarms.get(alarm)
            if state is not None and state["active"]:
                return False
            self._raise(alarm, **details)
            return True

    def clear_alarm(self, alarm: Alarm | str, since: float | None = None) -> bool:
        """Clear an alarm raised by :meth:`raise_alarm`; False if it was not active.

        ``since``: only the alarm raised at that monotonic time (``alarm_raised_at``),
        so a timer of an earlier raise never clears a newer one.
        """
        alarm = Alarm(alarm)
        with self._lock:
            state = self._alarms.get(alarm)
            if state is None or not state["active"]:
                return False
            if since is not None and state["raised_at"] != since:
                return False
            self._clear(alarm)
            return True

    def alarm_raised_at(self, alarm: Alarm | str) -> float | None:
        """The monotonic time ``alarm`` was raised, None when it is not active."""
        with self._lock:
            state = self._alarms.get(Alarm(alarm))
            return state["raised_at"] if state is not None and state["active"] else None

    def safe_state(self) -> None:
        """Cancel timers and de-energise the relay (agent stopping)."""
        with self._lock:
            self._cancel("_relock_handle")
            self._cancel("_held_handle")
            self.io.lock()

    # -- state ----------------------------------------------------------------
    @property
    def mode(self) -> DoorMode:
        """The mode in force."""
        return self._mode

    def snapshot(self) -> dict[str, Any]:
        """The door's state as a JSON-ready dict (for status and the kiosk)."""
        with self._lock:
            now = self.scheduler.monotonic()
            return {
                "mode": self._mode.value,
                "unlocked": bool(self.io.lock_relay_energised),
                "unlocked_for_s": (
                    None
                    if self._unlocked_until is None
                    else round(max(0.0, self._unlocked_until - now), 1)
                ),
                "door_open": self._door_open,
                "alarms": [
                    {
                        "alarm": a.value,
                        "active": s["active"],
                        "acknowledged": s["acknowledged"],
                        "age_s": round(now - s["raised_at"], 1),
                        # Since the condition ended ("cleared 73 s ago"); None while active.
                        "cleared_s": (
                            None if s.get("cleared_at") is None else round(now - s["cleared_at"], 1)
                        ),
                    }
                    for a, s in sorted(self._alarms.items())
                ],
            }
