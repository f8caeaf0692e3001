"""The denied screen: the reason in plain words, and "please see the guard"."""

from __future__ import annotations

from typing import Any

from kivy.properties import OptionProperty, StringProperty

from kiosk import wording
from kiosk.ui.screens.base import KioskScreen


class DeniedScreen(KioskScreen):
    """Outcome of a refused QR invitation or badge (or a decision that failed)."""

    kind = OptionProperty("qr", options=("qr", "badge"))
    #: The agent's reason code ("" when the decision itself failed).
    reason = StringProperty("")
    #: Catalogue msgids of the headline and the explanation.
    title_msgid = StringProperty("")
    text_msgid = StringProperty("")
    visitor_name = StringProperty("")

    def prepare(self, decision: dict[str, Any] | None = None, **_kwargs: Any) -> None:
        """Show ``decision`` (a refused access decision, or ``{"error": True}``)."""
        decision = decision or {}
        self.kind = "badge" if decision.get("kind") == "badge" else "qr"
        self.reason = str(decision.get("reason") or "")
        words = (
            wording.DECISION_FAILED
            if decision.get("error")
            else wording.denial(self.reason, self.kind)
        )
        self.title_msgid = words.title
        self.text_msgid = words.text
        self.visitor_name = str(decision.get("holder") or "")

    def idle_timeout(self) -> float | None:
        """The outcome stays up for ``ui.outcome_timeout_s``."""
        return self.app.settings.ui.outcome_timeout_s

    def try_again(self) -> None:
        """Scan again (QR): the same code may be presented again at once."""
        if self.app.scanner is not None:
            self.app.scanner.debouncer.forget()
        self.app.go("scan")

    def done(self) -> None:
        """Back to the attract screen."""
        self.app.go_home()
