"""Recent events of the door (newest first), from the agent's journal."""

from __future__ import annotations

import time
from typing import Any

from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from edge_agent.client import AgentUnavailable, ApiError
from kiosk import wording
from kiosk.ui.screens.base import KioskScreen

LIMIT = 50


class EventRow(BoxLayout):
    """One journal event: time, what, details."""

    when = StringProperty("")
    kind = StringProperty("")
    #: msgid of the outcome word (access decisions) or "".
    outcome = StringProperty("")
    #: Reason code of a deny, "" otherwise.
    reason = StringProperty("")
    #: Data: who (holder, guard, credential id), mode, alarm...
    who = StringProperty("")
    #: A msgid naming a mode or alarm ("" for none).
    subject = StringProperty("")
    granted = BooleanProperty(False)
    #: qr or badge, for access decisions.
    credential_kind = StringProperty("qr")

    def kind_msgid(self, kind: str) -> str:
        """Return the msgid naming the event type."""
        return wording.EVENT_TYPES.get(kind, wording.EVENT_OTHER)

    def details(self, outcome: str, reason: str, kind: str, subject: str, _: Any) -> str:
        """Return the event's details (outcome, reason, mode or alarm), translated."""
        parts = []
        if outcome:
            parts.append(_(outcome))
        if reason and reason != "granted":
            parts.append(_(wording.denial(reason, kind).title))
        if subject:
            parts.append(_(subject))
        return " · ".join(parts)


def event_row(event: dict[str, Any]) -> EventRow:
    """Build the row of one ``/v1/guard/recent`` event."""
    kind = str(event.get("type", ""))
    row = EventRow(when=time.strftime("%H:%M:%S", time.localtime(event.get("at") or 0)), kind=kind)
    if kind == "access.decision":
        row.granted = bool(event.get("granted"))
        row.outcome = wording.GRANTED if row.granted else wording.DENIED
        row.reason = str(event.get("reason") or "")
        row.credential_kind = "badge" if event.get("kind") == "badge" else "qr"
        row.who = str(event.get("holder") or event.get("credential_id") or "")
    elif kind in ("mode.changed", "mode.deferred"):
        row.subject = wording.DOOR_MODES.get(str(event.get("mode", "")), "")
    elif kind.startswith("alarm."):
        row.subject = wording.ALARMS.get(str(event.get("alarm", "")), "")
    elif kind in ("guard.action", "guard.action_refused"):
        row.subject = wording.ACTIONS.get(str(event.get("action", "")), "")
        row.who = str(event.get("name") or event.get("guard_id") or "")
    elif kind in ("guard.login", "guard.logout", "guard.login_failed", "guard.badge_tap"):
        row.who = str(event.get("name") or event.get("guard_id") or event.get("badge_uid") or "")
    elif kind == "visitor.checked_in":
        row.who = str(event.get("invitation_id") or "")
    return row


class GuardEventsScreen(KioskScreen):
    """The latest events, refreshed on entry and on demand."""

    visitor = False
    busy = BooleanProperty(False)
    message = StringProperty("")

    def on_pre_enter(self, *_args: Any) -> None:
        """Load the events on every visit."""
        self.refresh()

    def refresh(self) -> None:
        """Fetch the latest events."""
        self.busy = True
        self.message = ""
        client = self.app.link.guard_client
        self.app.link.submit(
            lambda: client.recent(LIMIT),
            on_done=self._loaded,
            on_error=self._failed,
        )

    def _loaded(self, events: list[dict[str, Any]]) -> None:
        self.busy = False
        box = self.ids.events
        box.clear_widgets()
        for event in events:
            box.add_widget(event_row(event))

    def _failed(self, exc: Exception) -> None:
        self.busy = False
        if isinstance(exc, ApiError) and exc.status == 401:
            self.app.guard_session_lost()
        elif isinstance(exc, ApiError):
            self.message = wording.guard_error(exc.code)
        elif isinstance(exc, AgentUnavailable):
            self.app.go("out_of_service")

    def back(self) -> None:
        """Back to the console."""
        self.app.go("guard_console")
