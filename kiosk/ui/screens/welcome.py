"""The welcome screen: the visitor's name, their host informed, the door countdown,
directions, and the offer of a photo for the pass (only with consent).

A granted QR invitation is checked in when the visitor leaves this screen
(declining the photo, pressing Done, or the timeout): without a photo unless
they chose to have one taken on the photo screen.
"""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, OptionProperty, StringProperty

from kiosk.ui.screens.base import KioskScreen


class WelcomeScreen(KioskScreen):
    """Outcome of a granted QR invitation or badge."""

    kind = OptionProperty("qr", options=("qr", "badge"))
    visitor_name = StringProperty("")
    host = StringProperty("")
    #: offer: photo buttons shown; declined: checked in without; none: badge (no offer).
    photo = OptionProperty("offer", options=("offer", "declined", "none"))
    checked_in = BooleanProperty(False)
    #: opening: granted, the unlock not seen yet; open: counting down (or held open);
    #: relocked: it was open and is locked again.
    door = OptionProperty("opening", options=("opening", "open", "relocked"))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.invitation_id = ""
        self._to_photo = False
        self.app.bind(door_remaining=lambda *_args: self.tick())

    def prepare(self, decision: dict[str, Any] | None = None, **_kwargs: Any) -> None:
        """Show ``decision`` (a granted access decision)."""
        self._checkin_pending()  # a previous visitor left without a choice
        decision = decision or {}
        self.kind = "badge" if decision.get("kind") == "badge" else "qr"
        self.visitor_name = str(decision.get("holder") or "")
        self.host = str(decision.get("host") or "")
        self.invitation_id = str(decision.get("credential_id") or "") if self.kind == "qr" else ""
        self.photo = "offer" if self.invitation_id else "none"
        self.checked_in = not self.invitation_id
        self._to_photo = False
        self.door = "opening"
        self.tick()

    def tick(self) -> None:
        """Follow the door: opening, then open with a countdown, then locked again."""
        if self.app.door_remaining != 0:
            self.door = "open"
        elif self.door == "open":
            self.door = "relocked"

    def door_text(self, door: str, remaining: int, _: Any) -> str:
        """Return what the screen says about the door, translated."""
        if door == "relocked":
            return _("The door is locked again. If you did not get through, please see the guard.")
        if door == "open" and remaining > 0:
            return _("The door is open: go through within {seconds} s.").format(seconds=remaining)
        return _("The door is open.")

    def idle_timeout(self) -> float | None:
        """The outcome stays up for ``ui.outcome_timeout_s``."""
        return self.app.settings.ui.outcome_timeout_s

    def on_idle(self) -> None:
        """Check in without a photo and start over."""
        self.done()

    def on_leave(self, *_args: Any) -> None:
        """Leaving for anything but the photo: check in now (no photo)."""
        if not self._to_photo:
            self._checkin_pending()

    def _checkin_pending(self) -> None:
        if self.invitation_id and not self.checked_in:
            self.checked_in = True
            self.app.checkin(self.invitation_id)

    def take_photo(self) -> None:
        """The visitor agreed to a photo: open the camera screen."""
        self._to_photo = True
        self.checked_in = True  # the photo screen checks in, with or without the photo
        self.app.go("photo", invitation_id=self.invitation_id, visitor_name=self.visitor_name)

    def no_photo(self) -> None:
        """The visitor declined the photo: check in without one."""
        self.photo = "declined"
        self._checkin_pending()

    def done(self) -> None:
        """Finished: check in if still pending, back to the attract screen."""
        self._checkin_pending()
        self.app.go_home()
