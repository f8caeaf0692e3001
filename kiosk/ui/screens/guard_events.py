"""Recent events of the door (newest first), from the agent's journal.

Every event type the agent journals has its plain words (:data:`kiosk.wording.EVENT_TYPES`)
and every row names the people involved -- visitor, badge holder, guard -- rather than
ids: names come from the event itself, else from the other events of the same list (a
guard's login names the guard that a later ``mode.changed`` only calls ``guard:g1``).
The list is fetched again each time the screen opens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from edge_agent.client import AgentUnavailable, ApiError
from kiosk import wording
from kiosk.ui.screens.guard_base import GuardScreen

LIMIT = 50

Translate = Callable[[str], str]


class EventRow(BoxLayout):
    """One journal event: time, what, details, who."""

    when = StringProperty("")
    kind = StringProperty("")
    #: msgid of the outcome word (access decisions) or "".
    outcome = StringProperty("")
    #: Reason code of a deny, "" otherwise.
    reason = StringProperty("")
    #: Who: a visitor, a holder, a guard (already translated where it is a word).
    who = StringProperty("")
    #: A msgid naming a mode, alarm or action ("" for none).
    subject = StringProperty("")
    #: More words, already translated (a guard's reason, why a login failed...).
    note = StringProperty("")
    granted = BooleanProperty(False)
    #: An event the guard should notice (deny, forced door, refusal): drawn in amber.
    warn = BooleanProperty(False)
    #: qr or badge, for access decisions.
    credential_kind = StringProperty("qr")

    def kind_msgid(self, kind: str) -> str:
        """Return the msgid naming the event type."""
        return wording.EVENT_TYPES.get(kind, wording.EVENT_OTHER)

    def details(
        self, outcome: str, reason: str, kind: str, subject: str, note: str, _: Translate
    ) -> str:
        """Return the event's details (outcome, reason, mode or alarm, note), translated."""
        parts = []
        if outcome:
            parts.append(_(outcome))
        if reason and reason != "granted":
            parts.append(_(wording.denial(reason, kind).title))
        if subject:
            parts.append(_(subject))
        if note:
            parts.append(note)
        return " · ".join(parts)


def known_names(events: list[dict[str, Any]]) -> dict[str, str]:
    """Names the events of one list tell: ``guard:<id>``, ``qr:<id>``, ``badge:<uid>`` and
    invitation ids -> the person's name."""
    names: dict[str, str] = {}
    for event in events:
        name = event.get("name")
        if event.get("guard_id") and isinstance(name, str) and name:
            names.setdefault(f"guard:{event['guard_id']}", name)
        visitor = event.get("visitor") or event.get("holder")
        if not isinstance(visitor, str) or not visitor:
            continue
        ident = event.get("invitation_id") or event.get("credential_id")
        if isinstance(ident, str) and ident:
            names.setdefault(ident, visitor)
            prefix = "badge" if event.get("kind") == "badge" else "qr"
            names.setdefault(f"{prefix}:{ident}", visitor)
    return names


def _person(ref: object, names: dict[str, str], _: Translate) -> str:
    """A name for ``ref`` (``guard:g1``, ``qr:inv-1``, ``central``...), or ""."""
    if not isinstance(ref, str) or not ref:
        return ""
    if ref in names:
        return names[ref]
    if ref in wording.BY_WORDS:
        return _(wording.BY_WORDS[ref])
    kind = ref.partition(":")[0]
    if kind == "badge":
        return _(wording.UNKNOWN_BADGE_HOLDER)
    return ""


