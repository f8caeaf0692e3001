"""The demo panel (``kiosk --demo``): present credentials and drive the simulated door.

Invitations are held up to the demo camera (:mod:`kiosk.demo_camera`), so the
real scan path decodes them; badges are tapped on the agent's simulated reader
(``POST /v1/sim/badge``); the door contact and the fire alarm go through
``/v1/sim/...``. Open it with the header's Demo button or F12.
"""

from __future__ import annotations

from kivy.app import App
from kivy.uix.modalview import ModalView

from kiosk.i18n import N_

#: Demo panel buttons: (msgid, method name, argument).
INVITATION_BUTTONS = (
    (N_("Valid invitation"), "valid"),
    (N_("Expired invitation"), "expired"),
    (N_("Forged invitation"), "forged"),
)
BADGE_BUTTONS = (
    (N_("Staff badge"), "staff"),
    (N_("Unknown badge"), "unknown"),
    (N_("Guard badge"), "guard"),
)


class DemoPanel(ModalView):
    """A modal grid of demo actions; every button closes the panel."""

    def invitation(self, label: str) -> None:
        """Show the material's ``label`` invitation to the camera."""
        self.dismiss(animation=False)
        App.get_running_app().demo_invitation(label)

    def badge(self, label: str) -> None:
        """Tap the material's ``label`` badge on the simulated reader."""
        self.dismiss(animation=False)
        App.get_running_app().demo_badge(label)

    def sim(self, action: str, on: bool = True) -> None:
        """Simulated door contact / fire alarm."""
        self.dismiss(animation=False)
        App.get_running_app().demo_sim(action, on=on)

    def available(self, kind: str, label: str) -> bool:
        """True when the demo material has this invitation or badge."""
        material = App.get_running_app().material
        if material is None:
            return False
        if kind == "invitation":
            return material.invitation(label) is not None
        if label == "guard":
            return material.guard is not None
        return material.badge(label) is not None

    def quit(self) -> None:
        """Leave the demo."""
        self.dismiss(animation=False)
        App.get_running_app().quit()
