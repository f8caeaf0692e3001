"""The muster list: who is on site, for a fire (and for the guards any time).

During a fire alarm the evacuation screen offers it ("Visitors on site"): every visitor
checked in here and not checked out, by name, with their host and time of entry, from the
agent's own journal (``GET /v1/muster``), so it answers the same with the network down. The
fire wardens count people at the assembly point against it. The guard console shows the
same list (``guard_muster``). It is asked again every :data:`REFRESH_S` seconds while shown.

On the guard console each row also offers "Reprint": a new pass for that visitor
(:meth:`kiosk.ui.app.KioskApp.reprint_pass`; the old pass stops working); the screen says
whether it printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from edge_agent.client import AgentUnavailable, ApiError
from kiosk.i18n import N_
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.screens.guard_base import GuardScreen

#: Seconds between two reads of the list while the screen is shown.
REFRESH_S = 10.0

Translate = Callable[[str], str]

#: What the screen says, as msgids.
TITLE = N_("Visitors on site")
TITLE_COUNT = N_("Visitors on site: {count}")
EMPTY = N_("No visitor is checked in here.")
LOADING = N_("Reading the list…")
UNAVAILABLE = N_("The list cannot be read now.")
READ_AT = N_("Read at {time}")
DROPPED = N_("The list is incomplete: {count} older entries were dropped.")
#: A guard's reprint, by outcome (kiosk.passes.printing).
REPRINTED = {
    "printed": N_("New pass printed. The old pass no longer works."),
    "guard": N_("The printer cannot print now: see the printer alarm, then reprint."),
    "": N_("This kiosk has no pass printer."),
}
REPRINT_FAILED = N_("The pass could not be reprinted.")
#: Printing the list (kiosk.passes.muster, POST /v1/muster/print), by outcome.
LIST_PRINTED = {
    "printed": N_("The list is being printed."),
    "guard": N_("The printer cannot print the list now."),
    "": N_("This kiosk has no pass printer."),
}


def entry_time(epoch_s: float | None) -> str:
    """Time of entry as "10:32" today, "04/12 10:32" an earlier day."""
    if epoch_s is None:
        return ""
    local = time.localtime(epoch_s)
    if time.strftime("%Y-%m-%d", local) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M", local)
    return time.strftime("%d/%m %H:%M", local)


class MusterRow(BoxLayout):
    """One visitor on site: name, host, time of entry (and a guard's "Check out")."""

    invitation_id = StringProperty("")
    visitor = StringProperty("")
    host = StringProperty("")
    entered = StringProperty("")
    #: On the guard console: the row offers "Check out" (with a reason).
    guard = BooleanProperty(False)

    def check_out(self) -> None:
        """A guard checks this visitor out: the reason screen asks why."""
        from kivy.app import App

        App.get_running_app().go(
            "guard_reason",
            action="checkout",
            invitation_id=self.invitation_id,
            visitor_name=self.visitor,
        )

    def reprint(self) -> None:
        """A guard reprints this visitor's pass (a new pass id; the old one stops working)."""
        from kivy.app import App

        App.get_running_app().screen.reprint(self.invitation_id)


class MusterScreen(KioskScreen):
    """The visitors on site (shown from the evacuation screen during a fire)."""

    decodes = False
    offers_help = False
    #: The number of visitors on site (-1 before the first answer).
    count = NumericProperty(-1)
    #: "10:41": when the list shown was read.
    read_at = StringProperty("")
    #: A msgid: loading, unavailable, empty ("" when rows show).
    message = StringProperty(LOADING)
    dropped = NumericProperty(0)
    busy = BooleanProperty(False)

    #: Only this visitor's row (the guard typed their pass's reference); "" for all.
    only = StringProperty("")

    def prepare(self, message: str = "", only: str = "", **_kwargs: Any) -> None:
        """``message``: a msgid to show until the list is read (a refused check-out);
        ``only``: show only this invitation's visit (found by its pass's reference)."""
        self._note = message
        self.only = only

    def on_pre_enter(self, *_args: Any) -> None:
        """Read the list afresh on every visit."""
        self._next_refresh = 0.0
        self.refresh()

    def tick(self) -> None:
        """Read the list again every :data:`REFRESH_S` seconds."""
        super().tick()
        if not self.busy and self.app.now() >= getattr(self, "_next_refresh", 0.0):
            self.refresh()

    def refresh(self) -> None:
        """Ask the agent for the list (on the link's worker thread)."""
        self.busy = True
        self._next_refresh = self.app.now() + REFRESH_S
        client = self.app.link.client
        self.app.link.submit(client.muster, on_done=self.show, on_error=self._failed)

    def show(self, answer: dict[str, Any]) -> None:
        """Show an answer of ``GET /v1/muster``."""
        self.busy = False
        visitors = answer.get("visitors") or []
        self.count = len(visitors)
        self.dropped = int(answer.get("dropped") or 0)
        self.read_at = entry_time(answer.get("at") or time.time())
        self._answer = dict(answer)
        box = self.ids.rows
        box.clear_widgets()
        if self.only:
            visitors = [v for v in visitors if v.get("invitation_id") == self.only]
        for entry in visitors:
            box.add_widget(
                MusterRow(
                    invitation_id=str(entry.get("invitation_id") or ""),
                    guard=not self.visitor,
                    visitor=str(entry.get("visitor") or ""),
                    host=str(entry.get("host") or ""),
                    entered=entry_time(entry.get("entered_at")),
                )
            )
        note, self._note = getattr(self, "_note", ""), ""
        self.message = note or ("" if visitors else EMPTY)

    def _failed(self, exc: Exception) -> None:
        self.busy = False
        if isinstance(exc, ApiError) and exc.status == 401:
            return
        if isinstance(exc, AgentUnavailable | ApiError):
            self.message = UNAVAILABLE

    def print_list(self) -> None:
        """Print the list shown (rendered here, printed by the agent); say how it went."""
        answer = getattr(self, "_answer", None)
        if answer is None:
            return
        self.app.print_muster(answer, on_done=self._list_printed, on_error=self._list_failed)

    def _list_printed(self, outcome: str) -> None:
        self._note = self.message = LIST_PRINTED.get(outcome, LIST_PRINTED["guard"])

    def _list_failed(self, exc: Exception) -> None:
        self._note = self.message = LIST_PRINTED["guard"]

    def reprint(self, invitation_id: str) -> None:
        """Reprint the pass of ``invitation_id`` (guard console); say how it went."""
        self.app.reprint_pass(invitation_id, on_done=self._reprinted, on_error=self._not_reprinted)

    def _reprinted(self, outcome: str) -> None:
        self._note = self.message = REPRINTED.get(outcome, REPRINT_FAILED)

    def _not_reprinted(self, exc: Exception) -> None:
        if isinstance(exc, ApiError) and exc.status == 401:
            self.app.guard_session_lost()
            return
        self._note = self.message = REPRINT_FAILED

    def names(self) -> list[str]:
        """The visitors' names shown now (tests, screenshots)."""
        return [row.visitor for row in reversed(self.ids.rows.children)]

    def title_text(self, count: int, _: Translate) -> str:
        """ "Visitors on site: 3"."""
        return _(TITLE) if count < 0 else _(TITLE_COUNT).format(count=count)

    def dropped_text(self, dropped: int, _: Translate) -> str:
        """The warning that the list is incomplete ("" when it is whole)."""
        return _(DROPPED).format(count=dropped) if dropped else ""

    def back(self) -> None:
        """Back to the evacuation screen (or the attract screen once the fire is over)."""
        self.app.go_home()


class GuardMusterScreen(GuardScreen, MusterScreen):
    """The same list on the guard console."""

    def tick(self) -> None:
        """The guard's idle warning and the list's refresh."""
        GuardScreen.tick(self)
        MusterScreen.tick(self)

    def show_all(self) -> None:
        """Every visitor on site again (after one found by their pass's reference)."""
        self.only = ""
        self.refresh()

    def back(self) -> None:
        """Back to the console."""
        self.app.go("guard_console")
