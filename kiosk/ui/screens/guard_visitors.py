"""Visitors (guard only): who is expected today, look-up by name, manual check-in.

The screen opens on the list of invitations valid today (``GET /v1/guard/expected``):
no typing. Each row tells one visitor from another of the same name -- host, times,
doors, the invitation's short reference -- and whether they are checked in. "Search by
name" shows a letter pad (no on-screen keyboard to pop up over the list) and the agent
searches its invitation cache. The pad also types a pass's reference (the 8 characters
printed under its code, when the code does not scan): the agent finds the visit on site
whose pass it is, and the screen opens the on-site list on that visitor (check out,
reprint).

A manual check-in runs the agent's policy: an invitation it refuses (expired, not yet
valid, cancelled, another entrance or site) is not checked in; the row says why in plain
words and offers "Check in anyway", which asks the guard's reason (the reason screen) and
sends it as the override the agent journals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kivy.properties import BooleanProperty, NumericProperty, OptionProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from edge_agent.client import AgentUnavailable, ApiError
from kiosk import wording
from kiosk.i18n import N_
from kiosk.ui.screens.guard_base import GuardScreen

#: Letters for names, and the digits 2-7 of a pass's reference (base32: A-Z, 2-7).
LETTER_KEYS = [*"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "É", "È", "Ç", "-", "'", *"234567"]
EDIT_KEYS = ["space", "back", "clear"]
MAX_QUERY = 40
#: The expected-today list asks the agent for at most this many invitations.
EXPECTED_LIMIT = 100

Translate = Callable[[str], str]


def short_ref(invitation_id: str) -> str:
    """The part of an invitation id a guard can read out: short ids whole, else the end."""
    return invitation_id if len(invitation_id) <= 10 else "…" + invitation_id[-6:]


def window_text(not_before: float | None, not_after: float | None) -> str:
    """Return a validity window as "09:00–17:00" (today) or "05/12 09:00–07/12 17:00"."""
    today = time.strftime("%Y-%m-%d")

    def one(when: float | None) -> str:
        if when is None:
            return "…"
        local = time.localtime(when)
        if time.strftime("%Y-%m-%d", local) == today:
            return time.strftime("%H:%M", local)
        return time.strftime("%d/%m %H:%M", local)

    return f"{one(not_before)}–{one(not_after)}"


class VisitorRow(BoxLayout):
    """One invitation, with its check-in button."""

    invitation_id = StringProperty("")
    visitor = StringProperty("")
    host = StringProperty("")
    ref = StringProperty("")
    #: "09:00–17:00": when the invitation is valid.
    window = StringProperty("")
    #: Its doors and zones, comma-separated.
    where = StringProperty("")
    used = BooleanProperty(False)
    revoked = BooleanProperty(False)
    checked_in = BooleanProperty(False)
    #: "10:32": when it was checked in today ("" if not, or unknown).
    checked_in_at = StringProperty("")
    #: The agent's reason code when it refused to check this invitation in ("" if not).
    refused = StringProperty("")

    def check_in(self) -> None:
        """Check this visitor in by hand (or, once refused, ask why to check in anyway)."""
        from kivy.app import App

        App.get_running_app().screen.check_in(self)

    def state_text(
        self,
        checked_in: bool,
        checked_in_at: str,
        refused: str,
        revoked: bool,
        used: bool,
        _: Translate,
    ) -> str:
        """The row's last line: checked in, refused and why, cancelled, used, expected."""
        if checked_in:
            return (
                _("Checked in at {time}").format(time=checked_in_at)
                if checked_in_at
                else _("Checked in")
            )
        if refused:
            return _(wording.CHECKIN_REFUSALS.get(refused, wording.CHECKIN_REFUSED_OTHER))
        if revoked:
            return _("Cancelled invitation")
        if used:
            return _("Invitation already used at the door")
        return _("Expected")


def visitor_row(found: dict[str, Any]) -> VisitorRow:
    """Build the row of one invitation of ``/v1/guard/expected`` or ``/v1/visitors``."""
    ident = str(found.get("invitation_id", ""))
    places = [*(found.get("doors") or []), *(found.get("zones") or [])]
    checked_at = found.get("checked_in_at")
    return VisitorRow(
        invitation_id=ident,
        visitor=str(found.get("visitor", "")),
        host=str(found.get("host") or ""),
        ref=short_ref(ident),
        window=window_text(found.get("not_before"), found.get("not_after")),
        where=", ".join(str(p) for p in places),
        used=bool(found.get("used")),
        revoked=bool(found.get("revoked")),
        checked_in=checked_at is not None,
        checked_in_at=time.strftime("%H:%M", time.localtime(checked_at)) if checked_at else "",
    )


