"""What every screen of a logged-in guard shares: the warning before the idle log-out.

During the last :data:`IDLE_WARNING_S` seconds before the guard's idle timeout a banner
counts down over the header (``IdleBanner`` in widgets.kv); any touch anywhere restarts
the timeout, so the banner goes and the session stays.
"""

from __future__ import annotations

import math

from kivy.properties import NumericProperty

from kiosk.ui.screens.base import KioskScreen

#: Seconds before the idle log-out from which the banner shows.
IDLE_WARNING_S = 15.0


class GuardScreen(KioskScreen):
    """A screen of the guard console (not the login): the guard's idle timeout."""

    visitor = False
    #: Whole seconds left before the idle log-out while the warning shows; -1 otherwise.
    idle_left = NumericProperty(-1)

    def tick(self) -> None:
        """Update the idle warning (four times a second)."""
        timeout = self.idle_timeout()
        if timeout is None:
            self.idle_left = -1
            return
        idle = self.app.now() - max(self.app.last_touch, self.entered_at)
        left = timeout - idle
        self.idle_left = math.ceil(left) if 0 < left <= IDLE_WARNING_S else -1
