"""Out of service: the agent cannot be reached. It clears by itself when it answers again."""

from __future__ import annotations

from typing import Any

from kiosk.ui.screens.base import KioskScreen


class OutOfServiceScreen(KioskScreen):
    """Shown while the agent's local API does not answer."""

    offers_help = False  # the call would go through the agent that does not answer

    def idle_timeout(self) -> float | None:
        """Stays until the agent is back (the app leaves it then)."""
        return None

    def on_guard_tap(self, event: dict[str, Any]) -> None:
        """The agent is back; the app leaves this screen by itself."""

    def on_badge(self, decision: dict[str, Any]) -> None:
        """A decision arrived: the agent is back; the app will leave this screen."""
