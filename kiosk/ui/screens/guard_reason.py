"""Why? Every guard action needs a reason, picked from a short list (no typing).

The agent journals the reason in English (the catalogue's msgid), whatever
language the console is in, so the security office reads one language.
"""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, StringProperty

from edge_agent.client import AgentUnavailable, ApiError
from kiosk import wording
from kiosk.i18n import N_
from kiosk.ui.screens.base import KioskScreen


class GuardReasonScreen(KioskScreen):
    """Pick a reason; the action is carried out at once."""

    visitor = False
    action = StringProperty("open_once")
    alarm = StringProperty("")
    busy = BooleanProperty(False)
    message = StringProperty("")

    def prepare(self, action: str = "open_once", alarm: str | None = None, **_kw: Any) -> None:
        """Ask the reason for ``action`` (and the ``alarm`` to acknowledge)."""
        self.action = action
        self.alarm = alarm or ""
        self.busy = False
        self.message = ""

    def reasons(self) -> tuple[str, ...]:
        """The reasons offered (msgids)."""
        return wording.ACTION_REASONS

    def title_text(self, action: str, alarm: str, _: Any) -> str:
        """Return "Lockdown: why?" or "Acknowledge alarm: Door forced open"."""
        name = _(wording.ACTIONS.get(action, wording.EVENT_OTHER))
        if alarm:
            name = f"{name} — {_(wording.ALARMS.get(alarm, wording.EVENT_OTHER))}"
        return _("{action}: why?").format(action=name)

    def pick(self, reason: str) -> None:
        """Carry out the action with ``reason`` (an English msgid, journaled as is)."""
        if self.busy:
            return
        self.busy = True
        client = self.app.link.guard_client
        action, alarm = self.action, self.alarm or None
        self.app.link.submit(
            lambda: client.guard_action(action, reason, alarm),
            on_done=self._done,
            on_error=self._failed,
        )

    def _done(self, _answer: dict[str, Any]) -> None:
        self.busy = False
        self.app.go(
            "guard_console", message=N_("Done: {action}."), arg=wording.ACTIONS[self.action]
        )

    def _failed(self, exc: Exception) -> None:
        self.busy = False
        if isinstance(exc, ApiError) and exc.status == 401:
            self.app.guard_session_lost()
        elif isinstance(exc, ApiError):
            self.app.go("guard_console", message=wording.guard_error(exc.code), ok=False)
        elif isinstance(exc, AgentUnavailable):
            self.app.go("out_of_service")
        else:
            self.message = wording.GUARD_ERROR_OTHER

    def cancel(self) -> None:
        """Back to the console without doing anything."""
        self.app.go("guard_console")
