"""The welcome screen: the visitor's name, their host informed, the offer of a photo for
the pass (only with consent), then the door, opened when the visitor is ready.

A granted QR invitation comes with a *grant* the agent holds since the scan (the
decision is journaled, a single-use invitation spent): the door stays locked while
the visitor answers the photo offer, and opens when they have finished that step
(declined, or back from the photo screen), or by itself after ``ui.open_after_s``
if they do nothing. The countdown then follows the agent's unlock; after the relock
the screen says so and offers to open the door again (within the agent's
``[door] grant_hold_s``). "Have a good visit" is only said while the door is unlocked.

The visitor is checked in when they answer the offer or leave this screen: without
a photo unless they chose to have one taken on the photo screen.

A staff badge's door is opened by the agent at the tap: the screen follows it, and
sends nobody to reception.
"""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, NumericProperty, OptionProperty, StringProperty

from kiosk.ui.screens.base import KioskScreen

#: How the photo step ended, as the photo screen reports it on the way back.
PHOTO_OUTCOMES = ("taken", "failed", "declined")


class WelcomeScreen(KioskScreen):
    """Outcome of a granted QR invitation or badge."""

    kind = OptionProperty("qr", options=("qr", "badge"))
    visitor_name = StringProperty("")
    host = StringProperty("")
    #: offer: photo buttons shown; declined: checked in without; taken / failed: back
    #: from the photo screen with / without a photo; none: badge (no offer).
    photo = OptionProperty("offer", options=("offer", "declined", "taken", "failed", "none"))
    checked_in = BooleanProperty(False)
    #: waiting: granted, the door held until the visitor is ready; opening: asked (or,
    #: for a badge, granted and the unlock not seen yet); open: counting down (or held
    #: open); relocked: it was open and is locked again; refused: the agent would not
    #: open it (fire alarm, lockdown, agent unreachable); expired: the grant is over.
    door = OptionProperty(
        "opening", options=("waiting", "opening", "open", "relocked", "refused", "expired")
    )
    #: Whole seconds before the door opens by itself (``waiting``).
    opens_in = NumericProperty(0)
    #: The grant can open the door again (``relocked``).
    can_reopen = BooleanProperty(False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.invitation_id = ""
        self.grant_id = ""
        self.refusal = ""
        self._to_photo = False
        self._open_at = 0.0
        self.app.bind(door_remaining=lambda *_args: self.tick())

    def prepare(
        self, decision: dict[str, Any] | None = None, photo: str | None = None, **_kwargs: Any
    ) -> None:
        """Show ``decision`` (a granted access decision); or, with ``photo``, come back
        from the photo screen (``taken``, ``failed``, ``declined``) and open the door."""
        if photo in PHOTO_OUTCOMES and decision is None:
            self._to_photo = False
            self.photo = photo
            self.open_door()
            return
        self._checkin_pending()  # a previous visitor left without a choice
        decision = decision or {}
        self.kind = "badge" if decision.get("kind") == "badge" else "qr"
        self.visitor_name = str(decision.get("holder") or "")
        self.host = str(decision.get("host") or "")
        self.invitation_id = str(decision.get("credential_id") or "") if self.kind == "qr" else ""
        grant = decision.get("grant")
        self.grant_id = str(grant.get("id") or "") if isinstance(grant, dict) else ""
        self.photo = "offer" if self.invitation_id else "none"
        self.checked_in = not self.invitation_id
        self._to_photo = False
        self.refusal = ""
        self.can_reopen = False
        # Without a grant (a badge, an agent that opened at the decision) the door is
        # already opening: follow it.
        self.door = "waiting" if self.grant_id else "opening"
        self._open_at = self.app.now() + self.app.settings.ui.open_after_s
        self.tick()

    # -- the door -------------------------------------------------------------------------
    def tick(self) -> None:
        """Open by itself after the pause; follow the door: open, then locked again."""
        if self.door == "waiting":
            left = self._open_at - self.app.now()
            self.opens_in = max(0, int(left + 0.999))
            shown = self.manager is not None and self.manager.current == self.name
            if left <= 0 and shown and self.photo == "offer":
                self.no_photo()  # did nothing: checked in without a photo, the door opens
        elif self.door == "opening" and self.app.door_remaining != 0:
            self.door = "open"
        elif self.door == "open" and self.app.door_remaining == 0:
            self.door = "relocked"
            self.can_reopen = bool(self.grant_id)
            self.entered_at = self.app.now()  # the outcome time-out counts from here

    def open_door(self) -> None:
        """Ask the agent to open the door for this visitor's grant."""
        if not self.grant_id or self.door not in ("waiting", "relocked"):
            return
        self.door = "opening"
        self.can_reopen = False
        self.app.open_grant(self.grant_id, on_done=self._opened, on_error=self._not_opened)

    def _opened(self, _answer: dict[str, Any]) -> None:
        if self.door == "opening":
            self.tick()  # the countdown was set with the answer

    def _not_opened(self, exc: Exception) -> None:
        code = str(getattr(exc, "code", "") or "unreachable")
        self.refusal = code
        self.door = "expired" if code in ("grant_expired", "grant_unknown") else "refused"
        self.can_reopen = False
        self.entered_at = self.app.now()

    def door_text(self, door: str, remaining: int, opens_in: int, _: Any) -> str:
        """Return what the screen says about the door, translated."""
        if door == "waiting":
            return _("The door will open in {seconds} s.").format(seconds=opens_in)
        if door == "opening":
            return _("Opening the door…")
        if door == "relocked":
            if self.grant_id:
                return _("The door is locked again.")
            return _("The door is locked again. If you did not get through, please see the guard.")
        if door == "refused":
            return _("The door cannot be opened now. Please see the guard.")
        if door == "expired":
            return _("The door can no longer be opened with this invitation. Please see the guard.")
        if remaining > 0:
            return _("The door is open: go through within {seconds} s.").format(seconds=remaining)
        return _("The door is open.")

    def photo_text(self, photo: str, door: str, _: Any) -> str:
        """Return the line of the photo area, translated ("Have a good visit" only while
        the door is unlocked)."""
        if photo == "offer":
            return _("Would you like a photo on your visitor pass? It is taken only if you agree.")
        if photo == "failed":
            return _("The photo could not be saved. You are checked in without it.")
        if photo == "taken":
            return _("Your photo has been added to your pass.")
        if photo == "declined" and door == "open":
            return _("You are checked in. Have a good visit.")
        if photo == "declined":
            return _("You are checked in.")
        return ""

    def pass_text(self, pass_state: str, _: Any) -> str:
        """Return the line about the visitor pass (empty without a printer)."""
        if pass_state == "printing":
            return _("Your visitor pass is being printed…")
        if pass_state == "printed":
            return _("Please take your visitor pass from the printer.")
        if pass_state == "guard":
            return _("Your pass cannot be printed here: a guard will hand it to you.")
        return ""

    # -- time-outs ---------------------------------------------------------------------------
    def idle_timeout(self) -> float | None:
        """The outcome stays up for ``ui.outcome_timeout_s`` once the door is settled;
        never while it is about to open or open (the visitor is still reading)."""
        counting = self.door == "open" and self.app.door_remaining > 0
        asked = self.door == "opening" and bool(self.grant_id)  # answered within the link's timeout
        if self.door == "waiting" or counting or asked:
            return None
        # Held open (free access: no countdown) or a door that never unlocked: time out.
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

    # -- buttons -------------------------------------------------------------------------------
    def take_photo(self) -> None:
        """The visitor agreed to a photo: open the camera screen (the door waits)."""
        self._to_photo = True
        self.checked_in = True  # the photo screen checks in, with or without the photo
        self.app.go("photo", invitation_id=self.invitation_id, visitor_name=self.visitor_name)

    def no_photo(self) -> None:
        """The visitor declined the photo: check in without one; the door opens."""
        self.photo = "declined"
        self._checkin_pending()
        self.open_door()

    def done(self) -> None:
        """Finished: check in if still pending, back to the attract screen.

        Pressed before answering the photo offer, it answers "no" (the door opens).
        """
        if self.door == "waiting" and self.photo == "offer":
            self.no_photo()
            return
        self._checkin_pending()
        self.app.go_home()
