"""The base of every kiosk screen: idle timeout, badge taps, decoded codes."""

from __future__ import annotations

from typing import Any

from kivy.app import App
from kivy.properties import NumericProperty
from kivy.uix.screenmanager import Screen


class KioskScreen(Screen):
    """A screen of the kiosk.

    Subclasses set :attr:`decodes` (QR codes are decoded while it is shown)
    and :attr:`visitor` (False for the guard console), and override the
    hooks they need. Every hook runs on the UI thread.
    """

    #: Decode QR codes while this screen is shown.
    decodes = False
    #: Seconds between two decoded frames (0: every frame) while shown.
    decode_interval_s = 0.0
    #: A visitor screen (idle timeout: visitor's; badge taps show their outcome).
    visitor = True
    #: A visitor screen with the header's Help button (not when the agent is away).
    offers_help = True
    #: ``app.now()`` when the screen was last shown (set by ``app.go``).
    entered_at = NumericProperty(0.0)

    @property
    def app(self) -> Any:
        """The running :class:`~kiosk.ui.app.KioskApp`."""
        return App.get_running_app()

    def prepare(self, **kwargs: Any) -> None:
        """Reset the screen before it is shown; ``kwargs`` come from ``app.go``."""

    def idle_timeout(self) -> float | None:
        """Seconds without a touch before :meth:`on_idle`; None: never."""
        ui = self.app.settings.ui
        return ui.idle_timeout_s if self.visitor else ui.guard_idle_timeout_s

    def on_idle(self) -> None:
        """Nobody touched the screen for :meth:`idle_timeout` seconds: start over."""
        if self.visitor:
            self.app.go_home(new_visitor=True)
        else:
            self.app.guard_logout()

    def tick(self) -> None:
        """Called four times a second while shown (countdowns)."""

    def on_code(self, text: str) -> None:
        """A new QR code was decoded (only when :attr:`decodes`)."""

    def on_badge(self, decision: dict[str, Any]) -> None:
        """A badge was tapped on the reader: visitor screens show its outcome."""
        if self.visitor:
            self.app.show_outcome(decision)

    def on_guard_tap(self, event: dict[str, Any]) -> None:
        """A guard's badge tapped on the console's reader (the agent's live ``guard.tap``).

        The agent took it as a login step (the door stayed locked): a visitor screen
        hands it to the guard login, which opens at the PIN step.
        """
        if self.visitor:
            self.app.go("guard_login", tap=event)

    def on_agent_event(self, event: dict[str, Any]) -> None:
        """Any event pushed by the agent (after the app handled it)."""

    def on_status(self, status: dict[str, Any]) -> None:
        """A new status from the agent (every poll)."""
