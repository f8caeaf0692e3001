"""The pass photo, taken only because the visitor said yes on the welcome screen:
live view, a 3-2-1 countdown, preview, retake, then the check-in with the photo.

The door stays locked while the visitor poses: whatever the outcome (photo saved,
not saved, no photo after all, walked away), the screen goes back to the welcome
screen, which asks the agent to open the door.
"""

from __future__ import annotations

from typing import Any

from kivy.clock import Clock
from kivy.properties import NumericProperty, OptionProperty, StringProperty

from kiosk.i18n import N_
from kiosk.photo import portrait_crop
from kiosk.ui.screens.base import KioskScreen

COUNTDOWN_S = 3
#: Seconds the outcome of the photo stays up before the welcome screen opens the door.
OUTCOME_S = 1.5
#: What the screen says in each state.
STATUS = {
    "live": N_("Look at the camera, then press Take photo."),
    "countdown": N_("Look at the camera…"),
    "preview": N_("Is this photo all right?"),
    "sending": N_("Saving your photo…"),
    "done": N_("Your photo has been added to your pass."),
    "failed": N_("The photo could not be saved. You are checked in without it."),
}


class PhotoScreen(KioskScreen):
    """Capture, preview, retake, send."""

    state = OptionProperty(
        "live", options=("live", "countdown", "preview", "sending", "done", "failed")
    )
    countdown = NumericProperty(0)
    visitor_name = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.invitation_id = ""
        self.captured: Any = None
        self._refresh = None
        self._countdown_ends = 0.0
        self._finished_at = 0.0

    def prepare(self, invitation_id: str = "", visitor_name: str = "", **_kwargs: Any) -> None:
        """Start with the live view for ``invitation_id``."""
        self.invitation_id = invitation_id
        self.visitor_name = visitor_name
        self.captured = None
        self.state = "live"

    def on_enter(self, *_args: Any) -> None:
        """Redraw the live view while shown."""
        fps = self.app.settings.scan.viewfinder_fps
        self._refresh = Clock.schedule_interval(self._draw, 1.0 / fps)

    def on_leave(self, *_args: Any) -> None:
        """Stop the live view and drop the captured frame."""
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        self.captured = None
        self.ids.viewfinder.clear()

    def _draw(self, _dt: float) -> None:
        if self.state not in ("live", "countdown"):
            return
        scanner = self.app.scanner
        frame = scanner.latest() if scanner is not None else None
        if frame is not None:
            self.ids.viewfinder.show(frame.image, frame.seq)

    def tick(self) -> None:
        """Run the countdown; close the screen a while after the photo is sent."""
        now = self.app.now()
        if self.state == "countdown":
            left = self._countdown_ends - now
            if left <= 0:
                self._capture()
            else:
                self.countdown = int(left) + 1
        elif self.state in ("done", "failed") and now - self._finished_at > OUTCOME_S:
            self._back("taken" if self.state == "done" else "failed")

    def _back(self, photo: str) -> None:
        """Back to the welcome screen, which opens the door (the photo step is over)."""
        self.app.go("welcome", photo=photo)

    def status_msgid(self, state: str) -> str:
        """Return the msgid of what the screen says in ``state``."""
        return STATUS[state]

    def primary(self) -> None:
        """The main button: take the photo (live) or use it (preview)."""
        if self.state == "live":
            self.start()
        elif self.state == "preview":
            self.use()

    def start(self) -> None:
        """Take photo: count down from 3 so the visitor can look at the camera."""
        self._countdown_ends = self.app.now() + COUNTDOWN_S
        self.countdown = COUNTDOWN_S
        self.state = "countdown"

    def _capture(self) -> None:
        scanner = self.app.scanner
        frame = scanner.latest() if scanner is not None else None
        if frame is None:
            self.state = "live"
            return
        self.captured = frame.image.copy()
        self.ids.viewfinder.show(portrait_crop(self.captured))
        self.state = "preview"

    def retake(self) -> None:
        """Back to the live view."""
        self.captured = None
        self.state = "live"

    def use(self) -> None:
        """Send the check-in with the photo."""
        if self.captured is None:
            return
        self.state = "sending"
        self.app.checkin(
            self.invitation_id, photo=self.captured, on_done=self._sent, on_error=self._failed
        )

    def _sent(self, _answer: dict[str, Any]) -> None:
        self.captured = None
        self._finished_at = self.app.now()
        self.state = "done"

    def _failed(self, _exc: Exception) -> None:
        # The check-in itself matters more than the photo: try once more without it.
        self.captured = None
        self.app.checkin(self.invitation_id)
        self._finished_at = self.app.now()
        self.state = "failed"

    def no_photo(self) -> None:
        """Changed their mind: check in without a photo; the door opens."""
        self.captured = None
        self.app.checkin(self.invitation_id)
        self._back("declined")

    def on_idle(self) -> None:
        """Walked away: check in without a photo (none is kept); the door opens."""
        if self.state not in ("sending", "done", "failed"):
            self.no_photo()
        elif self.state != "sending":
            self._back("taken" if self.state == "done" else "failed")

    def on_guard_tap(self, event: dict[str, Any]) -> None:
        """A guard's tap does not interrupt a photo being taken either."""

    def on_badge(self, decision: dict[str, Any]) -> None:
        """A badge tap does not interrupt a photo being taken (the outcome is journaled)."""
