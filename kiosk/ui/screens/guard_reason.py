"""Why? Every guard action needs a reason, picked from a short list (no typing).

The agent journals the reason in English (the catalogue's msgid), whatever
language the console is in, so the security office reads one language.

The same screen asks why a guard checks a visitor in although the agent refused
the invitation (``action="checkin"``): the reason goes with the check-in as its
``override_reason`` and the agent journals who overrode what, and why.
"""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, StringProperty

from edge_agent.client import AgentUnavailable, ApiError
from kiosk import wording
from kiosk.i18n import N_
from kiosk.ui.screens.guard_base import GuardScreen


class GuardReasonScreen(GuardScreen):
    """Pick a reason; the action is carried out at once."""

    action = StringProperty("open_once")
    alarm = StringProperty("")
    busy = BooleanProperty(False)
    message = StringProperty("")
    #: A check-in override: the invitation, its visitor and why the agent refused it.
    invitation_id = StringProperty("")
    visitor_name = StringProperty("")
    refused = StringProperty("")

    def prepare(
        self,
        action: str = "open_once",
        alarm: str | None = None,
        invitation_id: str = "",
        visitor_name: str = "",
        refused: str = "",
        **_kw: Any,
    ) -> None:
        """Ask the reason for ``action`` (and the ``alarm`` to acknowledge, or the
        ``invitation_id`` to check in anyway, ``refused`` for that reason code)."""
        self.action = action
        self.alarm = alarm or ""
        self.invitation_id = invitation_id
        self.visitor_name = visitor_name
        self.refused = refused
        self.busy = False
        self.message = ""

    def reasons(self, action: str = "") -> tuple[str, ...]:
        """The reasons offered (msgids): an override's own list for a check-in."""
        if action == "checkout":
            return wording.CHECKOUT_REASONS
        return wording.OVERRIDE_REASONS if action == "checkin" else wording.ACTION_REASONS

    def title_text(self, action: str, alarm: str, visitor_name: str, _: Any) -> str:
        """Return "Lockdown: why?", "Acknowledge alarm — Door forced open: why?" or
        "Check in anyway — Bob Martin: why?"."""
        name = _(wording.ACTIONS.get(action, wording.EVENT_OTHER))
        if alarm:
            name = f"{name} — {_(wording.ALARMS.get(alarm, wording.EVENT_OTHER))}"
        elif action in ("checkin", "checkout") and visitor_name:
            name = f"{name} — {visitor_name}"
        return _("{action}: why?").format(action=name)

    def hint_text(self, action: str, refused: str, message: str, _: Any) -> str:
        """The line under the title: the refusal being overridden, or the usual hint."""
        if message:
            return _(message)
        if action == "checkin":
            refusal = _(wording.CHECKIN_REFUSALS.get(refused, wording.CHECKIN_REFUSED_OTHER))
            return _("{refusal} Your name and reason are recorded.").format(refusal=refusal)
        return _("Choose the reason. It is recorded with your name.")

    def pick(self, reason: str) -> None:
        """Carry out the action with ``reason`` (an English msgid, journaled as is)."""
        if self.busy:
            return
        self.busy = True
        client = self.app.link.guard_client
        if self.action == "checkin":
            invitation_id = self.invitation_id
            self.app.link.submit(
                lambda: client.checkin(invitation_id, consent=False, override_reason=reason),
                on_done=self._checked_in,
                on_error=self._failed,
            )
            return
        if self.action == "checkout":
            invitation_id = self.invitation_id
            self.app.link.submit(
                lambda: client.guard_checkout(invitation_id, reason),
                on_done=self._checked_out,
                on_error=self._failed,
            )
            return
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

    def _checked_in(self, _answer: dict[str, Any]) -> None:
        self.busy = False
        self.app.go(
            "guard_visitors",
            keep=True,
            message=N_("Checked in anyway: {name}."),
            arg=self.visitor_name,
            checked_in=self.invitation_id,
        )

    def _checked_out(self, _answer: dict[str, Any]) -> None:
        self.busy = False
        self.app.go("guard_muster")

    def _failed(self, exc: Exception) -> None:
        self.busy = False
        if isinstance(exc, ApiError) and exc.status == 401:
            self.app.guard_session_lost()
        elif isinstance(exc, ApiError) and self.action == "checkout":
            self.app.go("guard_muster", message=wording.guard_error(exc.code))
        elif isinstance(exc, ApiError) and self.action == "checkin":
            self.app.go("guard_visitors", keep=True, message=wording.guard_error(exc.code))
        elif isinstance(exc, ApiError):
            self.app.go("guard_console", message=wording.guard_error(exc.code), ok=False)
        elif isinstance(exc, AgentUnavailable):
            self.app.go("out_of_service")
        else:
            self.message = wording.GUARD_ERROR_OTHER

    def cancel(self) -> None:
        """Back where the guard came from without doing anything."""
        if self.action == "checkin":
            self.app.go("guard_visitors", keep=True)
        elif self.action == "checkout":
            self.app.go("guard_muster")
        else:
            self.app.go("guard_console")