def event_row(event: dict[str, Any], names: dict[str, str] | None = None) -> EventRow:
    """Build the row of one ``/v1/guard/recent`` event (``names``: :func:`known_names`)."""
    from kivy.app import App

    app = App.get_running_app()
    _: Translate = app.tr.gettext if app is not None else (lambda text: text)
    names = names or {}
    kind = str(event.get("type", ""))
    row = EventRow(when=time.strftime("%H:%M:%S", time.localtime(event.get("at") or 0)), kind=kind)
    guard = names.get(f"guard:{event.get('guard_id')}", "") if event.get("guard_id") else ""
    who = str(event.get("name") or event.get("visitor") or event.get("holder") or guard or "")
    if kind == "access.decision":
        row.granted = bool(event.get("granted"))
        row.warn = not row.granted
        row.outcome = wording.GRANTED if row.granted else wording.DENIED
        row.reason = str(event.get("reason") or "")
        row.credential_kind = "badge" if event.get("kind") == "badge" else "qr"
        if not who:
            unknown = (
                wording.UNKNOWN_BADGE_HOLDER
                if row.credential_kind == "badge"
                else wording.UNVERIFIED_CODE
            )
            who = _(unknown)
    elif kind in ("mode.changed", "mode.deferred", "door.mode_restored"):
        row.subject = wording.DOOR_MODES.get(str(event.get("mode", "")), "")
        who = who or _person(event.get("by"), names, _)
    elif kind.startswith("alarm."):
        row.subject = wording.ALARMS.get(str(event.get("alarm", "")), "")
        row.warn = kind == "alarm.raised"
        who = who or _person(event.get("by"), names, _)
    elif kind in ("guard.action", "guard.action_refused"):
        row.subject = wording.ACTIONS.get(str(event.get("action", "")), "")
        row.note = _(str(event.get("why") or ""))
        if kind == "guard.action_refused":
            row.warn = True
            row.note = _(wording.guard_error(str(event.get("reason_code") or "")))
    elif kind == "guard.login_failed":
        row.warn = True
        why = str(event.get("why") or "")
        row.note = _(wording.LOGIN_FAILURES.get(why, wording.LOGIN_FAILED_OTHER))
        who = who or _(wording.UNKNOWN_BADGE_HOLDER)
    elif kind == "guard.session_ended":
        row.note = _(wording.SESSION_ENDS.get(str(event.get("why") or ""), ""))
    elif kind == "visitor.checked_in":
        who = who or names.get(str(event.get("invitation_id") or ""), "")
        by = _person(event.get("by"), names, _)
        override = event.get("override")
        if isinstance(override, dict):
            row.warn = True
            refused = str(override.get("refused_reason") or "")
            row.note = " ".join(
                (
                    _(wording.CHECKIN_REFUSALS.get(refused, wording.CHECKIN_REFUSED_OTHER)),
                    _("anyway, by {guard}: {why}").format(
                        guard=override.get("name") or by,
                        why=_(str(override.get("reason") or "")),
                    ),
                )
            )
        elif by:
            row.note = _("by {who}").format(who=by)
    elif kind == "visitor.checked_out":
        who = str(event.get("visitor") or "")
        how = str(event.get("how") or "")
        if how == "guard":
            row.note = _("by {guard}: {why}").format(
                guard=event.get("name") or _person(event.get("by"), names, _),
                why=_(str(event.get("reason") or "")),
            )
        elif how in wording.CHECKOUTS:
            row.note = _(wording.CHECKOUTS[how])
    elif kind == "visitor.checkin_refused":
        row.warn = True
        refused = str(event.get("reason_code") or "")
        row.note = " ".join(
            (
                _(wording.CHECKIN_REFUSALS.get(refused, wording.CHECKIN_REFUSED_OTHER)),
                _("by {who}").format(who=event.get("name") or guard),
            )
        )
        who = str(event.get("visitor") or "")
    elif kind == "door.unlocked":
        who = _person(event.get("by"), names, _)
    elif kind == "door.opened":
        if event.get("authorised") is False:
            row.warn = True
            row.subject = wording.ALARMS["forced_open"]
    elif kind in ("access.grant_unused", "access.aborted", "invitation.used"):
        ident = event.get("invitation_id") or event.get("credential_id")
        who = who or names.get(str(ident or ""), "")
    elif kind == "sync.alarm":
        row.warn = event.get("state") == "raised"
        row.subject = wording.SYNC_STATES.get(str(event.get("state") or ""), "")
    elif kind == "visitor.help":
        row.warn = True
    row.who = who
    return row


class GuardEventsScreen(GuardScreen):
    """The latest events, fetched again on every visit and on demand."""

    busy = BooleanProperty(False)
    message = StringProperty("")

    def on_pre_enter(self, *_args: Any) -> None:
        """Empty the list and load the newest events on every visit."""
        self.ids.events.clear_widgets()
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
        names = known_names(events)
        if self.app.guard_id and self.app.guard_name:
            names.setdefault(f"guard:{self.app.guard_id}", self.app.guard_name)
        # Newest first, whatever order the answer came in.
        ordered = sorted(events, key=lambda e: int(e.get("seq") or 0), reverse=True)
        for event in ordered:
            box.add_widget(event_row(event, names))
        scroll = self.ids.get("scroll")
        if scroll is not None:
            scroll.scroll_y = 1  # the newest at the top, every time

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
