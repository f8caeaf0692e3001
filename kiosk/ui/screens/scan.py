"""The scanning screen: live viewfinder with a framing guide, then the agent's decision."""

from __future__ import annotations

from typing import Any

from kivy.clock import Clock
from kivy.properties import BooleanProperty, OptionProperty

from edge_agent.client import AgentUnavailable
from kiosk.ui import theme
from kiosk.ui.screens.base import KioskScreen
from portier_common.passes import is_pass_qr


class ScanScreen(KioskScreen):
    """Shows the camera; a decoded code is presented to the agent once."""

    decodes = True
    #: looking: waiting for a code; checking: the agent is deciding.
    state = OptionProperty("looking", options=("looking", "checking"))
    #: False while the camera fails (unplugged, stalled); the scanner keeps reopening it.
    camera_ok = BooleanProperty(True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._refresh = None

    def prepare(self, code: str | None = None, **_kwargs: Any) -> None:
        """Start looking; ``code`` (read on the attract screen) is checked at once."""
        self.state = "looking"
        if code:
            self.on_code(code)

    def on_enter(self, *_args: Any) -> None:
        """Redraw the viewfinder at the configured rate while shown."""
        if self.manager is not None and self.manager.current != self.name:
            return  # left already (a pass checked out before this screen was drawn)
        fps = self.app.settings.scan.viewfinder_fps
        self._refresh = Clock.schedule_interval(self._draw, 1.0 / fps)

    def on_leave(self, *_args: Any) -> None:
        """Stop redrawing; keep nothing of the last frame."""
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        self.ids.viewfinder.clear()

    def _draw(self, _dt: float) -> None:
        if self.app is None:  # the app has stopped
            return
        scanner = self.app.scanner
        frame = scanner.latest() if scanner is not None else None
        self.camera_ok = scanner is not None and scanner.error is None
        if frame is not None:
            self.ids.viewfinder.show(frame.image, frame.seq)

    def instructions(self, state: str, camera_ok: bool, _: Any) -> str:
        """Return what to do now, translated."""
        if not camera_ok:
            return _("The camera is not working. Please see the guard, or tap your badge.")
        if state == "checking":
            return _("Checking your invitation…")
        return _(
            "Hold the QR code inside the yellow frame, about 20 cm from the camera. Keep it still."
        )

    def guide_colour(self, state: str) -> list[float]:
        """The framing guide turns green while a code is checked."""
        return list(theme.OK if state == "checking" else theme.PRIMARY)

    def on_code(self, text: str) -> None:
        """Present the code once; later codes wait for the decision."""
        if self.state != "looking":
            return
        self.state = "checking"
        if is_pass_qr(text):  # a visitor pass (PV1:): the visitor checks out
            self.app.checkout_with_pass(text, on_error=self._failed)
        else:  # an invitation (PT1:), or anything else the agent refuses in plain words
            self.app.present_qr(text, on_error=self._failed)

    def _failed(self, exc: Exception) -> None:
        self.state = "looking"
        if isinstance(exc, AgentUnavailable):
            self.app.go("out_of_service")
        else:
            self.app.show_outcome({"granted": False, "reason": "", "kind": "qr", "error": True})

    def cancel(self) -> None:
        """Back to the attract screen."""
        self.app.go_home()
