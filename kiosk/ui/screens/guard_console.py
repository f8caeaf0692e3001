"""The guard console: door mode and actions, alarms to acknowledge, the appliance's status.

Status comes from the app's periodic ``GET /v1/status`` (refreshed at once
when an alarm or door event arrives). Every action goes through the reason
screen: the agent journals who did what and why.

The alarm area has a fixed height (two rows, scrolling beyond), so no button moves
when alarms come and go; a door forced or held open also shows as a red banner over
the header. A cleared alarm says how long ago it cleared (``cleared_s``), not how long
ago it was raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from kiosk import wording
from kiosk.ui.screens.guard_base import GuardScreen

Translate = Callable[[str], str]


def duration(seconds: float | None, _: Translate) -> str:
    """Return an age like "45 s", "12 min", "3 h" or "2 d", translated."""
    if seconds is None:
        return _("never synced")
    seconds = max(0, int(seconds))
    if seconds < 120:
        return _("{n} s").format(n=seconds)
    if seconds < 7200:
        return _("{n} min").format(n=seconds // 60)
    if seconds < 172_800:
        return _("{n} h").format(n=seconds // 3600)
    return _("{n} d").format(n=seconds // 86_400)


def cache_row(status: dict[str, Any], _: Translate) -> list[str]:
    """Return the status panel's cache row, ``[label, value]``, translated.

    The value is the cache's age, with the door's limit when it has one ("3 h / 24 h").
    The label warns the guard: "Cache ageing" past the ``stale_cache`` alarm point,
    "Cache expired" once the door refuses cached decisions (``cache_stale``).
    """
    cache = status.get("cache") or {}
    age = duration(status.get("cache_staleness_s"), _)
    limit = cache.get("max_staleness_s")
    if limit is None:
        return [_("Cache age"), age]
    if cache.get("stale"):
        label = _("Cache expired")
    elif cache.get("warning"):
        label = _("Cache ageing")
    else:
        label = _("Cache age")
    if status.get("cache_staleness_s") is None:
        return [label, age]
    return [label, f"{age} / {duration(limit, _)}"]


def clock_time(epoch_s: float | None, _: Translate) -> str:
    """Return a wall-clock time as "14:05" today or "2026-05-09 14:05"."""
    if epoch_s is None:
        return _("never")
    local = time.localtime(epoch_s)
    if time.strftime("%Y-%m-%d", local) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%Y-%m-%d %H:%M", local)


#: Door modes in which the agent refuses "open once" (409): lockdown (lift it first) and
#: emergency (the fire input already holds the door released).
NO_OPEN_ONCE = frozenset({"lockdown", "emergency"})


def can_open_once(status: dict[str, Any]) -> bool:
    """False while the door cannot be opened once (:data:`NO_OPEN_ONCE`, or no door state
    yet): the console greys the button out rather than offer an action the agent refuses."""
    door = status.get("door") or {}
    return bool(door) and door.get("mode") not in NO_OPEN_ONCE


class AlarmRow(BoxLayout):
    """One alarm of the door, with its acknowledge button."""

    alarm = StringProperty("")
    active = BooleanProperty(True)
    acknowledged = BooleanProperty(False)
    #: Seconds since it was raised.
    age_s = NumericProperty(0)
    #: Seconds since its condition cleared (-1: still active, or an older agent).
    cleared_s = NumericProperty(-1)
    #: For ``printer_fault``: the printer's status as CUPS reports it ("out_of_media"...).
    printer = StringProperty("")

    def alarm_msgid(self, alarm: str, printer: str = "") -> str:
        """Return the msgid naming ``alarm`` (the printer's fault: what to fix)."""
        if alarm == "printer_fault" and printer in wording.PRINTER_FAULTS:
            return wording.PRINTER_FAULTS[printer]
        return wording.ALARMS.get(alarm, wording.EVENT_OTHER)

    def state_text(
        self, active: bool, acknowledged: bool, age_s: float, cleared_s: float, _: Translate
    ) -> str:
        """Return "active · 2 min ago" / "cleared · 73 s ago" (since the clearing) ..."""
        state = _("active") if active else _("cleared")
        if acknowledged:
            state = _("{state}, acknowledged").format(state=state)
        since = age_s if active or cleared_s < 0 else cleared_s
        return _("{state} · {age} ago").format(state=state, age=duration(since, _))

    def acknowledge(self) -> None:
        """Ask for a reason, then acknowledge."""
        from kivy.app import App

        App.get_running_app().go("guard_reason", action="acknowledge", alarm=self.alarm)


def door_alarm(status: dict[str, Any]) -> str:
    """The active door alarm the console shows as a banner (forced before held), or ""."""
    alarms = (status.get("door") or {}).get("alarms") or []
    active = {str(a.get("alarm")) for a in alarms if a.get("active")}
    return next((name for name in wording.DOOR_ALARM_BANNERS if name in active), "")


class GuardConsoleScreen(GuardScreen):
    """The console's home."""

    #: msgid of the last action's result ("" for none), and its argument.
    message = StringProperty("")
    message_arg = StringProperty("")
    message_ok = BooleanProperty(True)

    def prepare(self, message: str = "", arg: str = "", ok: bool = True, **_kwargs: Any) -> None:
        """Show the console; ``message`` (a msgid) reports the last action."""
        self.message = message
        self.message_arg = arg
        self.message_ok = ok

    def on_pre_enter(self, *_args: Any) -> None:
        """Fresh status and alarms on every visit."""
        self.app.link.check_now()
        self._alarms(self.app.status)

    def on_agent_event(self, event: dict[str, Any]) -> None:
        """Door and alarm events: the status poll the app triggers will redraw."""

    def on_status(self, status: dict[str, Any]) -> None:
        """Rebuild the alarm rows from a new status."""
        self._alarms(status)

    def _alarms(self, status: dict[str, Any]) -> None:
        box = self.ids.alarms
        alarms = (status.get("door") or {}).get("alarms") or []
        pending = [a for a in alarms if not a.get("acknowledged") or a.get("active")]
        # The ones still to acknowledge first, door alarms before the others; the area
        # scrolls past two rows (its height never changes: the buttons stay put).
        pending.sort(
            key=lambda a: (
                bool(a.get("acknowledged")),
                a.get("alarm") not in wording.DOOR_ALARM_BANNERS,
                -float(a.get("age_s") or 0),
            )
        )
        box.clear_widgets()
        printer = str((status.get("printer") or {}).get("status") or "")
        for alarm in pending:
            cleared = alarm.get("cleared_s")
            box.add_widget(
                AlarmRow(
                    alarm=str(alarm.get("alarm", "")),
                    printer=printer if alarm.get("alarm") == "printer_fault" else "",
                    active=bool(alarm.get("active")),
                    acknowledged=bool(alarm.get("acknowledged")),
                    age_s=float(alarm.get("age_s") or 0),
                    cleared_s=-1 if cleared is None else float(cleared),
                )
            )

    def has_alarms(self, status: dict[str, Any]) -> bool:
        """True when the door has alarms to show."""
        return bool((status.get("door") or {}).get("alarms"))

    def alarms_title(self, status: dict[str, Any], _: Translate) -> str:
        """Return "No alarms" or "Alarms: 3"."""
        alarms = (status.get("door") or {}).get("alarms") or []
        return _("Alarms: {n}").format(n=len(alarms)) if alarms else _("No alarms")

    def door_alarm_text(self, status: dict[str, Any], _: Translate) -> str:
        """The banner of a door forced or held open, translated ("" for none)."""
        alarm = door_alarm(status)
        return _(wording.DOOR_ALARM_BANNERS[alarm]) if alarm else ""

    def mode_msgid(self, status: dict[str, Any]) -> str:
        """Return the msgid of the door's mode."""
        mode = (status.get("door") or {}).get("mode", "")
        return wording.DOOR_MODES.get(mode, wording.EVENT_OTHER)

    def mode_note(self, status: dict[str, Any], _: Translate) -> str:
        """Who set the mode at the central and why ("Set by olivia from the security
        office: drill"), translated; "" when a guard or nobody set it there."""
        return mode_note(status, _)

    def can_open_once(self, status: dict[str, Any]) -> bool:
        """Whether "Open once" is enabled (see :func:`can_open_once`)."""
        return can_open_once(status)

    def mode_role(self, status: dict[str, Any]) -> str:
        """Colour of the mode badge: green normal, red lockdown, amber otherwise."""
        mode = (status.get("door") or {}).get("mode", "")
        return {"normal": "ok", "lockdown": "bad"}.get(mode, "warn")

    def status_rows(self, status: dict[str, Any], online: bool, _: Translate) -> list[list[str]]:
        """Return the status panel as ``[label, value]`` rows, translated (8 rows)."""
        if not status:
            waiting = _("Waiting for the door controller…")
            return [[waiting, ""]] + [["", ""]] * 7
        door = status.get("door") or {}
        position = _("open") if door.get("door_open") else _("closed")
        lock = _("unlocked") if door.get("unlocked") else _("locked")
        last_sync = status.get("last_sync")
        return [
            [_("Door"), position],
            [_("Lock"), lock],
            [_("Controller"), _("reachable") if online else _("not reachable")],
            [_("Central"), _("online") if status.get("online") else _("offline")],
            [_("Last sync"), clock_time(None if last_sync is None else last_sync / 1000, _)],
            [_("Events waiting"), str(status.get("events_waiting", 0))],
            cache_row(status, _),
            [_("Door clock"), clock_time(status.get("clock"), _)],
        ]

    def action(self, action: str) -> None:
        """A door action: pick a reason first."""
        self.app.go("guard_reason", action=action)

    def message_text(self, message: str, arg: str, _: Translate) -> str:
        """Return the result line."""
        return _(message).format(action=_(arg)) if message else ""

    def visitors(self) -> None:
        """Visitor look-up and manual check-in."""
        self.app.go("guard_visitors")

    def events(self) -> None:
        """Recent events."""
        self.app.go("guard_events")

    def show_on_site(self) -> None:
        """The visitors on site (the muster list)."""
        self.app.go("guard_muster")

    def logout(self) -> None:
        """Log out and go back to the attract screen."""
        self.app.guard_logout()


def mode_note(status: dict[str, Any], _: Translate) -> str:
    """The line under the mode when an operator at the central set it (status
    ``mode_set.central``, docs/local-api.md), translated; "" otherwise."""
    mode_set = status.get("mode_set") or {}
    central = mode_set.get("central") if isinstance(mode_set, dict) else None
    if not isinstance(central, dict) or not central.get("by"):
        return ""
    return _("Set by {name} from the security office: {reason}").format(
        name=str(central["by"]), reason=str(central.get("reason", ""))
    )