class GuardVisitorsScreen(GuardScreen):
    """Expected today, search by name, check in by hand."""

    mode = OptionProperty("expected", options=("expected", "search"))
    query = StringProperty("")
    message = StringProperty("")
    message_arg = StringProperty("")
    message_warn = BooleanProperty(False)
    busy = BooleanProperty(False)
    #: Rows shown (the expected list or the search's results).
    count = NumericProperty(0)
    truncated = BooleanProperty(False)

    def prepare(
        self,
        keep: bool = False,
        message: str = "",
        arg: str = "",
        checked_in: str = "",
        **_kwargs: Any,
    ) -> None:
        """Open on today's list; ``keep``: back from the reason screen, rows kept, with
        ``message`` (a msgid, ``arg`` its name) and the row ``checked_in`` marked."""
        self.message = message
        self.message_arg = arg
        self.message_warn = bool(message) and not checked_in
        if keep:
            for row in self.ids.results.children:
                if checked_in and row.invitation_id == checked_in:
                    row.checked_in = True
                    row.checked_in_at = time.strftime("%H:%M")
                    row.refused = ""
            return
        self.query = ""
        self.expected()

    def expected(self) -> None:
        """Show the invitations valid today (the agent's cache), no typing needed."""
        self.mode = "expected"
        self.busy = True
        self.ids.results.clear_widgets()
        self.count = 0
        client = self.app.link.guard_client
        self.app.link.submit(
            lambda: client.expected(EXPECTED_LIMIT),
            on_done=self._expected,
            on_error=self._failed,
        )

    def _expected(self, answer: dict[str, Any]) -> None:
        self.truncated = bool(answer.get("truncated"))
        self._show(list(answer.get("invitations") or []), N_("Nobody expected today."))

    def search_mode(self) -> None:
        """Show the letter pad to look a visitor up by name."""
        self.mode = "search"
        self.query = ""
        self.message = ""
        self.ids.results.clear_widgets()
        self.count = 0

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
            self.message_warn = False
            return
        self.busy = True
        client = self.app.link.guard_client
        self.app.link.submit(
            lambda: client.visitors(query),
            on_done=self._found,
            on_error=self._failed,
        )

    def _found(self, found: list[dict[str, Any]]) -> None:
        """A search's answer: a pass's reference opens the on-site list on its visitor."""
        on_site = [f for f in found if f.get("on_site") and f.get("pass_ref")]
        if on_site:
            self.busy = False
            self.app.go("guard_muster", only=str(on_site[0]["invitation_id"]))
            return
        self._show(list(found), N_("Nobody found."))

    def _show(self, found: list[dict[str, Any]], nobody: str) -> None:
        self.busy = False
        self.truncated = self.truncated and self.mode == "expected"
        self.message = "" if found else nobody
        self.message_arg = ""
        self.message_warn = False
        box = self.ids.results
        box.clear_widgets()
        for item in found:
            box.add_widget(visitor_row(item))
        self.count = len(found)
        self.ids.scroll.scroll_y = 1

    def check_in(self, row: VisitorRow) -> None:
        """Manual check-in of ``row``'s invitation (no photo: the visitor is not at the
        camera); once the agent refused it, "Check in anyway" asks the reason first."""
        if row.checked_in or self.busy:
            return
        if row.refused:
            self.app.go(
                "guard_reason",
                action="checkin",
                invitation_id=row.invitation_id,
                visitor_name=row.visitor,
                refused=row.refused,
            )
            return
        client = self.app.link.guard_client

        def done(_answer: dict[str, Any]) -> None:
            self.busy = False
            row.checked_in = True
            row.checked_in_at = time.strftime("%H:%M")
            self.message = N_("Checked in: {name}.")
            self.message_arg = row.visitor
            self.message_warn = False

        def failed(exc: Exception) -> None:
            if isinstance(exc, ApiError) and exc.code == "checkin_refused":
                self.busy = False
                row.refused = str(exc.body.get("reason") or "other")
                self.message = N_("Not checked in: {name}.")
                self.message_arg = row.visitor
                self.message_warn = True
            else:
                self._failed(exc)

        self.busy = True
        self.app.link.submit(
            lambda: client.checkin(row.invitation_id, consent=False),
            on_done=done,
            on_error=failed,
        )

    def _failed(self, exc: Exception) -> None:
        self.busy = False
        if isinstance(exc, ApiError) and exc.status == 401:
            self.app.guard_session_lost()
        elif isinstance(exc, ApiError):
            self.message = wording.guard_error(exc.code)
            self.message_warn = True
        elif isinstance(exc, AgentUnavailable):
            self.app.go("out_of_service")

    def title_text(
        self, mode: str, count: int, truncated: bool, message: str, arg: str, _: Translate
    ) -> str:
        """The line over the list: the last result, else what the list is."""
        if message:
            return _(message).format(name=arg)
        if mode == "search":
            return _("Visitors found: {n}").format(n=count) if count else _("Visitors")
        if truncated:
            return _("Expected today: first {n} (search by name for others)").format(n=count)
        return _("Expected today: {n}").format(n=count)

    def back(self) -> None:
        """Back to the console."""
        self.app.go("guard_console")
