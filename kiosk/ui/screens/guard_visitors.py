"""Visitor look-up and manual check-in (guard only).

The guard types the start of a visitor's name on a letter pad (no on-screen
keyboard to pop up over the list); the agent searches its invitation cache.
A manual check-in needs the guard's session and records the guard's id.
"""

from __future__ import annotations

import time
from typing import Any

from kivy.properties import BooleanProperty, ListProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from edge_agent.client import AgentUnavailable, ApiError
from kiosk import wording
from kiosk.i18n import N_
from kiosk.ui.screens.base import KioskScreen

LETTER_KEYS = [*"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "É", "È", "Ç", "-", "'"]
EDIT_KEYS = ["space", "back", "clear"]
MAX_QUERY = 40


class VisitorRow(BoxLayout):
    """One invitation found, with its check-in button."""

    invitation_id = StringProperty("")
    visitor = StringProperty("")
    host = StringProperty("")
    valid_until = StringProperty("")
    used = BooleanProperty(False)
    checked_in = BooleanProperty(False)

    def check_in(self) -> None:
        """Check this visitor in by hand."""
        from kivy.app import App

        App.get_running_app().screen.check_in(self)


class GuardVisitorsScreen(KioskScreen):
    """Search by name, check in by hand."""

    visitor = False
    query = StringProperty("")
    message = StringProperty("")
    message_arg = StringProperty("")
    busy = BooleanProperty(False)
    results = ListProperty([])

    def prepare(self, **_kwargs: Any) -> None:
        """Empty search."""
        self.query = ""
        self.message = ""
        self.message_arg = ""
        self.results = []

    def key(self, key: str) -> None:
        """A key of the letter pad."""
        if key == "back":
            self.query = self.query[:-1]
        elif key == "clear":
            self.query = ""
        elif key == "space":
            if self.query and not self.query.endswith(" "):
                self.query += " "
        elif len(self.query) < MAX_QUERY:
            self.query += key

    def search(self) -> None:
        """Ask the agent for invitations whose visitor name starts with the query."""
        query = self.query.strip()
        if not query:
            self.message = N_("Type the start of the visitor's name.")
            return
        self.busy = True
        client = self.app.link.guard_client
        self.app.link.submit(
            lambda: client.visitors(query),
            on_done=self._found,
            on_error=self._failed,
        )

    def _found(self, visitors: list[dict[str, Any]]) -> None:
        self.busy = False
        self.results = list(visitors)
        self.message = "" if self.results else N_("Nobody found.")
        box = self.ids.results
        box.clear_widgets()
        for found in self.results:
            until = found.get("not_after")
            box.add_widget(
                VisitorRow(
                    invitation_id=str(found.get("invitation_id", "")),
                    visitor=str(found.get("visitor", "")),
                    host=str(found.get("host") or ""),
                    valid_until=time.strftime("%Y-%m-%d %H:%M", time.localtime(until))
                    if until
                    else "",
                    used=bool(found.get("used")),
                )
            )

    def check_in(self, row: VisitorRow) -> None:
        """Manual check-in of ``row``'s invitation (no photo: the visitor is not at the camera)."""
        client = self.app.link.guard_client

        def done(_answer: dict[str, Any]) -> None:
            row.checked_in = True
            self.message = N_("Checked in: {name}.")
            self.message_arg = row.visitor

        self.app.link.submit(
            lambda: client.checkin(row.invitation_id, consent=False),
            on_done=done,
            on_error=self._failed,
        )

    def _failed(self, exc: Exception) -> None:
        self.busy = False
        if isinstance(exc, ApiError) and exc.status == 401:
            self.app.guard_session_lost()
        elif isinstance(exc, ApiError):
            self.message = wording.guard_error(exc.code)
        elif isinstance(exc, AgentUnavailable):
            self.app.go("out_of_service")

    def message_text(self, message: str, arg: str, _: Any) -> str:
        """Return the result line, translated."""
        return _(message).format(name=arg) if message else ""

    def back(self) -> None:
        """Back to the console."""
        self.app.go("guard_console")
