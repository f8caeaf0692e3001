"""The check-out screen: a visitor showed their pass to the camera (``PV1:`` QR code).

``done``: "Goodbye, {name}. You are checked out", and where the pass goes (reception or
the box). A refusal says why in plain words (:data:`kiosk.wording.CHECKOUT_OUTCOMES`):
checked out already (the pass goes back all the same), a pass this entrance does not
know (see the guard), or a check-out that failed.
"""

from __future__ import annotations

from typing import Any

from kivy.properties import StringProperty

from kiosk import wording
from kiosk.ui.screens.base import KioskScreen

#: Seconds the outcome stays up before the attract screen (a tap on Done is sooner).
SHOWN_S = 12.0


class CheckoutScreen(KioskScreen):
    """The outcome of a check-out by pass."""

    #: ``done``, ``not_on_site``, ``unknown_pass`` or ``error``.
    outcome = StringProperty("done")
    visitor_name = StringProperty("")
    title_msgid = StringProperty("")
    text_msgid = StringProperty("")

    def prepare(self, outcome: str = "done", visitor: str = "", **_kwargs: Any) -> None:
        """Show ``outcome`` (and the visitor's name once checked out)."""
        self.outcome = outcome if outcome in wording.CHECKOUT_OUTCOMES else "error"
        self.visitor_name = visitor
        words = wording.checkout_outcome(self.outcome)
        self.title_msgid, self.text_msgid = words.title, words.text

    def headline(self, outcome: str, name: str, title_msgid: str, _: Any) -> str:
        """ "Goodbye, {name}" once checked out (else the refusal's headline), translated."""
        if outcome == "done" and name:
            return str(_(wording.GOODBYE)).format(name=name)
        return str(_(title_msgid)) if title_msgid else ""

    def idle_timeout(self) -> float | None:
        """The outcome stays up for :data:`SHOWN_S`."""
        return SHOWN_S

    def done(self) -> None:
        """Back to the attract screen, for the next visitor."""
        self.app.go_home(new_visitor=True)
